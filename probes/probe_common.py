"""What the probes share: a trained run's robustness evaluator with the clean queries first, and
the table they print and write. Not part of the package; the probes import it from their own
folder (python probes/<probe>.py puts it on the path)."""

import argparse
import json
import os
from typing import Any, NamedTuple

import numpy as np

from stbir_jax import evaluate, run_config
from stbir_jax.eval_sections import EvalData, add_section
from stbir_jax.models.stbir import STBIR


class WithClean(evaluate.RobustnessEvaluator):
  """The robustness evaluator's queries (each bucket with its own draws) with the clean ones
  first, as variant 'clean'."""

  def query_variants(self):
    return [('clean', None)] + super().query_variants()

  def variant_modes(self, prefix: str) -> tuple:
    return self.modes if prefix == 'clean' else super().variant_modes(prefix)


class Loaded(NamedTuple):
  evaluator: Any
  config: Any          # the run's config, with its robustness section on the split
  variables: dict      # {'params': the latest parameters}
  dataset: str
  gallery: np.ndarray  # (N, D) embeddings of the split's photos
  instances: np.ndarray  # (N,) their instance ids


def load_evaluator(workdir: str, split: str, evaluator=WithClean, *args, modes=None,
                   as_trained: bool = False) -> Loaded:
  """The run in `workdir` with its latest parameters, `evaluator(section, model, data, *args)`
  on its robustness buckets on `split` (in `modes` where given), and the split's gallery
  embedded once. `as_trained`: a split query's halves unweighted (sketch_weight 0.5), whatever
  weight calibration chose."""
  run, config = run_config.load_run(workdir)
  if as_trained:
    config.model.fusion.sketch_weight = 0.5
  add_section(config, 'robustness')
  config.evals.robustness.update(split=split)
  if modes is not None:
    config.evals.robustness.update(modes=list(modes))
  section = evaluate.section(config, 'robustness')
  _, params = run_config.latest_params(run, None)
  variables = {'params': params}
  ev = evaluator(section, STBIR.from_config(config), EvalData(config), *args)
  dataset = section.datasets[0]
  gallery, instances, _ = ev.gallery(variables, dataset, split)
  return Loaded(ev, config, variables, dataset, gallery, np.asarray(instances))


def report(table: dict, columns, path: str, payload=None) -> None:
  """Prints {row: {column: %}} as a markdown table and writes `payload` (default: the table)
  as JSON to `path`."""
  print('| bucket/mode | ' + ' | '.join(columns) + ' |')
  print('|---|' + '---:|' * len(columns))
  for key, row in table.items():
    print(f'| {key} | ' + ' | '.join(f'{row[c]:.1f}' for c in columns) + ' |')
  with open(path, 'w') as f:
    json.dump(table if payload is None else payload, f, indent=1)
  print('wrote', path)


def output_path(workdir: str, name: str, split: str) -> str:
  return os.path.join(workdir, f'{name}_{split}.json')


def clean_and_robust_args(doc: str):
  """(args, alphas) of a probe that mixes a clean run with a robust one: --clean, --robust,
  --alphas (comma-separated mix weights of the robust run) and --split."""
  p = argparse.ArgumentParser(description=doc.split('\n\n')[0])
  p.add_argument('--clean', required=True, help='run trained on clean queries')
  p.add_argument('--robust', required=True, help='a run trained on degraded queries')
  p.add_argument('--alphas', default='0,0.25,0.5,0.75,1')
  p.add_argument('--split', default='validation')
  args = p.parse_args()
  return args, [float(a) for a in args.alphas.split(',')]
