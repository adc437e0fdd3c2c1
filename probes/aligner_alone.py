"""How much of a jitter can the sketch aligner undo from the sketch alone? Trains a
models/aligner.SketchAligner out of the model, on loss.align_jitter's regression only, and
reports how much of each validation sketch's jitter it undoes; or reports the same for the
aligner of a trained run. A probe, not part of the package (docs/results.md, "What holds the
aligner back").

  python probes/aligner_alone.py [--train=bucket|jitter] [--steps=2712] [--width=16 --hidden=32]
      [--pair_shift=0.06] [--save=aligner.pkl]
  python probes/aligner_alone.py --workdir=workdirs/alignj_twice_s0   # a run's aligner, untrained

Training batches: 64 sketches of the `shoes` train split, each degraded with probability 2/3
(about the share `demo_robust`'s curriculum gives the moderate bucket) and kept clean (target:
no warp) otherwise. --train=bucket degrades by the whole moderate bucket (degradations.degrade:
stroke dropout, partial drawing, noise strokes, jitter, thickness); --train=jitter by its jitter
and thickness only. AdamW at --lr with a cosine decay, as the runs' sketch group. --pair_shift
moves each training sketch first, as train.pair_shift does (its photo would move too, so the
target stays the jitter's undo alone): the runs' aligner reads sketches moved so.

Printed: the least-squares slope of the predicted warp on the one that undoes each sketch's
jitter (1 undoes it, 0 ignores it; shift: both axes pooled), on validation sketches degraded
(a) by the moderate bucket's jitter and thickness only (the case of probes/aligner_warps.py)
and (b) by the whole moderate bucket. --save writes the trained params (a pickle of numpy
arrays) for a run's sketch/aligner.
"""

import argparse
import os
import pickle
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'configs'))
import aligner_warps  # noqa: E402  pylint: disable=g-import-not-at-top
import base  # noqa: E402  pylint: disable=g-import-not-at-top

from stbir_jax import degradations, losses, run_config  # noqa: E402
from stbir_jax.data.synth import generator  # noqa: E402
from stbir_jax.data.synth import spec as spec_lib  # noqa: E402
from stbir_jax.models import aligner  # noqa: E402
from stbir_jax.models.stbir import normalize_pixels, sketch_to_image  # noqa: E402

BATCH = 64
DEGRADED_SHARE = 2 / 3


def undone(warp, target) -> tuple:
  """(shift, angle, scale) least-squares slopes of `warp` (B, 4) on `target` (B, 4)."""
  out = []
  for cols in ((0, 1), (2,), (3,)):
    x, y = np.asarray(target)[:, cols].ravel(), np.asarray(warp)[:, cols].ravel()
    out.append(float(x @ y / (x @ x)))
  return tuple(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--train', choices=('bucket', 'jitter'), default='bucket')
  p.add_argument('--steps', type=int, default=2712)
  p.add_argument('--lr', type=float, default=0.002)
  p.add_argument('--width', type=int, default=16)
  p.add_argument('--hidden', type=int, default=32)
  p.add_argument('--pair_shift', type=float, default=0.0,
                 help="move each training sketch first, as train.pair_shift does (whole pixels, "
                      "up to this fraction of the image): not part of the target")
  p.add_argument('--workdir', help="evaluate this run's aligner instead of training one")
  p.add_argument('--save', help='write the trained params here (pickle)')
  args = p.parse_args()

  config = base.get_config('demo_robust')
  spec = spec_lib.SynthSpec.from_config(config.data)

  def sketches(split):
    records = generator.generate(config.data.configs[0], split, spec)
    return jnp.asarray(np.concatenate([r['sketches'][..., 0] for r in records]))

  names = [b.name for b in config.curriculum.buckets]
  moderate, clean = names.index('moderate'), names.index('clean')
  buckets = degradations.buckets_from_config(config.curriculum.buckets)
  jitter = float(config.curriculum.buckets[moderate].jitter)
  thickness = int(config.curriculum.buckets[moderate].thickness)
  kind = config.model.sketch.kind
  background = normalize_pixels(jnp.ones(3), kind)

  def images(s):
    return normalize_pixels(sketch_to_image(s), kind) - background

  def by_bucket(key, s, bucket_idx):
    n = s.shape[0]
    batch = dict(sketch=s, text_ids=jnp.zeros((n, 8), jnp.int32),
                 text_mask=jnp.ones((n, 8), jnp.int32), has_sketch=jnp.ones(n, bool),
                 has_text=jnp.ones(n, bool))
    out, undo = degradations.degrade(key, batch, bucket_idx, buckets, with_undo=True)
    return out['sketch'], undo

  def by_jitter(key, s):
    """The moderate bucket's jitter and thickness alone (probes/aligner_warps.py's case), and
    the warp that undoes each draw (the same per-sketch keys)."""
    moved, _ = aligner_warps.jitter(key, s, jitter, 'all')
    undo = jax.vmap(degradations.undo_jitter, in_axes=(0, None, None))(
        jax.random.split(key, s.shape[0]), jitter, s.shape[1])
    return aligner_warps.thicken(moved, thickness), undo

  module = aligner.SketchAligner(width=args.width, hidden=args.hidden)
  val = sketches('validation')
  if args.workdir:
    run, _ = run_config.load_run(args.workdir)
    _, params = run_config.latest_params(run, None)
    params = params['sketch']['aligner']
    print(f"{args.workdir}'s aligner")
  else:
    train = sketches('train')
    params = module.init(jax.random.key(1), images(train[:2]))['params']
    tx = optax.adamw(optax.cosine_decay_schedule(args.lr, args.steps), weight_decay=1e-4)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, key):
      k_pick, k_degrade, k_share = jax.random.split(key, 3)
      s = train[jax.random.randint(k_pick, (BATCH,), 0, train.shape[0])]
      degraded = jax.random.uniform(k_share, (BATCH,)) < DEGRADED_SHARE
      if args.pair_shift:   # the sketch's photo moves with it, so the aligner should not undo it
        s = degradations.shift_pairs(jax.random.fold_in(key, 7), dict(image=s, sketch=s),
                                     args.pair_shift)['sketch']
      if args.train == 'bucket':
        s, target = by_bucket(k_degrade, s, jnp.where(degraded, moderate, clean))
      else:
        moved, undo = by_jitter(k_degrade, s)
        s = jnp.where(degraded[:, None, None], moved, s)
        target = jnp.where(degraded[:, None], undo, 0.0)

      def loss(p):
        return losses.warp_regression(module.apply({'params': p}, images(s))[1], target,
                                      aligner.WARP_UNITS)

      value, grads = jax.value_and_grad(loss)(params)
      updates, opt = tx.update(grads, opt, params)
      return optax.apply_updates(params, updates), opt, value

    start, key = time.time(), jax.random.key(0)
    for i in range(args.steps):
      key, k = jax.random.split(key)
      params, opt, value = step(params, opt, k)
      if i % 500 == 0 or i == args.steps - 1:
        print(f'step {i}: regression {float(value):.3f} ({time.time() - start:.0f} s)',
              flush=True)
    print(f'trained on {args.train} ({train.shape[0]} train sketches), width {args.width}, '
          f'hidden {args.hidden}, {args.steps} steps at lr {args.lr}, '
          f'pair shift {args.pair_shift}')

  warp = jax.jit(lambda s: module.apply({'params': params}, images(s))[1])
  moved, undo = by_jitter(jax.random.key(7), val)
  print('| validation sketches | undone: shift | angle | scale |\n|---|---:|---:|---:|')
  row = lambda name, w, u: print(f'| {name} | ' + ' | '.join(f'{v:.2f}' for v in undone(w, u))
                                 + ' |')
  row('jitter and thickness of the moderate bucket', warp(moved), undo)
  moved, undo = by_bucket(jax.random.key(8), val, jnp.full((val.shape[0],), moderate))
  row('the whole moderate bucket', warp(moved), undo)
  if args.save:
    with open(args.save, 'wb') as f:
      pickle.dump(jax.tree.map(np.asarray, params), f)


if __name__ == '__main__':
  main()
