"""The training program: `train_and_evaluate(config, workdir)` is the whole run.

Mesh -> data -> state (train_step.create_sharded_state) or exact resume from a checkpoint ->
stages of jitted, donated train steps (train_step.py) -> periodic metrics, checkpoints and
evaluations -> the final results table. Everything inside a step is a pure function of (state,
batch): the curriculum's bucket draws and degradations are keyed by (seed, step), so a resumed
run repeats the uninterrupted one bit for bit.
"""

import json
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import periodic_actions
from flax import traverse_util

from stbir_jax import (
  calibrate,
  checkpoint,
  config_checks,
  convert,
  eval_report,
  evaluate,
  paths,
  sharding,
  stages,
  train_step,
)
from stbir_jax import run_config as recorded_config
from stbir_jax.console import Console, metric_writer
from stbir_jax.data import pipeline
from stbir_jax.data.tokenizer import get_tokenizer
from stbir_jax.exported import ExportError
from stbir_jax.models import stbir


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps (save, then exit cleanly)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and exiting.')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _SkippedRecords:
  """Bad records the input pipeline skipped (config.data.on_bad_record='skip'), all processes
  together, since this process started: a resumed run counts from its restart."""

  def __init__(self):
    self.local = 0

  def pop(self, batch: dict) -> dict:
    """Counts and removes the pipeline's per-row skip counts (not a model input)."""
    if pipeline.SKIPPED_KEY in batch:
      batch = dict(batch)
      self.local += int(np.sum(batch.pop(pipeline.SKIPPED_KEY)))
    return batch

  def total(self) -> int:
    """Collective with several processes: every process calls it at the same steps."""
    if jax.process_count() == 1:
      return self.local
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return int(np.sum(multihost_utils.process_allgather(np.int64(self.local))))


def resolve_pretrained(config) -> None:
  """Fetches (or finds offline) every pretrained tower of config.model.*.init and checks that it
  fits its tower, so that a missing network fails before the run writes anything."""
  for group in convert.GROUPS:
    cfg = config.model[group]
    if 'init' in cfg and cfg.init:
      convert.core.check_tower_config(cfg, cfg.init, convert.GROUPS[group],
                                      f'config.model.{group}')


# Modules a branch may add to the model of the run it starts from (train.init_from): they start
# from their own initialisation, which is the identity (models/aligner.py).
ADDABLE_MODULES = ('sketch/aligner/',)


def params_from_run(config) -> dict:
  """{group: params} of every model group of the run config.train.init_from (its checkpoint
  config.train.init_from_step, -1 the latest; a soup's params too), checked against this
  config's model, or {} when init_from is unset. A fresh run starts from them with a new
  optimizer and step 0: a branch of a trained run, or a fine-tuning on other data."""
  src = str(config.train.init_from)
  if not src:
    return {}
  where = f'config.train.init_from={src!r}'
  if src.startswith('<') and src.endswith('>'):   # a config that continues a run names which
    raise config_checks.ConfigError(f'{where} is a placeholder: this config continues '
                                    f'{src[1:-1]}; pass --config.train.init_from=RUN, that '
                                    f'run\'s directory.')
  step = int(config.train.init_from_step)
  try:
    taken, params = recorded_config.latest_params(src, None if step < 0 else step)
  except ExportError as e:
    raise config_checks.ConfigError(f'{where}: {e}') from None
  model = stbir.STBIR.from_config(config)
  like = jax.eval_shape(lambda key: model.init(key, stbir.dummy_batch(config, 2))['params'],
                        jax.random.PRNGKey(0))
  groups = [g for g in stages.MODEL_GROUPS if g in like]
  want, have = (_leaf_shapes({g: tree[g] for g in groups}) for tree in (like, params))
  added = sorted(k for k in set(want) - set(have) if k.startswith(ADDABLE_MODULES))
  differ = [f'{k}: {have.get(k, "absent")} in the run, {want.get(k, "absent")} here'
            for k in sorted(set(want) | set(have))
            if have.get(k) != want.get(k) and k not in added]
  if differ:
    raise config_checks.ConfigError(
        f'{where} (step {taken}): its params do not fit config.model ({len(differ)} leaves '
        f'differ, e.g. {"; ".join(differ[:3])}); give this run the model config of that run.')
  logging.info('%s: the model starts from step %d of that run%s.', where, taken,
               f' ({len(added)} leaves of {", ".join(ADDABLE_MODULES)} start fresh)' if added
               else '')
  # merge_pretrained replaces whole {group: {module: tree}} subtrees: an added module, absent
  # from the run, keeps its fresh initialisation.
  return {g: dict(params[g]) for g in groups}


def frozen_groups(config) -> tuple:
  """The parameter groups that config.optim.group_lr_scale freezes (scale 0)."""
  return tuple(g for g, scale in config.optim.group_lr_scale.items() if float(scale) == 0)


def check_frozen_towers_start_trained(config) -> None:
  """A tower at learning-rate scale 0 in a fresh run without config.train.init_from must start
  from its pretrained weights (config.model.<tower>.init): a random one would stay random."""
  frozen = frozen_groups(config)
  for tower in convert.GROUPS:
    cfg = config.model[tower]
    if tower in frozen and not ('init' in cfg and cfg.init):
      raise config_checks.ConfigError(
          f'optim.group_lr_scale.{tower}=0 freezes the {tower} tower, and this fresh run starts '
          f'it at random; start it from a trained run (config.train.init_from=RUN) or a '
          f'pretrained tower (config.model.{tower}.init).')


def _leaf_shapes(tree) -> dict:
  """{'group/.../leaf': shape} of a params tree (arrays or their abstract values)."""
  return {'/'.join(k): tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, *,
                       allow_config_change: bool = False, verbose: bool = False) -> dict:
  """Trains (resuming from `workdir` when it holds a checkpoint), evaluates, returns results.

  `workdir` is a local directory or a URL (gs://BUCKET/run) that every process can reach.
  Everything the run needs (a valid config, its tokenizer and pretrained weights, the dataset)
  is resolved before the workdir is written to, so a failing start changes nothing there. A
  resume with a changed config is refused unless `allow_config_change` (stbir_jax/run_config.py).
  The console shows progress and evaluation lines (stbir_jax/console.py); `verbose` also logs
  every metric each log_every steps. TensorBoard gets every metric either way."""
  workdir = paths.resolve(workdir)
  recorded_config.check_is_directory(workdir)
  mesh = sharding.make_mesh(config.mesh)
  config_checks.validate_config(config, jax.process_count(), sharding.data_parallel_size(mesh))
  stage_list = stages.build_stages(config)
  total_steps = int(config.train.num_steps)
  is_main = jax.process_index() == 0
  calibrating = bool(config.model.fusion.get('calibrate', False))
  if calibrating and jax.process_count() > 1:
    raise config_checks.ConfigError(
        f'config.model.fusion.calibrate=True runs on one process, not {jax.process_count()}: '
        'train with calibrate=False, then run python -m stbir_jax.calibrate --workdir=WORKDIR.')

  if (workdir / recorded_config.SOUP_FILE).exists():
    raise config_checks.ConfigError(
        f'{workdir} holds a weight soup (python -m stbir_jax.soup): averaged params without an '
        'optimizer or data state, which evaluate, calibrate and export read but training cannot '
        'resume. Train in a new --workdir.')
  resuming = recorded_config.has_checkpoints(workdir)
  recorded_config.check_workdir_config(config, workdir, resuming)
  config_changes = recorded_config.check_resume(config, workdir, allow_config_change)
  get_tokenizer(config.data.tokenizer)
  initial = {}
  if not resuming:  # a trained run's params or pretrained towers, read only on a fresh start
    initial = params_from_run(config)
    if not initial:
      resolve_pretrained(config)
      check_frozen_towers_start_trained(config)
  pipeline.ensure_built(config.data)
  category_names = pipeline.category_names(config.data)

  workdir.mkdir(parents=True, exist_ok=True)
  if is_main and not (resuming and (workdir / recorded_config.CONFIG_FILE).exists()):
    recorded_config.record_start(config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  constants = train_step.make_constants(config, category_names)
  model = stbir.STBIR.from_config(config)
  train_iter = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                       seed=config.train.seed, process_index=jax.process_index(),
                                       process_count=jax.process_count())

  abstract, state_shardings = train_step.abstract_state(config, model, constants, mesh)
  start, state = ckpt.restore(abstract, train_iter)
  if state is None:
    # Pretrained towers (config.model.*.init) are read only on a fresh start, never on resume.
    # A trained run (train.init_from) gives every tower: its pretrained inits are not read.
    pretrained = initial or convert.load_pretrained(config, abstract.params)
    state = train_step.create_sharded_state(config, mesh, model, constants, abstract=abstract,
                                            pretrained=pretrained)
    start = 0
    logging.info('Initialised a new run in %s.', workdir)
  else:
    logging.info('Resumed %s at step %d.', workdir, start)
    if config_changes and is_main:
      recorded_config.record_change(config, workdir, start, config_changes)
      logging.warning('Resumed with a changed config at step %d: %s (recorded in %s/).', start,
                      ', '.join(config_changes), recorded_config.HISTORY)

  writer = metric_writer(workdir, is_main, verbose)
  out = Console(total_steps, start, len(stage_list), enabled=is_main,
                frozen=frozen_groups(config))
  out.start(workdir, jax.device_count(), jax.devices()[0].platform)
  writer.write_hparams({k: str(v) for k, v in recorded_config.flatten(json.loads(
      config.to_json_best_effort())).items()})
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  evaluators = evaluate.make_evaluators(config, model, mesh=mesh)
  step_fns = {}
  skipped = _SkippedRecords() if pipeline.bad_record_policy(config.data) == 'skip' else None

  def compiled_step(stage):
    if stage.index not in step_fns:
      step_fns[stage.index] = train_step.jit_step(config, model, stage, constants, total_steps,
                                                  mesh, state_shardings)
    return step_fns[stage.index]

  def run_evaluators(step, due=evaluators):
    results, began = {}, time.monotonic()
    for ev in due:
      with report.timed(f'eval/{type(ev).__name__}'):
        results.update(ev.run(stbir.model_variables(state.params)))
    writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()
                                if np.ndim(v) == 0})
    out.evaluation(step, results, time.monotonic() - began)
    return results

  results, stage = {}, None
  # On an exception, an in-flight async save finishes before the error ends the process.
  with ckpt.closed_on_error(), _Preemption() as preemption:
    for step in range(start, total_steps):
      if stage is None or step >= stage.end:
        stage = stages.stage_at(stage_list, step)
        logging.info('Stage %d/%d %r: steps [%d, %d), training %s with %s, %s queries.',
                     stage.index + 1, len(stage_list), stage.name, stage.start, stage.end,
                     ', '.join(stage.train), ', '.join(stage.losses), stage.query)
        writer.write_scalars(step, {'stage': stage.index})
        out.stage(stage)
      local_batch = next(train_iter)
      if skipped is not None:
        local_batch = skipped.pop(local_batch)
      batch = sharding.global_batch(mesh, local_batch)
      state, metrics = compiled_step(stage)(state, batch)
      done = step + 1
      report(done)
      if done % config.train.log_every == 0 or done == total_steps:
        _check_finite(config, state, ckpt)
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if skipped is not None:
          scalars['data/skipped_records'] = float(skipped.total())
        writer.write_scalars(done, scalars)
        out.progress(done, stage, scalars['loss'])
      boundary = done == stage.end
      if done % config.train.checkpoint_every == 0 or boundary or preemption.requested:
        _check_finite(config, state, ckpt)
        ckpt.save(done, state, train_iter)
      if preemption.requested:
        ckpt.close()
        writer.flush()
        logging.warning('Saved step %d after SIGTERM; rerun the same command to resume.', done)
        return {}
      due = [ev for ev in evaluators if done % ev.every_steps == 0]
      if due and done != total_steps:
        run_evaluators(done, due)

    if not calibrating:
      results = run_evaluators(total_steps)
  ckpt.close()
  if calibrating:  # reads the final checkpoint, which close() has finished writing
    results = _calibrated_evaluation(workdir, total_steps, writer, out)
  writer.flush()
  if is_main:
    eval_report.write_results(results, workdir)
    print(eval_report.results_table(results), flush=True)
  return results


def _calibrated_evaluation(workdir, step: int, writer, out) -> dict:
  """Chooses the split fusion's sketch weight on validation (calibrate.py), records it in the run
  and evaluates the final checkpoint with it: the run's results are the calibrated model's."""
  began = time.monotonic()
  record = calibrate.calibrate_run(workdir, step)
  results = record['results']
  out.print(f'calibrated: {calibrate.summary(record)}; {calibrate.FILE}')
  writer.write_scalars(step, {'eval/sketch_weight': record['sketch_weight'],
                              **{f'eval/{k}': v for k, v in results.items() if np.ndim(v) == 0}})
  out.evaluation(step, results, time.monotonic() - began)
  return results


def _check_finite(config, state: train_step.TrainState, ckpt) -> None:
  bad = int(jax.device_get(state.first_bad_step))
  if bad >= 0 and config.train.nan_policy == 'stop':
    ckpt.wait()
    steps = ckpt.all_steps()
    kept = f'the last checkpoint (step {steps[-1]}) is intact' if steps else 'no checkpoint exists'
    raise FloatingPointError(
        f'Non-finite loss or gradient at step {bad}; that update was skipped and {kept}. '
        'Lower optim.lr, check the data, or set train.nan_policy="skip".')
