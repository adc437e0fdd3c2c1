"""Test-time alignment of the sketch: does searching over shifts of a query's sketch win back
what a shifted (jittered) sketch loses? A probe of a trained run, not part of the package
(docs/results.md, "Which degradation costs a degraded query most").

  python probes/sketch_shift_search.py --workdir=workdirs/demo_split/stbir/seed_0 \
      [--split=validation] [--span=6] [--stride=2]

Every query of the run's robustness buckets (clean, and degraded with the robustness
evaluator's own draws) is encoded once per integer shift (dy, dx) of its sketch map within
+-span pixels, and each gallery photo is scored by a rule over the shifts:

  none         the unshifted query (what the evaluators report)
  max          the best score over the shifts
  best_shift   the one shift whose best photo scores highest, for every photo
  mean         the mean score over the shifts
  max_pen<l>   max over shifts of score - l * |shift|^2 (pixels^2)
  lse<t>       a soft max over the shifts at temperature t

and prints sketch and sketch+text Acc@1 (%) per bucket and rule; writes the table as JSON next
to the run (sketch_shift_search_<split>.json).
"""

import argparse

import jax
import numpy as np
import probe_common

from stbir_jax import degradations

MODES = ('sketch', 'sketch+text')
PENALTIES = (0.002, 0.005, 0.01, 0.02)
TEMPERATURES = (0.02, 0.05, 0.1)


@jax.jit
def shift_maps(sketch, dy, dx):
  """(B, R, R) stroke maps moved by (dy, dx) pixels; what leaves the frame is lost, 0 enters.
  The shift is traced, so one compilation serves the whole grid."""
  return jax.vmap(lambda s: degradations.translate(s, dy, dx))(sketch)


class ShiftedQueries(probe_common.WithClean):
  """The robustness evaluator's queries (clean, then each bucket with its own draws), each
  encoded once per shift of its sketch: variant '<bucket>@<dy>,<dx>'."""

  def __init__(self, section, model, data, shifts):
    super().__init__(section, model, data)
    self.shifts = shifts

  def query_variants(self):

    def shifted(degrade, dy, dx):
      def transform(number, batch):
        batch = batch if degrade is None else degrade(number, batch)
        return dict(batch, sketch=shift_maps(batch['sketch'], dy, dx))
      return transform

    return [(f'{name}@{dy},{dx}', shifted(degrade, dy, dx))
            for name, degrade in super().query_variants() for dy, dx in self.shifts]

  def variant_modes(self, prefix: str) -> tuple:
    return super().variant_modes(prefix.split('@')[0])


def acc_at_1(scores: np.ndarray, target: np.ndarray) -> float:
  """% of queries whose target row scores strictly above every other photo."""
  own = scores[np.arange(len(target)), target]
  return 100.0 * float(np.mean((scores > own[:, None]).sum(1) == 0))


def rules(scores: np.ndarray, shifts: list) -> dict:
  """scores (Q, S, N) over S shifts -> {rule: (Q, N)}."""
  zero = shifts.index((0, 0))
  d2 = np.array([dy * dy + dx * dx for dy, dx in shifts], np.float32)[None, :, None]
  top = scores.max(1)
  best = scores.max(2).argmax(1)
  out = {'none': scores[:, zero], 'max': top,
         'best_shift': scores[np.arange(len(scores)), best], 'mean': scores.mean(1)}
  out.update({f'max_pen{p}': (scores - p * d2).max(1) for p in PENALTIES})
  out.update({f'lse{t}': top + t * np.log(np.exp((scores - top[:, None]) / t).sum(1))
              for t in TEMPERATURES})
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='validation')
  p.add_argument('--span', type=int, default=6, help='largest shift, pixels')
  p.add_argument('--stride', type=int, default=2, help='grid step, pixels')
  args = p.parse_args()
  grid = range(-args.span, args.span + 1, args.stride)
  shifts = [(dy, dx) for dy in grid for dx in grid]
  if (0, 0) not in shifts:
    p.error(f'--span={args.span} --stride={args.stride}: the grid must hold the zero shift')
  run = probe_common.load_evaluator(args.workdir, args.split, ShiftedQueries, shifts,
                                    modes=MODES)
  ev = run.evaluator
  row_of = {int(i): r for r, i in enumerate(run.instances)}
  queries = ev.query_embeddings(run.variables, run.dataset, args.split)
  table = {}
  for bucket in ['clean'] + list(ev.buckets):
    for mode in ev.variant_modes(bucket):
      per_shift = [queries[f'{bucket}@{dy},{dx}', mode] for dy, dx in shifts]
      target = np.array([row_of[int(t)] for t in per_shift[0][1]], np.int64)
      scores = np.stack([q @ run.gallery.T for q, _ in per_shift], 1)   # (Q, S, N)
      table[f'{bucket}/{mode}'] = {rule: acc_at_1(s, target)
                                   for rule, s in rules(scores, shifts).items()}
  probe_common.report(table, list(next(iter(table.values()))),
                      probe_common.output_path(args.workdir, 'sketch_shift_search', args.split),
                      {'span': args.span, 'stride': args.stride, 'acc@1': table})

if __name__ == '__main__':
  main()
