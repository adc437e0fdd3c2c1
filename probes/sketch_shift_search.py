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
import json
import os

import jax
import numpy as np

from stbir_jax import evaluate, run_config
from stbir_jax.eval_sections import EvalData, add_section
from stbir_jax.models.stbir import STBIR
from stbir_jax.query_modes import apply_mode

MODES = ('sketch', 'sketch+text')
PENALTIES = (0.002, 0.005, 0.01, 0.02)
TEMPERATURES = (0.02, 0.05, 0.1)


def shift_maps(sketch: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """(B, R, R) stroke maps moved by (dy, dx) pixels; what leaves the frame is lost, 0 enters."""
  out = np.zeros_like(sketch)
  r = sketch.shape[1]
  src = lambda d: slice(0, r - d) if d >= 0 else slice(-d, r)
  dst = lambda d: slice(d, r) if d >= 0 else slice(0, r + d)
  out[:, dst(dy), dst(dx)] = sketch[:, src(dy), src(dx)]
  return out


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
  run, config = run_config.load_run(args.workdir)
  add_section(config, 'robustness')
  config.evals.robustness.split = args.split
  section = evaluate.section(config, 'robustness')
  _, params = run_config.latest_params(run, None)
  variables = {'params': params}
  ev = evaluate.RobustnessEvaluator(section, STBIR.from_config(config), EvalData(config))
  dataset = section.datasets[0]
  gallery, instances, _ = ev.gallery(variables, dataset, args.split)
  row_of = {int(i): r for r, i in enumerate(instances)}
  grid = range(-args.span, args.span + 1, args.stride)
  shifts = [(dy, dx) for dy in grid for dx in grid]
  if (0, 0) not in shifts:
    p.error(f'--span={args.span} --stride={args.stride}: the grid must hold the zero shift')
  base_key = jax.random.PRNGKey(section.eval_seed)
  buckets = ['clean'] + list(ev.buckets)
  scores = {(b, m): [] for b in buckets for m in MODES}
  targets = {key: [] for key in scores}
  batches = evaluate._fixed_size(ev.data.queries(dataset, args.split, ev.batch_size))
  for number, batch in enumerate(batches):
    numeric = {k: v for k, v in batch.items() if v.dtype.kind in 'biuf'}
    valid = batch['valid'].astype(bool)
    for bucket in buckets:
      variant = numeric if bucket == 'clean' else jax.device_get(
          ev._degrade_fn(bucket)(jax.random.fold_in(base_key, number), numeric))
      for mode in MODES:
        if bucket != 'clean' and mode not in ev.variant_modes(bucket):
          continue   # e.g. no sketch-only queries in a bucket that removes the sketch
        query = {k: np.asarray(v) for k, v in apply_mode(variant, mode).items()
                 if k in evaluate.QUERY_KEYS}
        keep = valid & evaluate._has_inputs_of(batch, mode)
        per_shift = [np.asarray(ev._encode_query(
            variables, dict(query, sketch=shift_maps(query['sketch'], dy, dx))))[keep]
            @ gallery.T for dy, dx in shifts]
        scores[bucket, mode].append(np.stack(per_shift, 1))
        targets[bucket, mode].append([row_of[int(t)] for t in batch['instance'][keep]])
    print(f'batch {number}: {len(shifts)} shifts x {len(buckets)} buckets', flush=True)
  table = {}
  for (bucket, mode), parts in scores.items():
    if not parts or not sum(map(len, targets[bucket, mode])):
      continue
    target = np.concatenate(targets[bucket, mode]).astype(np.int64)
    by_rule = rules(np.concatenate(parts), shifts)
    table[f'{bucket}/{mode}'] = {rule: acc_at_1(s, target) for rule, s in by_rule.items()}
  names = list(next(iter(table.values())))
  print('| bucket/mode | ' + ' | '.join(names) + ' |')
  print('|---|' + '---:|' * len(names))
  for key, row in table.items():
    print(f'| {key} | ' + ' | '.join(f'{row[n]:.1f}' for n in names) + ' |')
  out = os.path.join(args.workdir, f'sketch_shift_search_{args.split}.json')
  with open(out, 'w') as f:
    json.dump({'span': args.span, 'stride': args.stride, 'acc@1': table}, f, indent=1)
  print('wrote', out)


if __name__ == '__main__':
  main()
