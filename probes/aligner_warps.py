"""What a trained sketch aligner (config.model.sketch_align) does to jittered sketches: does it
move them back towards the sketch as drawn? A probe of a trained run, not part of the package
(docs/results.md, "A learned warp of the sketch").

  python probes/aligner_warps.py --workdir=workdirs/align_twice_s0 [--split=validation] [--thin]

For the first sketch of every instance of the split: the run's aligner warps the sketch as
drawn and the same sketch after each part of a bucket's jitter alone (its shift, rotation or
scale; the moderate and the severe bucket's ranges; one draw a sketch, key 0), after the whole
jitter, and after none; each then thickened as the bucket thickens its sketches (degradations
.degrade applies the jitter, then the thickness), since a degraded query reaches the aligner
so (with --thin, never: a jitter on thin strokes). Printed per case:

  moved      how far the aligner moves a sketch: its predicted shift (pixels), angle (degrees)
             and scale change (%), mean absolute value
  undone     the least-squares slope of (the warp predicted for the jittered sketch minus the
             one for the sketch as drawn) on minus the jitter's own parameter: 1 undoes the
             jitter, 0 ignores it (shift: both axes pooled)
  distance   mean pixels from each ink pixel to the nearest ink pixel of the sketch as drawn
             (thickened as the case is), both through the aligner (ink: a warped value above
             one half) and without it
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from frame_alignment import mean_distance  # noqa: E402  pylint: disable=g-import-not-at-top

from stbir_jax import degradations, run_config  # noqa: E402
from stbir_jax.data.synth import generator  # noqa: E402
from stbir_jax.data.synth import spec as spec_lib  # noqa: E402
from stbir_jax.models import aligner  # noqa: E402
from stbir_jax.models.stbir import normalize_pixels, sketch_to_image  # noqa: E402

PARTS = ('none', 'shift', 'rotation', 'scale', 'all')


def jitter(key, sketches, j, part):
  """(B, R, R) maps, each jittered by one draw of the bucket's range j, only `part` of it; and
  the draws (B, 4): shift dy, dx in pixels, angle in radians, log scale."""
  r = sketches.shape[1]

  def one(k, s):
    # The robustness buckets' own draw (degradations._jitter), then only `part` of it kept.
    shift, scale, angle = degradations._jitter_draw(k, j, r)   # pylint: disable=protected-access
    shift = shift if part in ('shift', 'all') else jnp.zeros(2)
    angle = angle if part in ('rotation', 'all') else 0.0
    scale = scale if part in ('scale', 'all') else 1.0
    moved = degradations._warp(s, shift, scale, angle)   # pylint: disable=protected-access
    return moved, jnp.concatenate([shift, jnp.stack([angle, jnp.log(scale)])])

  keys = jax.random.split(key, sketches.shape[0])
  return jax.vmap(one)(keys, sketches)


def thicken(sketches, thickness: int):
  for _ in range(thickness):
    sketches = degradations._dilate3(sketches)   # pylint: disable=protected-access
  return sketches


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='validation')
  p.add_argument('--thin', action='store_true', help="no case takes its bucket's thickness")
  args = p.parse_args()
  run, config = run_config.load_run(args.workdir)
  if not config.model.get('sketch_align', False):
    p.error(f'{args.workdir}: its model has no sketch aligner (config.model.sketch_align)')
  _, params = run_config.latest_params(run, None)
  kind = config.model.sketch.kind
  background = normalize_pixels(jnp.ones(3), kind)
  module = aligner.SketchAligner()
  variables = {'params': params['sketch']['aligner']}

  @jax.jit
  def align(sketches):
    """-> (ink maps through the aligner (B, R, R) float, warps (B, 4) in the module's units)."""
    moved, warp = module.apply(variables, normalize_pixels(sketch_to_image(sketches), kind)
                               - background)
    # A stroke pixel is normalize(0) - background before the warp: scale channel 0 back to 1.
    return moved[..., 0] / (normalize_pixels(jnp.zeros(3), kind)[0] - background[0]), warp

  spec = spec_lib.SynthSpec.from_config(config.data)
  records = list(generator.generate(config.data.configs[0], args.split, spec))
  clean = jnp.asarray(np.stack([r['sketches'][0, ..., 0] for r in records]))
  r = clean.shape[1]
  to_units = np.array([r * 1.0, r, 180 / np.pi, 100], np.float32)   # pixels, degrees, %
  clean_ink, clean_warp = align(clean)
  clean_ink = np.asarray(clean_ink) > 0.5
  print(f'{len(records)} {config.data.configs[0]} {args.split} sketches, {args.workdir}')
  print('| jitter | moved: shift px | angle deg | scale % | undone: shift | angle | scale '
        '| distance, aligned | as given |')
  print('|---|' + '---:|' * 8)

  def row(name, warp, drawn, ink, given, reference):
    moved = np.abs(np.asarray(warp)) * to_units
    cells = [f'{moved[:, :2].mean():.2f}', f'{moved[:, 2].mean():.2f}', f'{moved[:, 3].mean():.2f}']
    delta = np.asarray(warp - clean_warp) * np.array([r, r, 1, 1], np.float32)
    for cols in ((0, 1), (2,), (3,)):
      x, y = -drawn[:, cols].ravel(), delta[:, cols].ravel()
      cells.append(f'{float(x @ y / (x @ x)):.2f}' if x @ x > 0 else '-')
    cells += [f'{mean_distance(ink, reference):.2f}', f'{mean_distance(given, reference):.2f}']
    print(f'| {name} | ' + ' | '.join(cells) + ' |')

  row('none (as drawn)', clean_warp, np.zeros((len(records), 4), np.float32), clean_ink,
      np.asarray(clean), np.asarray(clean))
  buckets = {b.name: b for b in config.curriculum.buckets}
  for name in ('moderate', 'severe'):
    j = float(buckets[name].jitter)
    thickness = 0 if args.thin else int(buckets[name].thickness)
    reference = np.asarray(thicken(clean, thickness))
    for part in PARTS:
      moved, drawn = jitter(jax.random.key(0), clean, j, part)
      moved = thicken(moved, thickness)
      ink, warp = align(moved)
      row(f'{name} (jitter {j}, thickness {thickness}): {part}', warp, np.asarray(drawn),
          np.asarray(ink) > 0.5, np.asarray(moved), reference)


if __name__ == '__main__':
  main()
