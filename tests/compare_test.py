"""Baselines: every method's config, smoke steps of each, late fusion, the significance rule."""

import json

import numpy as np
import pytest

import _tiny
from configs import base
from stbir_jax import ablate, compare, eval_sections, train


def _same_budget(a, b):
  for key in ('data', 'optim'):
    assert a[key].to_dict() == b[key].to_dict()
  for key in ('num_steps', 'batch_size'):
    assert a.train[key] == b.train[key]
  # Every evaluator on the same split, schedule, batch and scope (a baseline ranks its own modes).
  for name in ('retrieval', 'robustness'):
    kept = [{k: v for k, v in c.evals[name].items() if k not in ('modes', 'buckets')}
            for c in (a, b)]
    assert kept[0] == kept[1], name


@pytest.mark.parametrize('method', compare.TRAINED)
def test_every_baseline_keeps_the_data_budget_and_evaluation_of_the_base_config(method):
  config = base.get_config('demo')
  c = compare.baseline_config(config, method, seed=3)
  _same_budget(c, config)
  assert c.train.seed == 3 and list(c.evals) == ['retrieval', 'robustness']
  if method == 'stbir':
    assert [s.to_dict() for s in c.stages] == [s.to_dict() for s in config.stages]
    assert c.curriculum.kind == config.curriculum.kind and c.category.enabled
    return
  assert c.curriculum.kind == 'none' and not c.category.enabled
  (stage,) = c.stages
  expected = {'triplet_sn': (['sketch', 'photo'], ['triplet'], 'sketch', ['sketch']),
              'text_clip': (['text', 'photo', 'fusion', 'temperature'], ['contrastive'], 'text',
                            ['text']),
              'joint_plain': (['sketch', 'photo', 'text', 'fusion', 'temperature'],
                              ['contrastive'], 'sketch+text',
                              list(config.evals.retrieval.modes))}[method]
  assert (list(stage.train), list(stage.losses), stage.query) == expected[:3]
  assert list(c.evals.retrieval.modes) == list(c.evals.robustness.modes) == expected[3]
  assert c.loss.triplet_mining == ('all' if method == 'triplet_sn' else 'hard')


def test_unknown_method_lists_the_trained_ones():
  with pytest.raises(compare.CompareError, match='valid: triplet_sn, text_clip, joint_plain'):
    compare.baseline_config(base.get_config('smoke'), 'late_fusion', 0)


def test_significance_needs_a_difference_beyond_twice_the_larger_std():
  # means 0.60 vs 0.50: difference 0.10; stds 0.02 and 0.04 -> bound 0.08: a gain.
  assert ablate.significance([0.58, 0.60, 0.62], [0.46, 0.50, 0.54]) == 'gain'
  # stds 0.02 and 0.06 -> bound 0.12 > 0.10.
  assert ablate.significance([0.58, 0.60, 0.62], [0.44, 0.50, 0.56]) == 'not significant'
  assert ablate.significance([0.46, 0.50, 0.54], [0.58, 0.60, 0.62]) == 'loss'
  assert ablate.significance([0.6], [0.5]) == 'not significant (1 seed)'


def test_fused_ranks_weigh_the_two_scores():
  # Gallery of 3 photos (instances 10, 11, 12); one query whose target is instance 11.
  g_a = np.eye(3, dtype=np.float32)                        # sketch model: query is photo 0-ish
  g_b = np.eye(3, dtype=np.float32)
  q_a = np.array([[0.8, 0.6, 0.0]], np.float32)            # sketch scores 0.8, 0.6, 0.0
  q_b = np.array([[0.0, 0.6, 0.8]], np.float32)            # text scores 0.0, 0.6, 0.8
  side = lambda g, q: ((g, np.array([10, 11, 12]), np.zeros(3, np.int32)),
                       {('', 'sketch+text'): (q, np.array([11]))})
  rank = lambda w: int(compare._fused_ranks(side(g_a, q_a), side(g_b, q_b),
                                            ('', 'sketch+text'), w, 'all')[0])
  # w = 1: sketch alone ranks 11 second; w = 0: text alone second; w = 0.5: 0.4, 0.6, 0.4 first.
  assert (rank(1.0), rank(0.0), rank(0.5)) == (2, 2, 1)


def test_a_single_modality_baseline_answers_sketch_text_queries_with_its_modality():
  results = {'shoes/sketch/acc@1': 0.3, 'shoes/moderate/sketch/acc@1': 0.1, 'shoes/x': 1.0}
  filled = compare.answered_with_one_modality('triplet_sn', results)
  assert filled['shoes/sketch+text/acc@1'] == 0.3
  assert filled['shoes/moderate/sketch+text/acc@1'] == 0.1
  assert compare.answered_with_one_modality('stbir', results) == results


@pytest.fixture(scope='module')
def smoke_baselines(tmp_path_factory):
  root = tmp_path_factory.mktemp('compare')
  config = _tiny.vit_towers(base.get_config('smoke'))
  config.data.data_dir = str(root / 'data')
  config.train.num_steps = 3
  config.train.checkpoint_every = 3
  config.evals.retrieval.every_steps = 3
  # Fewer buckets, fewer compiled degradations: this fixture trains three models.
  eval_sections.add_section(config, 'robustness')
  config.evals.robustness.buckets = ['moderate', 'no_sketch', 'no_text']
  results = {}
  for method in ('triplet_sn', 'text_clip', 'joint_plain'):
    results[method] = train.train_and_evaluate(compare.baseline_config(config, method, 0),
                                               str(root / method / 'seed_0'))
  return config, root, results


def test_each_trained_baseline_runs_smoke_steps_and_reports_its_modes(smoke_baselines):
  _, _, results = smoke_baselines
  assert 0.0 <= results['triplet_sn']['shoes/sketch/acc@1'] <= 1.0
  assert not any('/text/' in k or 'sketch+text' in k for k in results['triplet_sn'])
  assert 'shoes/text/acc@1' in results['text_clip']
  assert not any('/sketch/' in k for k in results['text_clip'])
  assert {'shoes/sketch+text/acc@1', 'shoes/moderate/sketch+text/acc@1'} <= set(
      results['joint_plain'])


def test_a_report_without_stbir_has_the_tables_and_says_why_there_is_no_verdict(smoke_baselines):
  config, _, results = smoke_baselines
  runs = {'triplet_sn': [results['triplet_sn']], 'joint_plain': [results['joint_plain']]}
  text = compare.report(runs, config, [0], 'python -m stbir_jax.compare --methods=joint_plain')
  assert '| joint_plain | 1 | sketch+text |' in text
  assert 'stbir against each baseline' not in text
  assert 'add `stbir` to --methods' in text


def test_late_fusion_chooses_its_weight_on_validation_and_reports_every_bucket(smoke_baselines):
  config, root, _ = smoke_baselines
  config = compare.baseline_config(config, 'stbir', 0)
  out = root / 'late_fusion' / 'seed_0'
  results = compare.run_late_fusion(config, str(root / 'triplet_sn' / 'seed_0'),
                                    str(root / 'text_clip' / 'seed_0'), str(out))
  assert results['fusion_weight'] in [float(w) for w in compare.FUSION_WEIGHTS]
  assert len(results['validation_acc@1_by_weight']) == len(compare.FUSION_WEIGHTS)
  for bucket in config.evals.robustness.buckets:
    assert 0.0 <= results[f'shoes/{bucket}/sketch+text/acc@1'] <= 1.0
  assert results['shoes/sketch/acc@1'] == json.loads(
      (root / 'triplet_sn' / 'seed_0' / 'results.json').read_text())['shoes/sketch/acc@1']
  # Cached: a second call reads the file.
  assert compare.run_late_fusion(config, 'missing', 'missing', str(out)) == results


def test_a_stopped_run_ends_the_sweep_with_the_terminated_status_and_trains_nothing_after_it(
    tmp_path, monkeypatch, capsys):
  trained = []

  def stopped(config, workdir):   # train_and_evaluate's answer to SIGTERM: checkpoint, then {}
    trained.append(str(workdir))
    return {}

  monkeypatch.setattr(train, 'train_and_evaluate', stopped)
  with pytest.raises(SystemExit) as stop:
    with ablate.stop_when_interrupted('stbir_jax.compare'):
      compare._run_all(base.get_config('smoke'), tmp_path, [0, 1],
                       {'triplet_sn': [], 'text_clip': []})
  assert stop.value.code == 143
  assert trained == [str(tmp_path / 'triplet_sn' / 'seed_0')]
  err = capsys.readouterr().err
  assert err.startswith('stbir_jax.compare: The run in ') and 'rerun the same command' in err
