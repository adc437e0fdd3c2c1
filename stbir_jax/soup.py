r"""Averages the weights of runs on one training trajectory into a new run directory (a weight
soup; WiSE-FT, Wortsman et al. 2022).

  python -m stbir_jax.soup --runs=workdirs/clean,workdirs/robust --weights=0.75,0.25 \
      --workdir=workdirs/soup

The use it was built for (docs/results.md, "Averaging a clean and a fine-tuned model's
weights"): a run trained on clean queries, and the same run branched at one of its late
checkpoints and trained on to the same step on degraded queries (a copy of its workdir resumed
with a curriculum config and --allow_config_change; a run started from its params with
--config.train.init_from=RUN, a fresh optimizer and step count, is a branch too, not measured
there). Their average keeps the clean model's clean accuracy and gains on degraded queries.
Runs trained apart from the first step do not average into a working model, even from the same
seed: in the same docs section the even average of two such runs scored 10 points below the
weaker one on clean queries. The runs must share the model and data configs (refused otherwise,
naming the keys).

Writes WORKDIR/config.json (the first run's config, with its recorded changes),
WORKDIR/checkpoints/<step>/state (the averaged params only: a soup is evaluated, calibrated and
exported like any run, but not resumed; <step> is the largest of the runs' steps) and
WORKDIR/soup.json (the runs, their steps and weights). A split fusion with
model.fusion.calibrate=True then chooses its own sketch weight on validation (calibrate.py); either
way the soup is evaluated with the run's evaluators (WORKDIR/results_<split>_step<N>.{json,md}, and
WORKDIR/results.{json,md} as a training run ends, the .md naming the soup's runs and weights: an
export's model card shows it).
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from stbir_jax import calibrate, cli, eval_report, evaluate, paths, run_config
from stbir_jax.config_checks import ConfigError
from stbir_jax.exported import ExportError

PROG = 'stbir_jax.soup'
FILE = run_config.SOUP_FILE
SHARED_SECTIONS = ('model', 'data')


def check_weights(runs, weights) -> list[float]:
  """The weights (numbers or their strings) as floats; raises ConfigError unless there is one
  number per run, each >= 0, summing to 1 (within 1e-6), for at least two runs."""
  if len(runs) < 2:
    raise ConfigError(f'--runs names {len(runs)} run(s); a soup averages two or more.')
  if len(weights) != len(runs):
    raise ConfigError(f'--weights has {len(weights)} value(s) for {len(runs)} runs; expected one '
                      'weight per run.')
  try:
    weights = [float(w) for w in weights]
  except ValueError as e:
    raise ConfigError(f'--weights={",".join(map(str, weights))}: expected numbers ({e}).') from None
  if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
    raise ConfigError(f'--weights={",".join(f"{w:g}" for w in weights)}: expected weights >= 0 '
                      f'that sum to 1 (they sum to {sum(weights):g}).')
  return weights


def check_same_model(runs, configs) -> None:
  """Raises ConfigError naming each model or data key on which a run's config differs from the
  first run's (model.fusion.sketch_weight excepted: the soup chooses its own)."""
  first, flat_ref = runs[0], run_config.flatten(configs[0].to_dict())
  diffs = []
  for run, config in zip(runs[1:], configs[1:], strict=True):
    flat = run_config.flatten(config.to_dict())
    diffs += [f'{k}: {first} {flat_ref.get(k)!r} vs {run} {flat.get(k)!r}'
              for k in sorted(set(flat_ref) | set(flat))
              if k.split('.')[0] in SHARED_SECTIONS and k not in run_config.CALIBRATED_KEYS
              and flat_ref.get(k) != flat.get(k)]
  if diffs:
    raise ConfigError('the runs do not share one model; differences:\n  ' + '\n  '.join(diffs))


def average(trees, weights):
  """sum_i weights[i] * trees[i], leaf by leaf in float32, cast back to the first tree's dtypes;
  raises ConfigError on a leaf whose shape differs between trees."""
  def one(*leaves):
    shapes = {np.shape(x) for x in leaves}
    if len(shapes) > 1:
      raise ConfigError(f'parameter shapes differ between the runs: {sorted(shapes)}')
    total = sum(w * np.asarray(x, np.float32) for w, x in zip(weights, leaves, strict=True))
    return total.astype(np.asarray(leaves[0]).dtype)
  return jax.tree_util.tree_map(one, *trees)


def make_soup(runs, weights, workdir, steps=None) -> dict:
  """Averages the params of `runs` (their checkpoint `steps`, default each run's latest) with
  `weights` into a new run in `workdir`, calibrates it where its config asks for that, evaluates
  it and returns {'step', 'sketch_weight', 'results'}."""
  weights = check_weights(runs, weights)
  steps = list(steps) if steps else [None] * len(runs)
  if len(steps) != len(runs):
    raise ConfigError(f'--steps has {len(steps)} value(s) for {len(runs)} runs.')
  out = paths.resolve(workdir)
  if (out / 'checkpoints').exists() or (out / run_config.CONFIG_FILE).exists():
    raise ConfigError(f'{out} already holds a run; choose a new --workdir for the soup.')
  directories, configs, params, taken = [], [], [], []
  for run, step in zip(runs, steps, strict=True):
    try:
      directory, config = run_config.load_run(run)
      step, p = run_config.latest_params(directory, step)
    except ExportError as e:
      raise ConfigError(f'--runs: {e}'.replace('--workdir must be', 'each run must be')) from None
    directories.append(str(directory))
    configs.append(config)
    taken.append(step)
    params.append(p)
  check_same_model(directories, configs)
  config = configs[0]
  mixed = average(params, weights)
  step = max(taken)
  out.mkdir(parents=True, exist_ok=True)
  run_config.record_start(config, out)
  (out / FILE).write_text(json.dumps(
      {'runs': [{'workdir': r, 'step': s, 'weight': w}
                for r, s, w in zip(directories, taken, weights, strict=True)]}, indent=2))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out / 'checkpoints' / str(step) / 'state', {'params': mixed})
  checkpointer.wait_until_finished()
  if config.model.fusion.get('calibrate', False):
    record = calibrate.calibrate_run(out, step)
    weight, results = record['sketch_weight'], record['results']
  else:
    _, results = evaluate.evaluate_run(out, step=step)
    weight = float(config.model.fusion.get('sketch_weight', 0.5))
  # results.{json,md}, as a training run ends: the export's model card shows them, and the soup.
  eval_report.write_results(results, out, 'results')
  parts = ' + '.join(f'{w:g} x {r} (step {s})'
                     for r, s, w in zip(directories, taken, weights, strict=True))
  (out / 'results.md').write_text(f'A weight soup (python -m stbir_jax.soup): {parts}.\n\n'
                                  + (out / 'results.md').read_text())
  return {'step': step, 'sketch_weight': weight, 'results': results}


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_list('runs', None, 'Run directories to average (two or more, one model config).',
                    flag_values=fv)
  flags.DEFINE_list('weights', None, 'One weight per run, >= 0, summing to 1; default: equal.',
                    flag_values=fv)
  flags.DEFINE_list('steps', None, "Each run's checkpoint step; default: each run's latest.",
                    flag_values=fv)
  flags.DEFINE_string('workdir', None, 'New run directory for the soup.', flag_values=fv)
  flags.mark_flags_as_required(['runs', 'workdir'], flag_values=fv)


def program(f: flags.FlagValues) -> int:
  weights = f.weights or [1.0 / len(f.runs)] * len(f.runs)
  try:
    steps = [int(s) for s in f.steps] if f.steps else None
  except ValueError as e:
    raise ConfigError(f'--steps={",".join(f.steps)}: expected whole numbers ({e}).') from None
  soup = make_soup(f.runs, weights, f.workdir, steps)
  print(f'{f.workdir}: soup of {len(f.runs)} runs at step {soup["step"]}, sketch weight '
        f'{soup["sketch_weight"]:.2f}\n{eval_report.results_table(soup["results"])}', flush=True)
  return 0


def main(argv=None) -> int:
  """The program; `argv`: its flags as a list (cli.run_program), None: sys.argv."""
  return cli.run_program(PROG, define_flags, program, argv)


if __name__ == '__main__':
  sys.exit(main())
