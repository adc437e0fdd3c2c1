"""A failing command changes nothing on disk, and says why in one line: every config field
checked before the workdir is touched, a workdir that is a file, named errors printed without a
traceback (exit status 2), a full disk not buried under asyncio's shutdown noise.

Resuming with a changed config (refused, then recorded with --allow_config_change) and the
checksum of the data-loader position need a trained run: tests/faults_test.py.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from configs import base
from stbir_jax import (
  checkpoint,
  cli,
  config_checks,
  eval_sections,
  paths,
  run_config,
  stages,
  train,
)
from stbir_jax.data import tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(tmp_path, **overrides):
  config = base.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'data')
  for key, value in overrides.items():
    *sections, name = key.split('.')
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  return config


def _existing_run(tmp_path):
  """A workdir as a run leaves it: config.json and a checkpoint step (contents not needed: every
  case here fails before reading it)."""
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '3').mkdir(parents=True)
  (workdir / 'config.json').write_text(_smoke(tmp_path).to_json_best_effort(indent=2))
  return workdir


def _tree(directory) -> dict:
  out = {}
  for folder, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
             JAX_PLATFORMS='cpu', **extra)
  return env


def _main(*args, cwd):
  """python -m stbir_jax.main ARGS -> (exit status, stderr lines that are not absl logs)."""
  proc = subprocess.run([sys.executable, '-m', 'stbir_jax.main', *args], cwd=cwd, env=_env(),
                        capture_output=True, text=True, timeout=240, check=False)
  lines = [line for line in proc.stderr.splitlines() if line.strip()
           and line[:1] not in 'IWE' and not line.startswith('  ')]
  return proc.returncode, lines, proc.stderr


# ------------------------------------------------------------------------------------ fields


def test_every_config_leaf_has_a_rule():
  for variant in base.VARIANTS:
    config = base.get_config(variant)
    config_checks.check_fields(config)  # every shipped variant is valid
    leaves = []

    def walk(node, prefix='', leaves=leaves):
      for key, value in node.items():
        path = prefix + key
        if any(path == e or path.startswith(e + '.') for e in config_checks.CHECKED_ELSEWHERE):
          continue
        if isinstance(value, ml_collections.ConfigDict):
          walk(value, path + '.')
        else:
          leaves.append(path)

    walk(config)
    assert [k for k in leaves if k not in config_checks.FIELDS] == [], variant


@pytest.mark.parametrize('key,value,message', [
    ('train.batch_size', -8, r'config.train.batch_size=-8; expected an integer >= 1'),
    ('train.num_steps', 0, r'config.train.num_steps=0; expected an integer >= 1'),
    ('train.checkpoint_every', -1, r'config.train.checkpoint_every=-1; expected an integer >= 1'),
    ('data.resolution', 4, r'config.data.resolution=4; expected an integer >= 8'),
    ('optim.lr', -0.1, r'config.optim.lr=-0.1; expected a number >= 0'),
    ('optim.b2', 1.0, r'config.optim.b2=1.0; expected a number >= 0 and < 1'),
    ('evals.retrieval.batch_size', 0,
     r'config.evals.retrieval.batch_size=0; expected an integer >= 1'),
    ('evals.retrieval.split', 'dev',
     r"config.evals.retrieval.split='dev'; expected one of 'train', 'validation'"),
    ('evals.retrieval.every_steps', 0,
     r'config.evals.retrieval.every_steps=0; expected an integer >= 1'),
    ('evals.retrieval.modes', ['audio'],
     r"config.evals.retrieval.modes=\['audio'\]; expected a non-empty list of names from "
     r'sketch'),
    ('train.modality_dropout', 0.7, (r'config.train.modality_dropout=0.7; expected a number '
                                     r'>= 0 and <= 0.5')),
    ('mesh.fsdp', 0, r'config.mesh.fsdp=0; expected an integer >= 1'),
    ('loss.consistency', -1.0, r'config.loss.consistency=-1.0; expected a number >= 0'),
    ('train.pair_shift', 0.6, r'config.train.pair_shift=0.6; expected a number >= 0 and <= 0.5'),
])
def test_bad_field_values_are_refused_naming_the_key(tmp_path, key, value, message):
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.validate_config(_smoke(tmp_path, **{key: value}))


def test_a_bad_bucket_and_heads_not_dividing_hidden_are_refused(tmp_path):
  config = _smoke(tmp_path)
  config.curriculum.buckets[2].stroke_dropout = 1.5
  with pytest.raises(config_checks.ConfigError,
                     match=r"curriculum.buckets\[2\] \('moderate'\).stroke_dropout=1.5; "
                           r'expected a probability in \[0, 1\]'):
    config_checks.validate_config(config)
  config = _smoke(tmp_path)
  config.model.text.heads = 3
  with pytest.raises(config_checks.ConfigError,
                     match=r'config.model.text.hidden=16 is not divisible by '
                           r'config.model.text.heads=3'):
    config_checks.validate_config(config)


def test_the_optional_text_photo_tower_is_checked_like_a_tower(tmp_path):
  """config.model.photo_text is absent from the defaults (most configs have no such tower) but,
  where present, its keys and values are checked as config.model.photo's are."""
  config = _smoke(tmp_path)
  config.model.photo_text = ml_collections.ConfigDict(config.model.photo.to_dict())
  config_checks.validate_config(config)
  config.model.photo_text.stem_pol = False
  with pytest.raises(config_checks.ConfigError,
                     match=r'Unknown config key config.model.photo_text.stem_pol=False.*'
                           r'Did you mean config.model.photo_text.stem_pool\?'):
    config_checks.validate_config(config)
  del config.model.photo_text['stem_pol']
  config.model.photo_text.width = 0
  with pytest.raises(config_checks.ConfigError,
                     match=r'config.model.photo_text.width=0; expected an integer >= 1'):
    config_checks.validate_config(config)


def test_evaluator_sections_are_checked_by_their_owner_naming_the_key(tmp_path):
  config = _smoke(tmp_path)
  config.evals.recall = ml_collections.ConfigDict(dict(every_steps=5))
  with pytest.raises(config_checks.ConfigError,
                     match=r"Unknown evaluator 'recall' \(config.evals.recall\); valid evaluators: "
                           r'degradations, retrieval, robustness'):
    config_checks.validate_config(config)
  config = _smoke(tmp_path)
  config.evals.retrieval.every_step = 5
  with pytest.raises(config_checks.ConfigError,
                     match=r'Unknown config key config.evals.retrieval.every_step: the retrieval '
                           r'evaluator reads every_steps, batch_size'):
    config_checks.validate_config(config)
  config = _smoke(tmp_path)
  eval_sections.add_section(config, 'robustness')
  config.evals.robustness.buckets = ['clean', 'extreme']
  with pytest.raises(config_checks.ConfigError,
                     match=r"config.evals.robustness.buckets names 'extreme'; buckets in "
                           r'config.curriculum.buckets: clean, mild, moderate'):
    config_checks.validate_config(config)


# The evaluation of configs/base.py:demo as runs recorded it before each evaluator had its own
# section (config.evals): one shared config.eval.
OLD_DEMO_EVAL = {'evaluators': ['retrieval', 'robustness'], 'every_steps': 1500,
                 'batch_size': 256, 'split': 'test', 'gallery_scope': 'all',
                 'modes': ['sketch', 'text', 'sketch+text'],
                 'robustness_buckets': ['clean', 'moderate', 'severe', 'no_sketch', 'no_text']}


def test_a_run_recorded_with_the_old_shared_eval_section_loads_and_resumes(tmp_path):
  config = base.get_config('demo')
  old = json.loads(config.to_json_best_effort())
  del old['evals']
  old['eval'] = OLD_DEMO_EVAL
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '3').mkdir(parents=True)
  (workdir / 'config.json').write_text(json.dumps(old, indent=2))
  # evaluate / export read it in today's layout ...
  _, loaded = run_config.load_run(workdir)
  assert loaded.evals.to_dict() == config.evals.to_dict()
  config_checks.validate_config(loaded)
  # ... and the same run resumed with today's config changes nothing.
  assert run_config.check_resume(config, workdir, allow_change=False) == {}
  # Runs older still had no gallery_scope: they ranked against the whole gallery.
  older = dict(OLD_DEMO_EVAL, evaluators=['retrieval'])
  del older['gallery_scope']
  assert run_config.evals_from_old_layout(dict(old, eval=older))['evals'] == {
      'retrieval': {'every_steps': 1500, 'batch_size': 256, 'split': 'test',
                    'modes': ['sketch', 'text', 'sketch+text'], 'gallery_scope': 'all'}}


def test_a_run_recorded_before_a_training_field_existed_resumes_as_it_trained(tmp_path):
  config = base.get_config('demo')
  old = json.loads(config.to_json_best_effort())
  for key in ('triplet_mining', 'triplet_queries'):
    del old['loss'][key]
  del old['model']['fusion']['sketch_weight']   # a nested field: added as 0.5, the model as trained
  del old['optim']['schedule']                  # each stage its own learning-rate schedule
  del old['loss']['consistency']                # no consistency term
  del old['model']['sketch_centre']             # sketches as drawn
  del old['train']['pair_shift']                # photos and sketches where they were drawn
  del old['train']['pair_warp']
  del old['model']['canonical_frame']           # sketches and photos where they are
  del old['loss']['gallery_from_clean_queries'] # every query trains the gallery side
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '3').mkdir(parents=True)
  (workdir / 'config.json').write_text(json.dumps(old, indent=2))
  assert run_config.check_resume(config, workdir, allow_change=False) == {}
  _, loaded = run_config.load_run(workdir)
  assert (loaded.loss.triplet_mining, loaded.loss.triplet_queries) == ('hard', 'all')
  assert loaded.model.fusion.sketch_weight == 0.5 and 'sketch_weight' not in old['model']['fusion']
  assert loaded.optim.schedule == 'stage'
  assert loaded.loss.consistency == 0.0 and loaded.model.sketch_centre is False
  assert loaded.train.pair_shift == 0.0 and loaded.train.pair_warp == 0.0
  assert loaded.model.canonical_frame == 'none' and loaded.loss.gallery_from_clean_queries is False
  run_config.check_workdir_config(config, workdir, has_checkpoint=True)   # not a model change
  # A recorded value is kept, so a real change is still refused.
  old['loss']['triplet_queries'] = 'clean'
  (workdir / 'config.json').write_text(json.dumps(old, indent=2))
  with pytest.raises(config_checks.ConfigError, match="loss.triplet_queries: 'clean' -> 'all'"):
    run_config.check_resume(config, workdir, allow_change=False)


def test_negative_batch_size_on_an_existing_run_leaves_the_workdir_byte_identical(tmp_path):
  workdir = _existing_run(tmp_path)
  before = _tree(workdir)
  with pytest.raises(config_checks.ConfigError, match=r'config.train.batch_size=-8'):
    train.train_and_evaluate(_smoke(tmp_path, **{'train.batch_size': -8}), str(workdir))
  assert _tree(workdir) == before


def test_a_changed_config_is_refused_before_anything_is_written(tmp_path):
  workdir = _existing_run(tmp_path)
  before = _tree(workdir)
  with pytest.raises(config_checks.ConfigError, match=r'changed keys: optim.lr: 0.0005 -> 0.001, '
                                              r'train.seed: 0 -> 3\.'):
    train.train_and_evaluate(_smoke(tmp_path, **{'train.seed': 3, 'optim.lr': 1e-3}),
                             str(workdir))
  assert _tree(workdir) == before
  # The fixes the errors suggest are free to change (and recorded once the run resumes).
  changes = run_config.check_resume(_smoke(tmp_path, **{'train.nan_policy': 'skip'}), workdir,
                                    allow_change=False)
  assert changes == {'train.nan_policy': ('stop', 'skip')}


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
  file = tmp_path / 'run'
  file.write_text('not a directory')
  with pytest.raises(paths.PathError, match=rf'--workdir {file} is a file; expected a directory'):
    train.train_and_evaluate(_smoke(tmp_path), str(file))
  with pytest.raises(paths.PathError, match=rf'--workdir {file / "sub"} lies below the file '
                                            rf'{file}'):
    train.train_and_evaluate(_smoke(tmp_path), str(file / 'sub'))
  assert file.read_text() == 'not a directory'


def test_an_unloadable_tokenizer_fails_before_the_workdir_is_created(tmp_path):
  config = _smoke(tmp_path)
  config.data.tokenizer = str(tmp_path / 'no_such_tokenizer')
  with pytest.raises(tokenizer.TokenizerError, match='Could not load tokenizer'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


# ------------------------------------------------------------------------------------ one line


@pytest.mark.parametrize('error', [
    config_checks.ConfigError('Unknown config key config.train.checkpoint_evry=1: the defaults '
                              '(stbir_jax/config_defaults.py) have no such key. Did you mean '
                              'config.train.checkpoint_every?'),
    stages.StageError("config.stages[0] ('joint').train names 'audio'"),
    tokenizer.TokenizerError("Could not load tokenizer 'x'. Valid names: 'bert_uncased'"),
    checkpoint.CheckpointError('None of the checkpoints [1, 2, 3] in /w/checkpoints could be '
                               'restored (see the warnings above); nothing was moved or deleted. '
                               'Move them away to start afresh.'),
    config_checks.ConfigError('/w holds checkpoints of an incompatible config; differences:\n  '
                              'model.embed_dim: checkpoint 16 vs now 32\nUse a new --workdir.'),
])
def test_named_errors_end_in_one_line_with_exit_status_2(capsys, error):
  def program():
    raise error

  with pytest.raises(SystemExit) as exit_info:
    cli.run('stbir_jax.main', program)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err == f'stbir_jax.main: error: {cli.one_line(str(error))}\n'
  assert err.count('\n') == 1 and 'Traceback' not in err
  assert str(error).splitlines()[-1].strip() in err  # its suggestion kept


def test_other_errors_keep_their_traceback():
  def program():
    raise ZeroDivisionError('a bug')

  with pytest.raises(ZeroDivisionError):
    cli.run('stbir_jax.main', program)


def test_main_prints_one_line_and_changes_nothing(tmp_path):
  """The real program: a bad value on an existing run, an unknown --config key, an unknown
  config variant."""
  workdir = _existing_run(tmp_path)
  before = _tree(workdir)
  smoke = f'--config={ROOT}/configs/base.py:smoke'
  status, lines, err = _main(smoke, f'--workdir={workdir}', '--config.train.batch_size=-8',
                             cwd=tmp_path)
  assert status == 2, err
  assert lines == [('stbir_jax.main: error: config.train.batch_size=-8; expected an integer '
                    '>= 1.')], err
  assert 'Traceback' not in err
  assert _tree(workdir) == before

  status, lines, err = _main(smoke, f'--workdir={workdir}', '--config.train.batch_siz=3',
                             cwd=tmp_path)
  assert status == 2, err
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].startswith("stbir_jax.main: error: Unknown config key '--config.train.batch_siz'")
  assert 'Did you mean "batch_size"' in lines[0]
  assert _tree(workdir) == before

  status, lines, err = _main(f'--config={ROOT}/configs/base.py:smok', f'--workdir={workdir}',
                             cwd=tmp_path)
  assert status == 2, err
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].endswith("Error whilst parsing config file: ValueError: Unknown config variant "
                           "'smok'; valid variants: full, demo, demo_split, demo_recipe, "
                           "demo_budget, demo_robust, demo_minilm, smoke, shoev2, chairv2, "
                           "sketchy, fscoco, manifest, siglip, v5e_8, v5p_8, v4_8, v6e_8, v5e_256")


@pytest.mark.slow  # two more starts of the program (imports of JAX and TensorFlow)
def test_main_offline_full_config_and_file_workdir_print_one_line(tmp_path):
  """The full config offline (its CLIP tokenizer is on the hub) leaves the workdir uncreated;
  a workdir that is a file is named."""
  fresh = tmp_path / 'fresh'
  status, lines, err = _main(f'--config={ROOT}/configs/base.py', f'--workdir={fresh}',
                             cwd=tmp_path)
  assert status == 2, err
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].startswith("stbir_jax.main: error: Could not load tokenizer "
                             "'openai/clip-vit-base-patch16'")
  assert "Valid names: 'bert_uncased' (bundled, offline)" in lines[0]
  assert not fresh.exists()

  file = tmp_path / 'run'
  file.write_text('x')
  status, lines, err = _main(f'--config={ROOT}/configs/base.py:smoke', f'--workdir={file}',
                             cwd=tmp_path)
  assert (status, lines) == (2, [(f'stbir_jax.main: error: --workdir {file} is a file; expected '
                                  'a directory (a new one is created) or a URL.')]), err


# ------------------------------------------------------------------------------------ full disk


# A checkpoint write that meets a full disk the way orbax does: many chunk writes gathered on an
# event loop that orbax closes without cancelling the rest (asyncio_utils._run_sync_via_new_loop);
# each pending write, collected later, reports "RuntimeError: Event loop is closed".
_FULL_DISK_PROGRAM = textwrap.dedent('''
    import asyncio, errno, sys
    from orbax.checkpoint._src import asyncio_utils
    from stbir_jax import cli

    async def write_chunk(i, gate):
      loop = asyncio.get_running_loop()
      if i == 0:
        await asyncio.sleep(0)
        raise OSError(errno.ENOSPC, 'No space left on device', '/w/checkpoints/7/state/d/0')
      try:
        await gate.wait()
      finally:
        loop.call_soon(print)  # the loop is closed by then

    async def write_all():
      gate = asyncio.Event()
      await asyncio.gather(*(write_chunk(i, gate) for i in range(1000)))

    def save_checkpoint():
      asyncio_utils.run_sync(write_all())

    if sys.argv[1] == 'plain':
      save_checkpoint()
    else:
      cli.run('stbir_jax.main', save_checkpoint)
''')


@pytest.mark.parametrize('how', ['plain', 'cli'])
def test_a_full_disk_is_one_line_not_buried_under_event_loop_noise(tmp_path, how):
  script = tmp_path / 'full_disk.py'
  script.write_text(_FULL_DISK_PROGRAM)
  proc = subprocess.run([sys.executable, str(script), how], env=_env(), capture_output=True,
                        text=True, timeout=120, check=False)
  lines = proc.stderr.splitlines()
  if how == 'plain':  # what it looks like without cli.run: the mechanism is real
    assert sum('Event loop is closed' in line for line in lines) >= 500
    return
  assert proc.returncode == 2
  assert lines == ['stbir_jax.main: error: No space left on device: /w/checkpoints/7/state/d/0']
