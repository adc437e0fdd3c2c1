"""How far a degraded sketch's strokes land from the same sketch drawn clean, as drawn and after
moving both to one frame: the question behind config.model.canonical_frame, asked of the
generator's sketches before any training (docs/results.md, "Both sides in one frame").

  python probes/frame_alignment.py [--config=demo_budget] [--split=validation]

For every instance of the split (its first sketch) and every sketch degradation of the moderate
and severe buckets, alone and all at once (the buckets' own values; one draw, key 0): the mean
distance in pixels from each ink pixel of the degraded sketch to the nearest ink pixel of the
clean one. Three frames: as drawn; both moved so that their ink box is centred; both moved so
that their ink's interquartile midpoint is centred (models/canonical.py, 'centre'). The last
row compares two drawers' clean sketches of one instance. Lower is better aligned; a frame that
undoes the jitter lowers the jitter row, and one that spurious or dropped strokes move raises
theirs.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import base  # noqa: E402  pylint: disable=g-import-not-at-top
from stbir_jax import degradations  # noqa: E402
from stbir_jax.data.synth import generator  # noqa: E402
from stbir_jax.data.synth import spec as spec_lib  # noqa: E402
from stbir_jax.models import canonical  # noqa: E402

TEXT_ONLY = ('word_dropout', 'vague_text')


def mean_distance(moved: np.ndarray, target: np.ndarray) -> float:
  """Mean over the (R, R) maps' pairs of the distance from each ink pixel of `moved` to the
  nearest ink pixel of `target` (pairs where either is blank are left out)."""
  out = []
  for a, b in zip(moved, target, strict=True):
    if (a > 0).any() and (b > 0).any():
      out.append(ndimage.distance_transform_edt(b == 0)[a > 0].mean())
  return float(np.mean(out))


def framed(sketches: np.ndarray, trim) -> np.ndarray:
  """Each map moved by whole pixels so that the centre of its ink's trimmed box (trim None: as
  drawn) is the image centre."""
  if trim is None:
    return sketches
  return np.asarray(canonical.centre_sketches(jnp.asarray(sketches), trim))


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--config', default='demo_budget')
  p.add_argument('--split', default='validation')
  args = p.parse_args()
  cfg = base.get_config(args.config)
  spec = spec_lib.SynthSpec.from_config(cfg.data)
  records = list(generator.generate(cfg.data.configs[0], args.split, spec))
  clean = np.stack([r['sketches'][0, ..., 0] for r in records])
  other_drawer = np.stack([r['sketches'][1, ..., 0] for r in records])
  n = len(records)
  batch = dict(sketch=jnp.asarray(clean), text_ids=jnp.zeros((n, 4), jnp.int32),
               text_mask=jnp.ones((n, 4), jnp.int32), has_sketch=jnp.ones(n, bool),
               has_text=jnp.ones(n, bool))
  frames = {'as drawn': None, 'box centred': 0.0,
            'interquartile centred': canonical.SKETCH_QUANTILE}
  print(f'{n} {cfg.data.configs[0]} {args.split} sketches; mean distance to the clean '
        'sketch, pixels')
  print('| degradation | ' + ' | '.join(frames) + ' |')
  print('|---|' + '---:|' * len(frames))
  by_name = {b['name']: dict(b) for b in cfg.curriculum.buckets}
  for name in ('moderate', 'severe'):
    cases = [('all', by_name[name])] + degradations.single_degradations(by_name[name])
    for field, bucket in cases:
      if field in TEXT_ONLY:
        continue
      table = degradations.buckets_from_config([bucket])
      degraded = np.asarray(degradations.degrade(jax.random.key(0), batch, jnp.zeros(n, jnp.int32),
                                                 table)['sketch'])
      row = [mean_distance(framed(degraded, t), framed(clean, t)) for t in frames.values()]
      print(f'| {name}: {field} | ' + ' | '.join(f'{v:.2f}' for v in row) + ' |')
  row = [mean_distance(framed(other_drawer, t), framed(clean, t)) for t in frames.values()]
  print('| another drawer, clean | ' + ' | '.join(f'{v:.2f}' for v in row) + ' |')


if __name__ == '__main__':
  main()
