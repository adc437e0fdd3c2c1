"""Fault injection: a run meets a NaN loss, a corrupt record, a damaged checkpoint or a bad
config, and fails (or carries on) the documented way, never harming the checkpoints it saved.

One shared smoke run (small ViT towers, one joint stage, no evaluators: seconds to compile)
saves checkpoints 1, 2, 3; each test damages a copy of it and resumes. Unit-level cases live
elsewhere: bad records in the pipeline (tests/pipeline_test.py), the non-finite step
(tests/step_test.py), exact resume after SIGKILL/SIGTERM (tests/resume_test.py, slow).
"""

import glob
import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import _tiny
from configs import base
from stbir_jax import checkpoint, cli, config_checks, losses, sharding, stages, train, train_step
from stbir_jax.data import datasets, pipeline
from stbir_jax.models import stbir
from train_test import _Recorder

STEPS = 3      # the shared run: checkpoints 1, 2, 3
MORE = 6       # resumed runs train on to this step
BAD_STEP = 4   # where the NaN loss is injected (a resumed run's second step)
MARK = -1      # an instance id no record has: flags the poisoned batch inside the step
# A restore that fails on a damaged file leaves orbax's pending read coroutines to be collected
# after their event loop closed; they only warn.
UNRAISABLE = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def _config(root, **overrides):
  config = _tiny.vit_towers(base.get_config('smoke'))
  config.data.data_dir = str(root / 'data')
  config.model.fusion.kind = 'sum'
  config.stages = [stages.joint_stage(stages.PARAM_GROUPS, ['contrastive', 'triplet'])]
  config.train.update(num_steps=STEPS, checkpoint_every=1, keep_checkpoints=20, log_every=1)
  config.evals = {}
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


@pytest.fixture(scope='module')
def base_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('faults')
  train.train_and_evaluate(_config(root), str(root / 'run'))
  return root


def _copy(root, tmp_path) -> str:
  workdir = str(tmp_path / 'run')
  shutil.copytree(root / 'run', workdir)
  return workdir


def _files(directory) -> dict:
  """{relative path: sha256} of every file below `directory`."""
  out = {}
  for path in glob.glob(os.path.join(directory, '**'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _checkpoint_files(workdir, steps=(1, 2, 3)) -> dict:
  return {s: _files(os.path.join(workdir, 'checkpoints', str(s))) for s in steps}


def _state(workdir, step) -> dict:
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step),
                                                         'state'))


def _assert_same(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _restore(config, workdir):
  """What a restart restores: Checkpointer.restore with the run's abstract state."""
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, pipeline.category_names(config.data))
  abstract, _ = train_step.abstract_state(config, model, constants,
                                         sharding.make_mesh(config.mesh))
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  try:
    stream = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                     seed=config.train.seed)
    return ckpt.restore(abstract, stream)
  finally:
    ckpt.close()


def _largest_array_file(step_dir) -> str:
  return max(glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd', '*')),
             key=os.path.getsize)


def _damage(step_dir, how):
  if how == 'truncate':  # a partial write
    path = _largest_array_file(step_dir)
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  elif how == 'garble':  # bytes overwritten in place: restores without error, caught by checksum
    path = _largest_array_file(step_dir)
    with open(path, 'r+b') as f:
      f.seek(os.path.getsize(path) // 2)
      f.write(b'\xff' * 64)
  elif how == 'metadata':
    with open(os.path.join(step_dir, 'state', '_METADATA'), 'w') as f:
      f.write('{"tree_metadata": ')
  elif how == 'data_state':  # the Grain iterator position
    with open(os.path.join(step_dir, 'data', 'process_0-of-1.json'), 'w') as f:
      f.write('garbage')
  else:
    raise ValueError(how)


# ------------------------------------------------------------------------------------ NaN loss


def _nan_loss_at(monkeypatch, bad_step):
  """Makes the loss of step `bad_step` NaN, as a batch with a NaN feature would. Our inputs are
  integers, so the step marks row 0 of that batch and InfoNCE turns NaN where it sees the mark;
  the injection is keyed by the state's step, so a resumed run meets it again."""
  real_make_step, real_info_nce = train_step.make_step_fn, losses.info_nce

  def info_nce(q, g, scale, *, instance=None, **kwargs):
    poison = jnp.where(jnp.any(instance == MARK), jnp.nan, 0.0)
    return real_info_nce(q, g, scale, instance=instance, **kwargs) + poison

  def make_step_fn(*args, **kwargs):
    step_fn = real_make_step(*args, **kwargs)

    def poisoned(state, batch):
      first = jnp.where(state.step == bad_step, MARK, batch['instance'][0])
      return step_fn(state, dict(batch, instance=batch['instance'].at[0].set(first)))

    return poisoned

  monkeypatch.setattr(losses, 'info_nce', info_nce)
  monkeypatch.setattr(train_step, 'make_step_fn', make_step_fn)


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoints(base_run, tmp_path,
                                                                   monkeypatch):
  workdir = _copy(base_run, tmp_path)
  saved = _checkpoint_files(workdir)
  _nan_loss_at(monkeypatch, BAD_STEP)
  config = _config(base_run, **{'train.num_steps': MORE})
  with pytest.raises(FloatingPointError, match=rf'at step {BAD_STEP}; that update was skipped '
                                               rf'and the last checkpoint \(step {BAD_STEP}\) '
                                               'is intact'):
    train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert _checkpoint_files(workdir) == saved
  # The bad update was never saved: the newest checkpoint is the step before, and it is clean.
  step, state = _restore(config, workdir)
  assert step == BAD_STEP and int(state.first_bad_step) == -1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_nan_loss_with_skip_policy_skips_and_counts_the_update(base_run, tmp_path, monkeypatch):
  workdir = _copy(base_run, tmp_path)
  saved = _checkpoint_files(workdir)
  _nan_loss_at(monkeypatch, BAD_STEP)
  recorder = _Recorder()
  monkeypatch.setattr(train, 'metric_writer', lambda *a, **k: recorder)
  config = _config(base_run, **{'train.num_steps': MORE, 'train.nan_policy': 'skip'})
  train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert _checkpoint_files(workdir) == saved
  before, after, last = (_state(workdir, s) for s in (BAD_STEP, BAD_STEP + 1, MORE))
  # The skipped step changed nothing but the step counter and the skip count ...
  for key in ('params', 'opt_state', 'curriculum'):
    _assert_same(before[key], after[key])
  assert int(after['step']) == BAD_STEP + 1
  assert int(after['skipped_steps']) == 1 and int(after['first_bad_step']) == BAD_STEP
  # ... and training went on after it.
  assert not np.array_equal(np.asarray(last['params']['temperature']['log_scale']),
                            np.asarray(after['params']['temperature']['log_scale']))
  logged = recorder.scalars
  assert logged[BAD_STEP + 1]['finite'] == 0 and logged[BAD_STEP + 1]['skipped_steps'] == 1
  assert logged[MORE]['finite'] == 1 and logged[MORE]['skipped_steps'] == 1


# ------------------------------------------------------------------------------------ bad record


def test_corrupt_record_stops_naming_it_then_skip_trains_on_counting_it(base_run, tmp_path,
                                                                        monkeypatch):
  bad = 5  # shoes train record 5 (its instance id is 5)
  config = _config(base_run, **{'train.num_steps': MORE})
  stream = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                   seed=config.train.seed)
  seen = [int(np.sum(next(stream)['instance'] == bad)) for _ in range(MORE)]  # per step
  workdir = _copy(base_run, tmp_path)
  saved = _checkpoint_files(workdir)
  real = datasets.Split.parse

  def parse(self, index, raw=None):
    rec = real(self, index, raw)
    return dict(rec, image=b'not a png') if self.split == 'train' and index == bad else rec

  monkeypatch.setattr(datasets.Split, 'parse', parse)
  with pytest.raises(pipeline.DataError, match=rf"split 'train' record {bad} failed to decode.*"
                                               r"on_bad_record='skip'"):
    train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert _checkpoint_files(workdir) == saved
  # The save in flight when the error came was finished, not left half-written.
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert all(name.isdigit() for name in names), names
  resume = max(int(name) for name in names)
  assert seen[resume] > 0  # the record is in the first batch after the last checkpoint

  recorder = _Recorder()
  monkeypatch.setattr(train, 'metric_writer', lambda *a, **k: recorder)
  config.data.on_bad_record = 'skip'
  train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert _checkpoint_files(workdir) == saved
  assert recorder.scalars[MORE]['data/skipped_records'] == sum(seen[resume:]) > 0


# ------------------------------------------------------------------------------------ checkpoints


@UNRAISABLE
@pytest.mark.parametrize('how', ['truncate', 'metadata', 'data_state'])
def test_damaged_latest_checkpoint_restores_the_previous_one(base_run, tmp_path, caplog, how):
  workdir = _copy(base_run, tmp_path)
  saved = _checkpoint_files(workdir, (1, 2))
  _damage(os.path.join(workdir, 'checkpoints', '3'), how)
  damaged = _files(os.path.join(workdir, 'checkpoints', '3'))
  caplog.set_level('WARNING')
  step, state = _restore(_config(base_run), workdir)
  assert step == 2
  _assert_same(state.params, _state(workdir, 2)['params'])
  assert f"{os.path.join(workdir, 'checkpoints', '3')} could not be restored" in caplog.text
  # Not deleted: moved aside with every byte, out of the way of the step the resumed run saves.
  moved = os.path.join(workdir, checkpoint.QUARANTINE, '3')
  assert _files(moved) == damaged
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  assert _checkpoint_files(workdir, (1, 2)) == saved


@UNRAISABLE
def test_garbled_latest_checkpoint_is_caught_and_the_run_resumes_exactly(base_run, tmp_path,
                                                                         caplog):
  workdir = _copy(base_run, tmp_path)
  saved = _checkpoint_files(workdir, (1, 2))
  _damage(os.path.join(workdir, 'checkpoints', '3'), 'garble')  # restores, but wrong values
  damaged = _files(os.path.join(workdir, 'checkpoints', '3'))
  caplog.set_level('WARNING')
  train.train_and_evaluate(_config(base_run), workdir)
  assert 'checksum mismatch' in caplog.text
  assert _files(os.path.join(workdir, checkpoint.QUARANTINE, '3')) == damaged
  assert _checkpoint_files(workdir, (1, 2)) == saved
  # Step 3 trained again from checkpoint 2 equals the original step 3 bit for bit.
  _assert_same(_state(workdir, 3), _state(str(base_run / 'run'), 3))


@UNRAISABLE
def test_one_bit_changed_in_the_data_loader_position_is_caught_and_moved_aside(base_run, tmp_path,
                                                                              caplog):
  """The Grain position is read on resume like the arrays: a flipped bit there would make the
  run silently diverge from the uninterrupted one (it restores without any error)."""
  workdir = _copy(base_run, tmp_path)
  position = os.path.join(workdir, 'checkpoints', '3', 'data', 'process_0-of-1.json')
  with open(position) as f:
    text = f.read()
  assert '"next_index": 3' in text
  with open(position, 'r+b') as f:  # '3' (0x33) -> '2' (0x32): still valid JSON
    data = bytearray(f.read())
    data[text.index('3')] ^= 1
    f.seek(0)
    f.write(data)
  damaged = _files(os.path.join(workdir, 'checkpoints', '3'))
  caplog.set_level('WARNING')
  step, _ = _restore(_config(base_run), workdir)
  assert step == 2
  assert 'checksum mismatch in the data-loader position (data/process_0-of-1.json)' in caplog.text
  assert _files(os.path.join(workdir, checkpoint.QUARANTINE, '3')) == damaged


@UNRAISABLE
def test_no_readable_checkpoint_raises_and_touches_nothing(base_run, tmp_path, capsys):
  workdir = _copy(base_run, tmp_path)
  for step in (1, 2, 3):
    _damage(os.path.join(workdir, 'checkpoints', str(step)), 'truncate')
  before = _files(workdir)
  with pytest.raises(checkpoint.CheckpointError, match=r'None of the checkpoints \[1, 2, 3\] .* '
                                                       'nothing was moved or deleted'):
    train.train_and_evaluate(_config(base_run), workdir)
  assert _files(workdir) == before
  assert not os.path.exists(os.path.join(workdir, checkpoint.QUARANTINE))
  # What `python -m stbir_jax.main` prints: the warnings naming each checkpoint, then one line.
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    cli.run('stbir_jax.main', train.train_and_evaluate, _config(base_run), workdir)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert 'Traceback' not in err
  assert [line for line in err.splitlines() if 'error:' in line] == [
      f"stbir_jax.main: error: None of the checkpoints [1, 2, 3] in {workdir}/checkpoints could "
      "be restored (see the warnings above); nothing was moved or deleted. Move them away to "
      "start afresh."]
  assert _files(workdir) == before


# ------------------------------------------------------------------------------------ bad config


def _unknown_key(c):
  c.train['checkpoint_evry'] = 1


def _accum_not_dividing(c):
  c.train.grad_accum_steps = 3


def _missing_tower(c):
  c.stages[0].train = ['sketch', 'audio']


@pytest.mark.parametrize('change,error,message', [
    (_unknown_key, config_checks.ConfigError,
     r'Unknown config key config.train.checkpoint_evry=1.*Did you mean '
     r'config.train.checkpoint_every\?'),
    (_accum_not_dividing, config_checks.ConfigError,
     r'train.batch_size=8 is not divisible by train.grad_accum_steps=3'),
    (_missing_tower, stages.StageError,
     r"config.stages\[0\] \('joint'\).train names 'audio', which is not a parameter group"),
])
def test_bad_config_fails_before_any_compute(base_run, tmp_path, monkeypatch, change, error,
                                             message):
  workdir = _copy(base_run, tmp_path)
  before = _files(workdir)

  def compute(*args, **kwargs):
    raise AssertionError('the run got past config validation')

  monkeypatch.setattr(pipeline, 'ensure_built', compute)
  monkeypatch.setattr(train_step, 'init_state', compute)
  config = _config(base_run)
  change(config)
  with pytest.raises(error, match=message):
    train.train_and_evaluate(config, workdir)
  assert _files(workdir) == before


# ------------------------------------------------------------------------------------ config change


def test_resume_with_a_changed_config_is_refused_unless_allowed_and_then_recorded(base_run,
                                                                                  tmp_path):
  workdir = _copy(base_run, tmp_path)
  before = _files(workdir)
  config_json = os.path.join(workdir, 'config.json')
  with open(config_json, 'rb') as f:
    started = f.read()
  changed = _config(base_run, **{'train.num_steps': MORE, 'train.seed': 7})
  with pytest.raises(config_checks.ConfigError, match=r'changed keys: train.num_steps: 3 -> 6, '
                                              r'train.seed: 0 -> 7\..*--allow_config_change'):
    train.train_and_evaluate(changed, workdir)
  assert _files(workdir) == before

  train.train_and_evaluate(changed, workdir, allow_config_change=True)
  with open(config_json, 'rb') as f:
    assert f.read() == started
  history = os.path.join(workdir, 'config_history')
  assert os.listdir(history) == ['step_000000003.json']
  with open(os.path.join(history, 'step_000000003.json')) as f:
    record = json.load(f)
  assert record['step'] == 3
  assert record['changed'] == {'train.num_steps': [3, 6], 'train.seed': [0, 7]}
  assert record['config']['train']['num_steps'] == MORE
  assert max(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))) == MORE

  # The recorded config is now the changed one: resuming with it again records nothing, and
  # going back to the config.json of the start is itself a change.
  train.train_and_evaluate(changed, workdir)
  assert os.listdir(history) == ['step_000000003.json']
  with pytest.raises(config_checks.ConfigError, match=r'changed keys: train.num_steps: 6 -> 3, '
                                              r'train.seed: 7 -> 0\. .*config_history/'):
    train.train_and_evaluate(_config(base_run), workdir)
