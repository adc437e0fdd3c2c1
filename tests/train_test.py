"""Training on the smoke config end to end: results, checkpoints, resume, config errors.

The loss falling on a tiny model to Acc@1 = 1 is tests/step_test.py."""

import contextlib
import io
import json
import logging as logging_lib
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import logging

from configs import base
from stbir_jax import (
  config_checks,
  curriculum,
  eval_report,
  evaluate,
  run_config,
  stages,
  train,
  train_step,
)
from stbir_jax.models import stbir


def _smoke(tmp_path, **overrides):
  config = base.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'data')
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


@pytest.mark.slow   # ~1 minute on 2 cores
def test_every_variant_initialises_abstractly():
  for variant in base.VARIANTS:
    config = base.get_config(None if variant == 'full' else variant)
    config.data.tokenizer = 'bert_uncased'  # the full config's CLIP tokenizer needs the hub
    model = stbir.STBIR.from_config(config)
    names = [f'c{i}' for i in range(3)]
    constants = train_step.make_constants(config, names)
    state = jax.eval_shape(lambda k, config=config, model=model, constants=constants:
                           train_step.init_state(config, model, constants, k),
                           jax.random.PRNGKey(0))
    assert set(state.params) == set(stages.PARAM_GROUPS)
    assert state.params['prototypes'].shape == (3, config.model.embed_dim)


def test_unknown_variant_lists_valid_ones():
  with pytest.raises(ValueError,
                     match='valid variants: full, demo, demo_split, demo_recipe, '
                           'demo_budget, demo_robust, demo_minilm, smoke'):
    base.get_config('tiny')


def test_demo_minilm_is_the_demo_with_the_bundled_minilm_text_tower():
  demo, minilm = base.get_config('demo').to_dict(), base.get_config('demo_minilm').to_dict()
  text, tokenizer = minilm['model'].pop('text'), minilm['data'].pop('tokenizer')
  assert (text['init'], text['hidden'], text['layers'], text['pool']) == (
      'bundled:all-MiniLM-L6-v2', 384, 6, 'mean')
  assert os.path.isfile(os.path.join(tokenizer, 'vocab.txt'))
  assert minilm['optim']['group_lr_scale'].pop('text') == 0.025
  assert (minilm.pop('variant'), demo.pop('variant')) == ('demo_minilm', 'demo')
  for d in (demo['model'], demo['data'], demo['optim']['group_lr_scale']):
    d.pop('text', None), d.pop('tokenizer', None)
  assert minilm == demo


def test_demo_split_is_the_demo_with_a_calibrated_split_query_and_a_photo_tower_per_half():
  demo, split = base.get_config('demo').to_dict(), base.get_config('demo_split').to_dict()
  fusion = split['model'].pop('fusion')
  assert (fusion.pop('kind'), fusion.pop('photo_towers'), fusion.pop('calibrate')) == (
      'concat', 2, True)
  demo_fusion = demo['model'].pop('fusion')
  assert (demo_fusion.pop('kind'), demo_fusion.pop('photo_towers'),
          demo_fusion.pop('calibrate')) == ('sum', 1, False)
  assert fusion == demo_fusion
  assert (split.pop('variant'), demo.pop('variant')) == ('demo_split', 'demo')
  assert split == demo     # every STBIR module, the towers and the schedule as in the demo


def test_demo_recipe_is_demo_split_without_the_modules_evaluated_once():
  split, recipe = base.get_config('demo_split').to_dict(), base.get_config('demo_recipe').to_dict()
  assert (recipe['curriculum'].pop('kind'), split['curriculum'].pop('kind')) == (
      'none', 'self_paced')
  assert (recipe['category'].pop('hard_negative_weight'), recipe['loss'].pop('triplet'),
          recipe['loss'].pop('prototype')) == (1.0, 0.0, 0.0)
  split['category'].pop('hard_negative_weight')
  split['loss'].pop('triplet'), split['loss'].pop('prototype')
  steps = recipe['train']['num_steps']
  assert [recipe['evals'][k].pop('every_steps') for k in ('retrieval', 'robustness')] == [
      steps, steps]
  for k in ('retrieval', 'robustness'):
    split['evals'][k].pop('every_steps')
  assert (recipe.pop('variant'), split.pop('variant')) == ('demo_recipe', 'demo_split')
  assert recipe == split


def test_demo_budget_is_demo_recipe_at_the_demos_wall_time_with_pairs_shifted_and_whole():
  recipe = base.get_config('demo_recipe').to_dict()
  budget = base.get_config('demo_budget').to_dict()
  fields = ('num_steps', 'pair_shift', 'modality_dropout')
  assert tuple(budget['train'].pop(k) for k in fields) == (2170, 0.06, 0.0)
  assert tuple(recipe['train'].pop(k) for k in fields) == (3000, 0.0, 0.2)
  # Evaluated once, at its own last step.
  for k in ('retrieval', 'robustness'):
    assert (budget['evals'][k].pop('every_steps'), recipe['evals'][k].pop('every_steps')) == (
        2170, 3000)
  assert (budget.pop('variant'), recipe.pop('variant')) == ('demo_budget', 'demo_recipe')
  assert budget == recipe


def test_demo_robust_is_a_branch_of_demo_budget_on_clean_and_moderate_queries():
  budget, robust = base.get_config('demo_budget'), base.get_config('demo_robust')
  assert robust.train.num_steps == 2712 and robust.optim.lr == 2e-3
  assert robust.optim.group_lr_scale == budget.optim.group_lr_scale   # every tower trains
  assert [(b.name, b.level) for b in robust.curriculum.buckets] == [
      ('clean', 0), ('mild', 100), ('moderate', 1), ('severe', 100), ('no_sketch', 100),
      ('no_text', 100)]
  step, total = 10 ** 6, robust.train.num_steps   # long after the run: still clean and moderate
  assert curriculum.admitted(step, total, robust.curriculum.buckets,
                             robust.curriculum).tolist() == [True, False, True] + [False] * 3
  # No fixed clean share: the self-paced rule splits the queries by the two buckets' losses,
  # softmax([0.5, 1.5]) = [0.269, 0.731].
  state = curriculum.init_state(6)._replace(
      ema_loss=jnp.array([0.5, 0.0, 1.5, 0.0, 0.0, 0.0]), seen=jnp.array([1.0, 0, 1, 0, 0, 0]))
  probs = curriculum.bucket_probs(state, step, total, robust.curriculum.buckets,
                                  robust.curriculum)
  np.testing.assert_allclose(probs, [0.268941, 0, 0.731059, 0, 0, 0], atol=1e-6)
  # Its buckets are demo_budget's, in its order, so a run's evaluation tables line up.
  assert [b.name for b in robust.curriculum.buckets] == [
      b.name for b in budget.curriculum.buckets]
  # A branch of nothing is refused, naming the run it needs.
  with pytest.raises(config_checks.ConfigError,
                     match=r"init_from='<a trained demo_budget run>' is a placeholder: this "
                           r'config continues a trained demo_budget run; pass '
                           r'--config.train.init_from=RUN'):
    train.params_from_run(robust)


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """One smoke training run shared by the tests below (training is the slow part)."""
  tmp_path = tmp_path_factory.mktemp('smoke')
  config = _smoke(tmp_path)
  config.train.num_steps = 12
  config.train.log_every = 1
  config.train.checkpoint_every = 4
  workdir = str(tmp_path / 'run')
  with _console_captured(tmp_path / 'console.txt', tmp_path / 'log.txt'):
    results = train.train_and_evaluate(config, workdir)
  return config, workdir, results


class _Lines(logging_lib.Handler):
  def __init__(self):
    super().__init__()
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@contextlib.contextmanager
def _console_captured(stdout_file, log_file):
  """Writes what the run printed to `stdout_file` and what it logged, at INFO (where a metric
  dump would show), to `log_file`."""
  previous, handler, out = logging.get_verbosity(), _Lines(), io.StringIO()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_logger().addHandler(handler)
  try:
    with contextlib.redirect_stdout(out):
      yield
  finally:
    logging.get_absl_logger().removeHandler(handler)
    logging.set_verbosity(previous)
    stdout_file.write_text(out.getvalue())
    log_file.write_text('\n'.join(handler.lines))


def test_smoke_run_trains_evaluates_and_resumes(smoke_run):
  config, workdir, results = smoke_run
  assert 'shoes/sketch+text/acc@1' in results
  assert sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints'))
                if d.isdigit())[-1] == 12
  assert os.path.exists(os.path.join(workdir, 'results.md'))
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['train']['num_steps'] == 12
  # A rerun of a finished run resumes at its last step and only evaluates.
  again = train.train_and_evaluate(config, workdir)
  assert again == pytest.approx(results)


def test_smoke_run_console_is_a_few_short_lines(smoke_run):
  _, workdir, _ = smoke_run
  root = pathlib.Path(workdir).parent
  lines = (root / 'console.txt').read_text().splitlines()
  progress = [line for line in lines if re.fullmatch(
      r'\[\d/3 \w+\] step +\d+/12 \( *\d+%\)  loss \d+\.\d{4}  [\d.]+ steps/s  ETA \S+', line)]
  steps = [int(re.search(r'step +(\d+)/', line).group(1)) for line in progress]
  assert steps == list(range(1, 13))
  assert lines.count(f'new run in {workdir}: 12 steps, 3 stages, 1 cpu device') == 1
  assert [line.split(':')[0] for line in lines if line.startswith('stage ')] == [
      'stage 1/3 sketch_photo', 'stage 2/3 photo_refine', 'stage 3/3 text_integration']
  evals = [line for line in lines if line.startswith('eval at step')]
  assert [line.split(' (')[0] for line in evals] == ['eval at step 6', 'eval at step 12']
  assert 'Acc@1 %  shoes: sketch ' in evals[-1]
  # Besides those: the dataset build's own lines and the results table, nothing else.
  others = [line for line in lines
            if line not in progress + evals and not line.startswith(('new run', 'stage '))]
  table = eval_report.results_table(json.loads((root / 'run' / 'results.json').read_text()))
  assert len(others) <= len(table.splitlines()) + 4, others
  assert all(len(line) <= 100 for line in progress + evals)
  # No metric dump, though the log was at INFO: the metrics went to TensorBoard only.
  log = (root / 'log.txt').read_text()
  assert 'curriculum/weight' not in log and '[Hyperparameters]' not in log
  assert 'Stage 1/3' in log  # the INFO log itself was captured
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))


def test_a_saved_run_is_evaluated_again_on_any_split(smoke_run):
  _, workdir, results = smoke_run
  step, again = evaluate.evaluate_run(workdir)  # the run's own split and evaluators
  assert step == 12 and again == pytest.approx(results)
  step, validation = evaluate.evaluate_run(workdir, split='validation', step=8)
  assert step == 8 and set(validation) == set(results)
  assert validation != pytest.approx(results)
  saved = json.load(open(os.path.join(workdir, 'results_validation_step8.json')))
  assert saved == pytest.approx(validation)
  assert os.path.exists(os.path.join(workdir, 'results_validation_step8.md'))
  assert json.load(open(os.path.join(workdir, 'results.json'))) == pytest.approx(results)
  with pytest.raises(evaluate.EvaluatorError, match="Unknown evaluator 'recall'"):
    evaluate.evaluate_run(workdir, evaluators=['recall'])


def test_incompatible_checkpoint_is_refused(smoke_run):
  config, workdir, _ = smoke_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.embed_dim = 32
  with pytest.raises(config_checks.ConfigError, match='model.embed_dim: checkpoint 16 vs now 32'):
    train.train_and_evaluate(config, workdir)


def _branch(smoke_run, **train):
  config, workdir, _ = smoke_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.update(**{'init_from': workdir, 'num_steps': 6, **train})   # a step a stage
  config.evals = ml_collections.ConfigDict()
  return config


def test_init_from_starts_a_fresh_run_from_a_trained_one(smoke_run, tmp_path):
  # At learning rate 0 the branch's params stay what it started from: step 8 of the smoke run.
  config = _branch(smoke_run, init_from_step=8)
  config.optim.lr = 0.0
  branch = str(tmp_path / 'branch')
  train.train_and_evaluate(config, branch)
  step, params = run_config.latest_params(branch)
  _, source = run_config.latest_params(smoke_run[1], 8)
  _, latest = run_config.latest_params(smoke_run[1])
  assert step == 6   # a new run: its own step count and optimizer
  jax.tree.map(np.testing.assert_array_equal, params, source)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                      jax.tree.leaves(latest), strict=True))


@pytest.mark.slow   # a third training run from the smoke run: ~80 s on 2 cores
def test_init_from_adds_a_fresh_identity_aligner_to_a_run_without_one(smoke_run, tmp_path):
  config = _branch(smoke_run, init_from_step=8)
  config.model.sketch_align = True
  config.optim.lr = 0.0
  branch = str(tmp_path / 'branch')
  train.train_and_evaluate(config, branch)
  _, params = run_config.latest_params(branch)
  _, source = run_config.latest_params(smoke_run[1], 8)
  aligner = params['sketch'].pop('aligner')
  jax.tree.map(np.testing.assert_array_equal, params, source)
  np.testing.assert_array_equal(aligner['warp']['kernel'], 0.0)   # the identity warp
  # The other way, a run with an aligner into a model without one, drops trained params: refused.
  back = _branch(smoke_run)
  back.train.init_from = branch
  with pytest.raises(config_checks.ConfigError,
                     match=r'sketch/aligner/.*in the run, absent here'):
    train.train_and_evaluate(back, str(tmp_path / 'back'))


def test_init_from_refuses_another_model_or_a_run_without_checkpoints(smoke_run, tmp_path):
  config = _branch(smoke_run)
  config.model.embed_dim = 32
  branch = tmp_path / 'branch'
  with pytest.raises(config_checks.ConfigError,
                     match=r"init_from=.* \(step 12\): its params do not fit config.model .*"
                           r"proj/kernel: \(\d+, 16\) in the run, \(\d+, 32\) here"):
    train.train_and_evaluate(config, str(branch))
  assert not branch.exists()   # refused before anything was written
  config = _branch(smoke_run, init_from=str(tmp_path / 'nowhere'))
  with pytest.raises(config_checks.ConfigError,
                     match=r"init_from='.*nowhere'.*holds no checkpoint"):
    train.train_and_evaluate(config, str(branch))


def test_a_fresh_run_refuses_to_freeze_a_random_tower(tmp_path):
  config = _smoke(tmp_path)
  config.optim.group_lr_scale.photo = 0.0   # with neither train.init_from nor model.photo.init
  with pytest.raises(config_checks.ConfigError,
                     match=r'group_lr_scale.photo=0 freezes the photo tower.*train.init_from=RUN'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_bad_record_policy_change_still_resumes(tmp_path):
  """A run stopped by a corrupt record may resume with on_bad_record='skip' (config-only)."""
  config = _smoke(tmp_path)
  (tmp_path / 'config.json').write_text(config.to_json_best_effort())
  run_config.check_workdir_config(_smoke(tmp_path, **{'data.on_bad_record': 'skip'}),
                                  str(tmp_path), has_checkpoint=True)
  with pytest.raises(config_checks.ConfigError, match='data.resolution: checkpoint 32 vs now 64'):
    run_config.check_workdir_config(_smoke(tmp_path, **{'data.resolution': 64}), str(tmp_path),
                                    has_checkpoint=True)


@pytest.mark.parametrize('key,value,message', [
    ('train.batch_size', 6, 'multiple of data.family_group=4'),
    ('curriculum.kind', 'random', "curriculum.kind='random'; valid"),
    ('train.nan_policy', 'ignore', 'valid: stop, skip'),
    ('optim.schedule', 'global', 'optim.schedule'),
    ('data.on_bad_record', 'drop', 'valid policies: error, skip'),
])
def test_bad_config_fails_before_compute(tmp_path, key, value, message):
  config = _smoke(tmp_path, **{key: value})
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.validate_config(config)


def test_learning_rate_warmup_then_cosine():
  config = base.get_config('demo')
  config.train.num_steps, config.optim.warmup_steps = 3000, 200
  config.stages = stages.alignment_stages()
  stage = stages.build_stages(config)[0]          # 1200 steps, warmup min(200, 240) = 200
  lr = lambda s: float(train_step.learning_rate(config, stage, s))
  assert lr(0) == pytest.approx(config.optim.lr / 200)
  assert lr(199) == pytest.approx(config.optim.lr)
  assert lr(200 + 500) == pytest.approx(config.optim.lr * 0.5, rel=1e-5)  # cosine midpoint
  assert lr(1199) == pytest.approx(0.0, abs=config.optim.lr * 1e-4)


def test_learning_rate_over_the_run_continues_across_stages():
  config = base.get_config('demo')
  config.train.num_steps, config.optim.warmup_steps = 3000, 200
  config.optim.schedule = 'run'
  config.stages = stages.alignment_stages()      # .4/.2/.4: stage 2 at lr_scale 0.5
  first, second, third = stages.build_stages(config)
  lr = lambda stage, s: float(train_step.learning_rate(config, stage, s))
  base_lr = config.optim.lr
  assert lr(first, 0) == pytest.approx(base_lr / 200)
  # One cosine over 2800 steps after the warmup: at step 1500, progress 1300 / 2800.
  at_1500 = 0.5 * (1 + np.cos(np.pi * 1300 / 2800))
  assert lr(second, 1500) == pytest.approx(base_lr * 0.5 * at_1500, rel=1e-5)
  assert lr(third, 1800) == pytest.approx(base_lr * 0.5 * (1 + np.cos(np.pi * 1600 / 2800)),
                                          rel=1e-5)   # no fresh warmup at the stage start
  assert lr(third, 2999) == pytest.approx(0.0, abs=base_lr * 1e-4)
  # The text tower and fusion first train in stage 3: they warm up from its start.
  assert train_step.entering_groups(config, third) == ('text', 'fusion')
  assert train_step.entering_groups(config, first) == ()
  assert float(train_step.entry_warmup(config, third, 1800)) == pytest.approx(1 / 200)
  assert float(train_step.entry_warmup(config, third, 1999)) == 1.0
  config.optim.schedule = 'stage'        # each stage warms every group up anyway
  assert train_step.entering_groups(config, third) == ()


def test_modality_dropout_never_drops_both():
  batch = dict(has_sketch=np.ones(1000, bool), has_text=np.ones(1000, bool))
  out = train_step.modality_dropout(jax.random.PRNGKey(0), batch, 0.3)
  assert not np.any(~np.asarray(out['has_sketch']) & ~np.asarray(out['has_text']))
  assert 0.25 < np.mean(~np.asarray(out['has_sketch'])) < 0.35
  assert 0.25 < np.mean(~np.asarray(out['has_text'])) < 0.35


class _Recorder:
  """A metric writer that keeps the scalars (the real one writes TensorBoard files)."""

  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    self.scalars.setdefault(step, {}).update(scalars)

  def __getattr__(self, name):  # hparams, flush, ...: nothing to keep
    return lambda *args, **kwargs: None


@pytest.mark.slow  # a training run of its own: minutes on a small CPU
def test_skipped_bad_records_are_logged(tmp_path, monkeypatch):
  """on_bad_record='skip': a corrupt train record costs no step and shows in the metrics."""
  from stbir_jax.data import datasets  # pylint: disable=g-import-not-at-top
  config = _smoke(tmp_path, **{'data.on_bad_record': 'skip', 'train.num_steps': 4,
                               'train.log_every': 1})
  config.evals.retrieval.every_steps = 4
  real = datasets.Split.parse

  def parse(self, index, raw=None):
    rec = real(self, index, raw)
    return dict(rec, image=b'not a png') if self.split == 'train' and index == 3 else rec

  monkeypatch.setattr(datasets.Split, 'parse', parse)
  recorder = _Recorder()
  monkeypatch.setattr(train, 'metric_writer', lambda *a, **k: recorder)
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  skipped = [recorder.scalars[s]['data/skipped_records'] for s in range(1, 5)]
  # 4 steps x 8 rows = two epochs of the 16 train records: record 3 skipped once in each.
  assert skipped[-1] == 2 and skipped == sorted(skipped), skipped
