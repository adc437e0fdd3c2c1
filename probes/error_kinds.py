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
import json
import os

import numpy as np

from stbir_jax import evaluate, run_config
from stbir_jax.eval_sections import EvalData, add_section
from stbir_jax.models.stbir import STBIR

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


class WithClean(evaluate.RobustnessEvaluator):
  """The robustness evaluator's queries with the clean ones first."""

  def query_variants(self):
    return [('clean', None)] + super().query_variants()

  def variant_modes(self, prefix: str) -> tuple:
    return self.modes if prefix == 'clean' else super().variant_modes(prefix)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default='validation')
  args = p.parse_args()
  run, config = run_config.load_run(args.workdir)
  add_section(config, 'robustness')
  config.evals.robustness.update(split=args.split)
  section = evaluate.section(config, 'robustness')
  _, params = run_config.latest_params(run, None)
  variables = {'params': params}
  ev = WithClean(section, STBIR.from_config(config), EvalData(config))
  dataset = section.datasets[0]
  gallery, instances, _ = ev.gallery(variables, dataset, args.split)
  structures = int(config.data.synth.structural_variants)
  appearances = int(config.data.synth.appearance_variants)
  table = {}
  for (bucket, mode), (queries, target) in ev.query_embeddings(variables, dataset,
                                                               args.split).items():
    # The first maximum wins ties, as in a stable descending sort.
    top = np.asarray(instances)[np.argmax(queries @ gallery.T, axis=1)]
    table[f'{bucket}/{mode}'] = error_kinds(top, np.asarray(target), structures, appearances)
  print('| bucket/mode | ' + ' | '.join(KINDS) + ' |')
  print('|---|' + '---:|' * len(KINDS))
  for key, row in table.items():
    print(f'| {key} | ' + ' | '.join(f'{row[k]:.1f}' for k in KINDS) + ' |')
  out = os.path.join(args.workdir, f'error_kinds_{args.split}.json')
  with open(out, 'w') as f:
    json.dump(table, f, indent=1)
  print('wrote', out)


if __name__ == '__main__':
  main()
