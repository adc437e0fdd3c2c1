"""launch/robust_rounds.sh: the documented robustness rounds chain, run with a stand-in `python`
that records each command, so the chain, its flags and its resume rule are checked without
training."""

import os
import pathlib
import shlex
import subprocess

import pytest
from absl import flags
from ml_collections import config_flags

from stbir_jax import config_checks

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / 'launch' / 'robust_rounds.sh'


def _run(tmp_path, *extra, **env):
  """Runs the script with a `python` that appends its argv to calls.txt; returns the calls."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  calls = tmp_path / 'calls.txt'
  fake = bin_dir / 'python'
  fake.write_text(f'#!/bin/bash\nprintf "%q " "$@" >> {calls}\necho >> {calls}\n')
  fake.chmod(0o755)
  env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'ROOT': str(tmp_path / 'runs'), **env}
  done = subprocess.run(['bash', str(SCRIPT), *extra], env=env, cwd=REPO, capture_output=True,
                        text=True, check=False)
  lines = calls.read_text().splitlines() if calls.exists() else []
  return done, [shlex.split(line) for line in lines]


def _config(argv):
  """The config a program builds from argv's --config flags, validated as main does."""
  argv = ['prog'] + [a.replace('configs/base.py', str(REPO / 'configs' / 'base.py'))
                     for a in argv if a.startswith('--config')]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  config_checks.validate_config(values.config)
  return values.config


def _flag(argv, name):
  return next(a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}='))


def test_each_round_starts_from_the_one_before_with_the_documented_flags(tmp_path):
  done, calls = _run(tmp_path, SEED='2', ROUNDS='4')
  assert done.returncode == 0, done.stderr
  programs = [c[:2] for c in calls]
  assert programs == [['-m', 'stbir_jax.compare']] + [['-m', 'stbir_jax.main'],
                                                       ['-m', 'stbir_jax.evaluate']] * 4
  root = tmp_path / 'runs'
  clean = _config(calls[0])
  assert (clean.train.num_steps, _flag(calls[0], 'seeds')) == (2712, '2')
  trains = calls[1::2]
  families = _config(['--config=configs/base.py:demo_robust']).data.synth.train_families
  previous = f'{root}/clean/stbir/seed_2'
  for r, argv in enumerate(trains, start=1):
    config = _config(argv)
    assert config.train.init_from == previous
    assert config.train.seed == 2
    assert config.curriculum.kind != 'none'
    assert config.model.sketch_align == (r > 1)
    assert config.loss.align_jitter == (1.0 if r > 1 else 0.0)
    assert config.data.synth.train_families == (1024 if r > 1 else families)
    previous = _flag(argv, 'workdir')
    assert _flag(calls[2 * r], 'workdir') == previous  # its validation evaluation
  assert previous == f'{root}/round4_seed_2'


def test_the_control_trains_the_same_rounds_on_clean_queries(tmp_path):
  done, calls = _run(tmp_path, '--config.train.log_every=7', ROUNDS='3', CONTROL='1')
  assert done.returncode == 0, done.stderr
  trains = [_config(c) for c in calls[1::2]]
  assert [c.curriculum.kind == 'none' for c in trains] == [False, True, True]
  assert not any(c.model.sketch_align for c in trains)
  assert [c.train.log_every for c in trains] == [7, 7, 7]  # extra flags reach every round
  assert _flag(calls[-1], 'workdir') == f'{tmp_path}/runs/clean_round3_seed_0'
  # the first round is the robust chain's own, so both chains share it
  assert _flag(calls[1], 'workdir') == f'{tmp_path}/runs/round1_seed_0'


def test_a_rerun_skips_finished_runs_and_redoes_a_round_cut_short(tmp_path):
  root = tmp_path / 'runs'
  (root / 'clean' / 'stbir' / 'seed_0').mkdir(parents=True)
  (root / 'clean' / 'stbir' / 'seed_0' / 'results.json').write_text('{}')
  (root / 'round1_seed_0').mkdir()
  (root / 'round1_seed_0' / 'results_validation_step2712.json').write_text('{}')
  (root / 'round2_seed_0').mkdir()
  (root / 'round2_seed_0' / 'results.json').write_text('{}')  # its validation never ran
  done, calls = _run(tmp_path, ROUNDS='2')
  assert done.returncode == 0, done.stderr
  assert [(c[1], _flag(c, 'workdir')) for c in calls] == [
      ('stbir_jax.main', f'{root}/round2_seed_0'), ('stbir_jax.evaluate', f'{root}/round2_seed_0')]


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
  done, calls = _run(tmp_path, DRY_RUN='1', ROUNDS='2')
  assert done.returncode == 0 and calls == []
  printed = [line for line in done.stdout.splitlines() if line.startswith('python -m')]
  assert len(printed) == 5 and 'round2_seed_0' in printed[-1]


@pytest.mark.parametrize('env', [{'SEED': 'x'}, {'ROUNDS': '0'}])
def test_a_bad_seed_or_round_count_is_named(tmp_path, env):
  done, calls = _run(tmp_path, **env)
  assert done.returncode == 2 and calls == []
  assert 'SEED must be an integer >= 0 and ROUNDS >= 1' in done.stderr
