"""How Acc@1 depends on the gallery's size: each query scored against the photos of its own
group of F families only (the split's families in stored order, cut into disjoint groups of F;
a query's target is always in its group), beside the whole split's gallery. STBIR-Synth's
validation split has 16 families and its test split 64 (4 x 4 instances each), so test at
--families=16 asks the validation split's question of the test photos. A probe of one trained
run, not part of the package (docs/results.md, "Why the test ratio is lower than validation's").

  python probes/gallery_size.py --workdir=workdirs/robust_twice_s0 [--split=test] \
      [--families=4,16]

Prints sketch+text Acc@1 % per bucket and gallery (the mean over groups, each query once) and
writes it as JSON next to the run (gallery_size_<split>.json).
"""

import argparse

import numpy as np
import probe_common

from stbir_jax.data import names


def grouped_top1(scores: np.ndarray, target: np.ndarray, photo_group: np.ndarray,
                 query_group: np.ndarray) -> float:
  """% of rows of (Q, N) `scores` whose highest column among the photos of the query's own
  group (photo_group == query_group[row]; the first on ties) is `target` (Q,) column."""
  inside = photo_group[None, :] == query_group[:, None]
  best = np.argmax(np.where(inside, scores, -np.inf), axis=1)
  return 100.0 * float(np.mean(best == target))


def family_groups(families: np.ndarray, size: int) -> np.ndarray:
  """Each photo's group: the rank of its family among the split's (sorted) families // size."""
  _, rank = np.unique(families, return_inverse=True)
  return rank // size


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='test')
  p.add_argument('--families', default='4,16', help='comma-separated group sizes, in families')
  args = p.parse_args()
  loaded = probe_common.load_evaluator(args.workdir, args.split, modes=['sketch+text'])
  if loaded.config.data.name != names.SYNTH:
    raise SystemExit(f'{args.workdir}: data.name={loaded.config.data.name!r}; the probe needs '
                     f'{names.SYNTH!r}, whose instance ids number the photos family by family.')
  per_family = (int(loaded.config.data.synth.structural_variants)
                * int(loaded.config.data.synth.appearance_variants))
  families = loaded.instances // per_family   # data/synth/generator.py numbers family-major
  column = {int(instance): i for i, instance in enumerate(loaded.instances)}
  galleries = {f'{len(np.unique(families))} families (all)': np.zeros(len(families), np.int64)}
  for size in (int(f) for f in args.families.split(',')):
    galleries[f'{size} families'] = family_groups(families, size)
  table = {}
  queries = loaded.evaluator.query_embeddings(loaded.variables, loaded.dataset, args.split)
  for (bucket, _), (q, target) in queries.items():
    columns = np.asarray([column[int(t)] for t in target])
    scores = q @ loaded.gallery.T
    table[bucket] = {name: grouped_top1(scores, columns, groups, groups[columns])
                     for name, groups in galleries.items()}
  if 'moderate' in table:   # issue 13's ratio, in % of the clean score
    table['moderate / clean, %'] = {k: 100.0 * table['moderate'][k] / table['clean'][k]
                                    for k in table['clean']}
  probe_common.report(table, list(table['clean']),
                      probe_common.output_path(args.workdir, 'gallery_size', args.split))


if __name__ == '__main__':
  main()
