"""What a trained run's wrong top-1 photos are: which twin took the place of the right photo.
A probe of a trained run on STBIR-Synth, not part of the package (docs/results.md, "Which
half of the query fails").

  python probes/error_kinds.py --workdir=workdirs/demo_recipe/stbir/seed_0 [--split=validation]

A family holds K structural x M appearance variants, instance = family * K * M + k * M + m
(stbir_jax/data/synth/generator.py). Every query of the run's robustness buckets (clean, and
degraded with the robustness evaluator's own draws) is ranked against the split's gallery and
its top-1 photo is counted as one of:

  right        the query's own photo
  appearance   same family and structure, another appearance: what the text should tell apart
  structure    same family and appearance, another structure: what the sketch should tell apart
  both         same family, another structure and appearance
  family       another family

Prints the shares (% of the bucket's queries) per bucket and mode; writes them as JSON next to
the run (error_kinds_<split>.json).
"""

import argparse

import numpy as np
import probe_common

KINDS = ('right', 'appearance', 'structure', 'both', 'family')


def error_kinds(top: np.ndarray, target: np.ndarray, structures: int,
                appearances: int) -> dict:
  """{kind: % of queries} for top-1 instance ids `top` against `target` (both (Q,))."""
  per_family = structures * appearances
  family = lambda i: i // per_family
  k = lambda i: i % per_family // appearances
  m = lambda i: i % appearances
  same_family = family(top) == family(target)
  same_k, same_m = k(top) == k(target), m(top) == m(target)
  masks = {'right': top == target,
           'appearance': same_family & same_k & ~same_m,
           'structure': same_family & ~same_k & same_m,
           'both': same_family & ~same_k & ~same_m,
           'family': ~same_family}
  return {kind: 100.0 * float(np.mean(mask)) for kind, mask in masks.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='validation')
  args = p.parse_args()
  run = probe_common.load_evaluator(args.workdir, args.split)
  structures = int(run.config.data.synth.structural_variants)
  appearances = int(run.config.data.synth.appearance_variants)
  table = {}
  embeddings = run.evaluator.query_embeddings(run.variables, run.dataset, args.split)
  for (bucket, mode), (queries, target) in embeddings.items():
    # The first maximum wins ties, as in a stable descending sort.
    top = run.instances[np.argmax(queries @ run.gallery.T, axis=1)]
    table[f'{bucket}/{mode}'] = error_kinds(top, np.asarray(target), structures, appearances)
  probe_common.report(table, KINDS,
                      probe_common.output_path(args.workdir, 'error_kinds', args.split))


if __name__ == '__main__':
  main()
