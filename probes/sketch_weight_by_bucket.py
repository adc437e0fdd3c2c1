"""Whether a degraded sketch+text query would do better trusting its text more: a split run's
sketch+text Acc@1 per robustness bucket for every query-time sketch weight w. A probe of a
trained run, not part of the package (docs/results.md, "Two sketch-half levers against jitter").

  python probes/sketch_weight_by_bucket.py --workdir=workdirs/demo_split/stbir/seed_0 \
      [--split=validation]

A split query scores a photo as w <q_sketch, g_sketch> + (1 - w) <q_text, g_text> (calibrate.py
chooses one w for all queries on clean validation queries). Here the halves are taken as trained
and every bucket (clean, and degraded with the robustness evaluator's own draws) is scored at
w = 0, 0.05, ..., 1. Prints % Acc@1 per w and bucket; writes them as JSON next to the run
(sketch_weight_by_bucket_<split>.json).
"""

import argparse

import numpy as np
import probe_common

from stbir_jax import compare


def accuracy_by_weight(sketch_scores: np.ndarray, text_scores: np.ndarray, target: np.ndarray,
                       weights) -> dict:
  """{w: % of queries whose top-1 column under w * sketch + (1 - w) * text is `target`}, for
  (Q, N) score matrices and (Q,) target columns; the first maximum wins ties."""
  return {float(w): 100.0 * float(np.mean(
      np.argmax(w * sketch_scores + (1 - w) * text_scores, axis=1) == target)) for w in weights}


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='validation')
  args = p.parse_args()
  run = probe_common.load_evaluator(args.workdir, args.split, modes=['sketch+text'],
                                    as_trained=True)
  half = run.gallery.shape[1] // 2
  column = {int(instance): i for i, instance in enumerate(run.instances)}
  weights = [round(float(w), 2) for w in compare.FUSION_WEIGHTS]
  table = {}
  embeddings = run.evaluator.query_embeddings(run.variables, run.dataset, args.split)
  for (bucket, mode), (queries, target) in embeddings.items():
    if mode != 'sketch+text' or bucket in ('no_sketch', 'no_text'):
      continue   # a missing half leaves nothing to weigh
    by_w = accuracy_by_weight(queries[:, :half] @ run.gallery[:, :half].T,
                              queries[:, half:] @ run.gallery[:, half:].T,
                              np.asarray([column[int(t)] for t in target]), weights)
    table[bucket] = {f'{w:.2f}': acc for w, acc in by_w.items()}
  rows = {f'w {w}': {bucket: table[bucket][w] for bucket in table} for w in table['clean']}
  probe_common.report(rows, list(table),
                      probe_common.output_path(args.workdir, 'sketch_weight_by_bucket', args.split))


if __name__ == '__main__':
  main()
