r"""Ablations of the three STBIR modules, written as a markdown report.

  python -m stbir_jax.ablate --config=configs/base.py:demo --workdir=workdirs/ablate \
      --seeds=0,1,2 --out=docs/results.md

Runs, for every seed, the full model and one variant per removed module:
  full                 all three modules
  curriculum_none      module 1 off: clean queries only (modality dropout stays)
  curriculum_uniform   module 1 without its schedule: all quality buckets mixed uniformly
  no_category          module 2 off: no prototypes, no intra-category hard-negative weights
  joint                module 3 off: one stage training every tower jointly on sketch+text
  staged               module 3 on, for a config that trains one joint stage (the demo):
                       the paper's schedule, stages.PAPER_SCHEDULE
  staged_modalities    module 3 with both modalities aligned with the photo first, then the
                       fused query: stages.MODALITY_FIRST_SCHEDULE (not a default variant)
The default --variants are `full`, the three module-off variants that differ from it, and
`joint` or `staged`, whichever changes the config's schedule.
Each run lives in WORKDIR/VARIANT/seed_K and is skipped when its results.json exists, so an
interrupted ablation resumes where it stopped. The report shows mean ± std over seeds;
--report_only writes it from the runs finished so far (column `n`) without training.
"""

import contextlib
import json
import signal
import sys

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from stbir_jax import (
  config_overrides,  # noqa: F401  (list-valued --config.* flags)
  eval_sections,
  paths,
  stages,
)
from stbir_jax.data import ceiling

VARIANTS = ('full', 'curriculum_none', 'curriculum_uniform', 'no_category', 'joint', 'staged',
            'staged_modalities')

FLAGS = flags.FLAGS


def _define_flags():
  """Command-line flags, defined only when run as a program: the library part of this module
  (variant_config, report) is imported by tests next to other absl programs' flags."""
  config_flags.DEFINE_config_file('config', None, 'Base config, e.g. configs/base.py:demo.',
                                  lock_config=False)
  flags.DEFINE_string('workdir', None, 'Root directory of the ablation runs.')
  flags.DEFINE_list('seeds', ['0'], 'Training seeds.')
  flags.DEFINE_list('variants', None, f'Subset of {VARIANTS}; default: see the module docstring.')
  flags.DEFINE_string('out', 'docs/results.md', 'Markdown report to write.')
  flags.DEFINE_bool('report_only', False, 'Write the report from the finished runs (those with '
                    'a results.json) and train nothing, e.g. while other runs still train.')


def variant_config(config: ml_collections.ConfigDict, variant: str, seed: int):
  """The base config with one STBIR module removed (or none for 'full')."""
  if variant not in VARIANTS:
    raise ValueError(f'Unknown ablation variant {variant!r}; valid: {", ".join(VARIANTS)}.')
  c = ml_collections.ConfigDict(config.to_dict())
  c.train.seed = seed
  eval_sections.add_section(c, 'robustness')
  if variant == 'curriculum_none':
    c.curriculum.kind = 'none'
  elif variant == 'curriculum_uniform':
    c.curriculum.kind = 'uniform'
  elif variant == 'no_category':
    c.category.enabled = False
    for stage in c.stages:
      stage.losses = [loss for loss in stage.losses if loss != 'prototype']
      stage.train = [g for g in stage.train if g != 'prototypes']
  elif variant == 'joint':
    # Everything any stage trains, with every loss any stage uses, from the first step.
    losses = list(dict.fromkeys(loss for stage in c.stages for loss in stage.losses))
    groups = list(stages.MODEL_GROUPS) + [
        g for stage in c.stages for g in stage.train if g == 'prototypes']
    c.stages = [stages.joint_stage(dict.fromkeys(groups), losses)]
  elif variant in ('staged', 'staged_modalities'):
    c.stages = stages.alignment_stages(stages.PAPER_SCHEDULE if variant == 'staged'
                                       else stages.MODALITY_FIRST_SCHEDULE)
    if not c.category.enabled:
      for stage in c.stages:
        stage.losses = [loss for loss in stage.losses if loss != 'prototype']
        stage.train = [g for g in stage.train if g != 'prototypes']
  return c


def default_variants(config) -> list:
  """full, the module-off variants, and joint (multi-stage config) or staged (joint config)."""
  variants = ['full', 'curriculum_none', 'curriculum_uniform', 'no_category']
  if config.curriculum.kind == 'none':
    variants.remove('curriculum_none')
  if not config.category.enabled:
    variants.remove('no_category')
  variants.append('staged' if len(config.stages) == 1 else 'joint')
  return variants


class Interrupted(RuntimeError):
  """A run stopped before its end (SIGTERM: preemption); its checkpoint is saved."""


def run_one(config, workdir) -> dict:
  """The results of the run in `workdir`: read when finished, else trained (or resumed).
  Raises Interrupted when the run was stopped, so that a driver over many runs stops too instead
  of going on to the next run and reporting without this one."""
  path = paths.resolve(workdir) / 'results.json'  # the workdir may be a gs:// URL
  if path.exists():
    return json.loads(path.read_text())
  from stbir_jax import train  # pylint: disable=g-import-not-at-top
  results = train.train_and_evaluate(config, workdir)
  if not results:   # train_and_evaluate returns {} when it saved a checkpoint and stopped
    raise Interrupted(f'The run in {workdir} was stopped (SIGTERM) and saved its checkpoint; '
                      'rerun the same command to resume it and the remaining runs.')
  return results


@contextlib.contextmanager
def stop_when_interrupted(prog: str):
  """Ends a driver of many runs with the Interrupted message and 128 + SIGTERM, the status of
  a terminated process, so that a scheduler sees a preempted sweep, not a finished one."""
  try:
    yield
  except Interrupted as e:
    print(f'{prog}: {e}', file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)


def _mean_std(values):
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f'{values[0]:.3f}'
  return f'{values.mean():.3f} ± {values.std(ddof=1):.3f}'


def _cell(results, key) -> str:
  """mean ± std of `key` over the runs, or 'n/a' where a variant does not report it (e.g. a
  sketch-only baseline has no text-only row)."""
  if any(key not in r for r in results):
    return 'n/a'
  return _mean_std([r[key] for r in results])


def significance(reference, other) -> str:
  """'gain' / 'loss' when the difference of the means exceeds twice the larger sample std of
  the two, else 'not significant' (one run per side: no std, nothing can be claimed)."""
  reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
  if len(reference) < 2 or len(other) < 2:
    return 'not significant (1 seed)'
  bound = 2.0 * max(reference.std(ddof=1), other.std(ddof=1))
  diff = reference.mean() - other.mean()
  if abs(diff) <= bound:
    return 'not significant'
  return 'gain' if diff > 0 else 'loss'


def verdict_table(runs: dict, reference: str, keys) -> str:
  """Markdown: reference minus each other method on each key, with significance()."""
  lines = ['| vs | metric | difference | 2 × larger std | verdict |', '|---|---|---:|---:|---|']
  for key in keys:
    ref = [r[key] for r in runs[reference] if key in r]
    for method, results in runs.items():
      values = [r[key] for r in results if key in r]
      if method == reference or not ref or not values:
        continue
      stds = [np.std(v, ddof=1) for v in (ref, values) if len(v) > 1]
      bound = f'{2 * max(stds):.3f}' if len(stds) == 2 else 'n/a'
      lines.append(f'| {method} | `{key}` | {np.mean(ref) - np.mean(values):+.3f} | {bound} | '
                   f'{significance(ref, values)} |')
  return '\n'.join(lines)


BEGIN_MARK = '<!-- ablate: begin (generated by python -m stbir_jax.ablate) -->'
END_MARK = '<!-- ablate: end -->'
OVERALL_METRICS = (('acc@1', 'Acc@1'), ('acc@5', 'Acc@5'), ('acc@10', 'Acc@10'), ('mAP', 'mAP'))


def _of(results, key, reference) -> str:
  """The mean of `key` as a fraction of `reference` (a ceiling, or the clean result), in %."""
  if not reference or any(key not in r for r in results):
    return 'n/a'
  return f'{100.0 * np.mean([r[key] for r in results]) / reference:.1f} %'


def report(runs: dict, config, seeds, command: str, ceilings=None) -> str:
  """runs[variant] = list of results dicts (one per seed) -> markdown tables. `ceilings`
  {dataset: {mode: best possible Acc@1}} (data/ceiling.py) adds each Acc@1 as a fraction of its
  ceiling."""
  ceilings = ceilings or {}
  retrieval = eval_sections.config_section(config, 'retrieval')
  robustness = eval_sections.config_section(config, 'robustness')
  lines = [f'Measured with `{command}` (seeds {", ".join(map(str, seeds))}; `n`: the finished runs '
           f'a row averages, mean ± sample std over them). Evaluation split: '
           f'`{retrieval.split}`; every query against the whole gallery of its configuration.',
           '']
  modes = list(retrieval.modes)
  for ds in config.data.configs:
    best = ceilings.get(ds)
    extra = ' Acc@1 of ceiling |' if best else ''
    lines += [f'### {ds}: overall', '',
              '| variant | n | mode | ' + ' | '.join(name for _, name in OVERALL_METRICS) + ' |'
              + extra, '|---|---:|---|' + '---:|' * (len(OVERALL_METRICS) + bool(best))]
    for variant, results in runs.items():
      for m in modes:
        cells = [_cell(results, f'{ds}/{m}/{key}') for key, _ in OVERALL_METRICS]
        if best:
          cells.append(_of(results, f'{ds}/{m}/acc@1', best.get(m)))
        lines.append(f'| {variant} | {len(results)} | {m} | ' + ' | '.join(cells) + ' |')
    if best:
      lines += ['', 'Ceiling (`python -m stbir_jax.data.ceiling`): best possible Acc@1 '
                + ', '.join(f'{m} {100 * best[m]:.2f} %' for m in ceiling.MODES if m in best)
                + '.']  # ceiling.MODES' order: a cached ceiling.json has its keys sorted
    both = 'sketch+text' in modes
    by_name = {b.name: b for b in config.curriculum.buckets}
    of_ceiling = both and best is not None
    lines += ['', f'### {ds}: robustness (Acc@1 on degraded queries, fixed seed)', '',
              '| variant | n | bucket | ' + ' | '.join(modes) + ' |'
              + (' sketch+text of clean |' if both else '')
              + (' sketch+text of the bucket\'s ceiling |' if of_ceiling else ''),
              '|---|---:|---|' + '---:|' * (len(modes) + both + of_ceiling)]
    removed = {b.name: {m for m, gone in (('sketch', b.missing_sketch), ('text', b.missing_text))
                        if gone} for b in config.curriculum.buckets}
    for variant, results in runs.items():
      for bucket in robustness.buckets:
        cells = []
        for m in modes:
          key = f'{ds}/{bucket}/{m}/acc@1'
          if m in removed[bucket]:
            cells.append('—')  # the bucket removes this mode's only input: no such query
          else:
            cells.append(_cell(results, key))
        if both:
          clean = [r.get(f'{ds}/clean/sketch+text/acc@1', r.get(f'{ds}/sketch+text/acc@1'))
                   for r in results]
          cells.append(_of(results, f'{ds}/{bucket}/sketch+text/acc@1',
                           None if None in clean else float(np.mean(clean))))
        if of_ceiling:
          cells.append(_of(results, f'{ds}/{bucket}/sketch+text/acc@1',
                           ceiling.bucket_ceiling(ceilings, ds, by_name[bucket])))
        lines.append(f'| {variant} | {len(results)} | {bucket} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  if 'full' in runs and len(runs) > 1:
    ds, keys = config.data.configs[0], []
    for mode in ('sketch+text', 'sketch', 'text'):
      keys += [f'{ds}/{mode}/acc@1'] if mode in modes else []
    keys += [f'{ds}/{b}/sketch+text/acc@1' for b in ('moderate', 'severe')
             if b in robustness.buckets and 'sketch+text' in modes]
    lines += [f'### {ds}: full minus each variant (what the removed module buys)', '',
              verdict_table(runs, 'full', keys), '']
  return '\n'.join(lines)


def write_report(text: str, out, marks=(BEGIN_MARK, END_MARK), section='Ablations') -> None:
  """Writes `text` between the `marks` of an existing page (the rest of the page is kept), or
  appends it as a new `section` (a new page if there is none)."""
  out = paths.resolve(out)
  begin, end = marks
  block = f'{begin}\n{text}\n{end}'
  page = out.read_text() if out.exists() else ''
  if begin in page and end in page:
    head, rest = page.split(begin, 1)
    page = head + block + rest.split(end, 1)[1]
  elif page:
    page = page.rstrip('\n') + f'\n\n## {section}\n\n' + block + '\n'
  else:
    page = f'# STBIR {section.lower()}\n\n' + block + '\n'
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(page)


def publish(runs: dict, config, seeds, program: str, workdir, out, report_fn=report,
            marks=(BEGIN_MARK, END_MARK), section='Ablations') -> None:
  """Reports the finished runs (an empty list of results is left out) with the command line that
  made them and the ceiling of the retrieval split, into `out` and on stdout."""
  runs = {name: results for name, results in runs.items() if results}
  if not runs:
    raise app.UsageError(f'No finished run under {workdir}; run without --report_only.')
  command = ' '.join([f'python -m {program}'] + sys.argv[1:])
  split = eval_sections.config_section(config, 'retrieval').split
  ceilings = ceiling.for_config(config, split, paths.resolve(workdir) / 'ceiling.json')
  text = report_fn(runs, config, seeds, command, ceilings)
  write_report(text, out, marks, section)
  print(text)


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  runs = {}
  variants = FLAGS.variants or default_variants(FLAGS.config)
  for variant in variants:
    runs[variant] = []
    for seed in seeds:
      workdir = paths.resolve(FLAGS.workdir) / variant / f'seed_{seed}'
      if FLAGS.report_only:
        if (workdir / 'results.json').exists():
          runs[variant].append(json.loads((workdir / 'results.json').read_text()))
        else:
          logging.warning('Ablation %s seed %d: no results.json in %s; left out.', variant, seed,
                          workdir)
        continue
      logging.info('Ablation %s seed %d -> %s', variant, seed, workdir)
      with stop_when_interrupted('stbir_jax.ablate'):
        runs[variant].append(run_one(variant_config(FLAGS.config, variant, seed), workdir))
  publish(runs, FLAGS.config, seeds, 'stbir_jax.ablate', FLAGS.workdir, FLAGS.out)


if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  _define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
