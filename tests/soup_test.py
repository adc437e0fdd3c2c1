"""Weight soups (stbir_jax/soup.py): the averaged params are the weighted sum of the runs', the soup
is a run that evaluate and calibrate read (a soup of one run at weight 1 scores as that run),
training refuses to resume it, and bad runs or weights are refused with the reason."""

import json
import shutil

import jax
import numpy as np
import pytest

import _tiny
from configs import base
from stbir_jax import evaluate, run_config, soup, train
from stbir_jax.config_checks import ConfigError


@pytest.fixture(scope='module')
def branched_runs(tmp_path_factory):
  """(config, clean run, branch): a tiny split model trained 4 steps, and the same run resumed
  from its step-2 checkpoint with twice the learning rate, as a robust branch is made."""
  root = tmp_path_factory.mktemp('soup')
  config = _tiny.calibrated_split_config(root / 'data', checkpoint_every=2)
  clean, branch = root / 'clean', root / 'branch'
  train.train_and_evaluate(config, str(clean))
  shutil.copytree(clean, branch)
  shutil.rmtree(branch / 'checkpoints' / '4')
  faster = config.copy_and_resolve_references()
  faster.optim.lr = 2 * config.optim.lr
  train.train_and_evaluate(faster, str(branch), allow_config_change=True)
  return config, clean, branch


def _params(run):
  return run_config.latest_params(run)[1]


def test_the_soup_is_the_weighted_sum_and_a_run_of_its_own(branched_runs, tmp_path):
  config, clean, branch = branched_runs
  a, b = _params(clean), _params(branch)
  assert not np.allclose(a['photo']['proj']['kernel'], b['photo']['proj']['kernel'])

  made = soup.make_soup([str(clean), str(branch)], [0.25, 0.75], tmp_path / 'mix')
  assert made['step'] == 4
  mixed = _params(tmp_path / 'mix')
  jax.tree_util.tree_map(
      lambda m, x, y: np.testing.assert_allclose(m, 0.25 * x + 0.75 * y, rtol=1e-6, atol=1e-7),
      mixed, a, b)
  record = json.loads((tmp_path / 'mix' / soup.FILE).read_text())
  assert [(r['step'], r['weight']) for r in record['runs']] == [(4, 0.25), (4, 0.75)]
  # The soup chose its own sketch weight and evaluates with it, as a calibrated run does.
  loaded = run_config.load_run(tmp_path / 'mix')[1]
  assert loaded.model.fusion.sketch_weight == made['sketch_weight']
  assert evaluate.evaluate_run(tmp_path / 'mix')[1] == pytest.approx(made['results'])
  assert json.loads((tmp_path / 'mix' / 'results.json').read_text()) == pytest.approx(
      made['results'])
  assert (tmp_path / 'mix' / 'results.md').read_text().startswith(
      f'A weight soup (python -m stbir_jax.soup): 0.25 x {clean} (step 4) + 0.75 x {branch} '
      '(step 4).')

  # All of one run: its params exactly, and its own calibrated results.
  whole = soup.make_soup([str(clean), str(branch)], [1.0, 0.0], tmp_path / 'whole')
  jax.tree_util.tree_map(np.testing.assert_array_equal, _params(tmp_path / 'whole'), a)
  assert whole['sketch_weight'] == run_config.load_run(clean)[1].model.fusion.sketch_weight
  assert whole['results'] == pytest.approx(json.loads((clean / 'results.json').read_text()))

  with pytest.raises(ConfigError, match='weight soup .* cannot resume'):
    train.train_and_evaluate(config, str(tmp_path / 'mix'))
  with pytest.raises(ConfigError, match='already holds a run'):
    soup.make_soup([str(clean), str(branch)], [0.5, 0.5], tmp_path / 'mix')


def test_weights_must_be_one_per_run_non_negative_and_sum_to_one():
  assert soup.check_weights(['a', 'b'], ['0.25', 0.75]) == [0.25, 0.75]
  with pytest.raises(ConfigError, match='names 1 run'):
    soup.check_weights(['a'], [1.0])
  with pytest.raises(ConfigError, match='3 value.* for 2 runs'):
    soup.check_weights(['a', 'b'], [0.2, 0.3, 0.5])
  with pytest.raises(ConfigError, match='sum to 1 .*sum to 0.9'):
    soup.check_weights(['a', 'b'], [0.4, 0.5])
  with pytest.raises(ConfigError, match='>= 0'):
    soup.check_weights(['a', 'b'], [1.5, -0.5])


def test_runs_must_share_the_model_but_not_the_training():
  one = base.get_config('smoke')
  other = one.copy_and_resolve_references()
  other.optim.lr = 3.0                        # training differs: fine
  other.curriculum.clean_share = 0.1
  other.model.fusion.sketch_weight = 0.3      # the soup chooses its own
  soup.check_same_model(['x', 'y'], [one, other])
  other.model.embed_dim = one.model.embed_dim + 1
  other.data.resolution = one.data.resolution * 2
  with pytest.raises(ConfigError) as e:
    soup.check_same_model(['x', 'y'], [one, other])
  message = str(e.value)
  assert f'model.embed_dim: x {one.model.embed_dim!r} vs y {one.model.embed_dim + 1!r}' in message
  assert 'data.resolution' in message and 'optim.lr' not in message and 'curriculum' not in message


def test_average_refuses_leaves_of_different_shapes():
  got = soup.average([{'w': np.ones(2, np.float32)}, {'w': np.full(2, 3.0, np.float32)}],
                     [0.5, 0.5])
  np.testing.assert_array_equal(got['w'], [2.0, 2.0])
  assert got['w'].dtype == np.float32
  with pytest.raises(ConfigError, match=r'shapes differ .*\(2,\), \(3,\)'):
    soup.average([{'w': np.ones(2)}, {'w': np.ones(3)}], [0.5, 0.5])


def test_the_program_ends_bad_flags_with_one_line(capsys, tmp_path):
  assert soup.main(['--runs=a,b', '--weights=0.5,x', f'--workdir={tmp_path}/s']) == 2
  assert "--weights=0.5,x: expected numbers" in capsys.readouterr().err
  assert soup.main([f'--runs={tmp_path}/none,{tmp_path}/none', f'--workdir={tmp_path}/s']) == 2
  err = capsys.readouterr().err
  assert f'--runs: {tmp_path}/none/config.json is missing; each run must be' in err
  assert len(err.strip().splitlines()) == 1
