"""Robustness by averaging two runs' scores, not their weights: a photo's score for a query is
(1 - a) * the clean run's + a * the robust run's, each run with its own towers, gallery and
calibrated sketch weight. A probe of two trained runs, not part of the package (docs/results.md,
"A robust query side over the clean model's gallery").

  python probes/score_ensemble.py --clean=workdirs/budget2712/stbir/seed_0 \
      --robust=workdirs/fg_s0 [--alphas=0,0.25,0.5,0.75,1] [--split=validation]

Where the robust run kept the clean run's photo tower (trained with
--config.optim.group_lr_scale.photo=0 from its checkpoint), the two galleries are the same
embeddings and the mix costs a second query encoding only: it is the mean of the two query
embeddings. Otherwise it is an ensemble of two dual encoders, with two galleries. Prints
sketch+text Acc@1 % per bucket and a; writes them as JSON next to the robust run
(score_ensemble_<split>.json).
"""

import numpy as np
import probe_common


def top1_accuracy(scores: np.ndarray, target: np.ndarray) -> float:
  """% of rows of (Q, N) `scores` whose highest column (the first on ties) is `target` (Q,)."""
  return 100.0 * float(np.mean(np.argmax(scores, axis=1) == target))


def main():
  args, alphas = probe_common.clean_and_robust_args(__doc__)
  runs = [probe_common.load_evaluator(w, args.split, modes=['sketch+text'])
          for w in (args.clean, args.robust)]
  if not np.array_equal(runs[0].instances, runs[1].instances):
    raise SystemExit(f'{args.clean} and {args.robust} embed different galleries on {args.split}.')
  column = {int(instance): i for i, instance in enumerate(runs[0].instances)}
  queries = [r.evaluator.query_embeddings(r.variables, r.dataset, args.split) for r in runs]
  table = {f'a={a:g}': {} for a in alphas}
  for (bucket, mode), (clean_q, target) in queries[0].items():
    robust_q, robust_target = queries[1][bucket, mode]
    if not np.array_equal(target, robust_target):
      raise SystemExit(f'bucket {bucket}: the two runs drew different queries.')
    clean_s, robust_s = clean_q @ runs[0].gallery.T, robust_q @ runs[1].gallery.T
    columns = np.asarray([column[int(t)] for t in target])
    for a in alphas:
      table[f'a={a:g}'][bucket] = top1_accuracy((1 - a) * clean_s + a * robust_s, columns)
  probe_common.report(table, list(next(iter(table.values()))),
                      probe_common.output_path(args.robust, 'score_ensemble', args.split))


if __name__ == '__main__':
  main()
