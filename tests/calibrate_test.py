"""Calibration of a split model's query-time sketch weight: chosen on validation, recorded in the
run, applied by the model itself (the chosen weight's validation score is what the model then
scores), idempotent; clear errors for models without a split fusion."""

import json

import jax
import pytest

import _tiny
from stbir_jax import calibrate, compare, evaluate, run_config, train
from stbir_jax.models.stbir import STBIR


@pytest.fixture(scope='module')
def split_run(tmp_path_factory):
  """A split model trained with model.fusion.calibrate=True: (its config, run dir, the results
  train_and_evaluate returned)."""
  root = tmp_path_factory.mktemp('calibrate')
  config = _tiny.calibrated_split_config(root / 'data')
  results = train.train_and_evaluate(config, str(root / 'run'))
  return config, root / 'run', results


def test_the_chosen_weight_is_recorded_and_is_what_the_model_then_scores(split_run):
  config, run, trained = split_run
  record = json.loads((run / calibrate.FILE).read_text())
  w = record['sketch_weight']
  curve = record['validation_by_weight']
  assert len(curve) == len(compare.FUSION_WEIGHTS) and str(w) in curve
  best = max(curve.values(), key=lambda v: (v['acc@1'], v['mAP']))
  assert (curve[str(w)]['acc@1'], curve[str(w)]['mAP']) == (best['acc@1'], best['mAP'])
  assert run_config.load_run(run)[1].model.fusion.sketch_weight == w
  # The run's results are the calibrated model's on test ...
  assert json.loads((run / 'results.json').read_text()) == pytest.approx(trained)
  _, on_test = evaluate.evaluate_run(run)
  assert on_test == pytest.approx(trained)
  # ... and the model with sketch_weight = w ranks validation as the re-weighted halves did.
  _, results = evaluate.evaluate_run(run, split='validation', evaluators=['retrieval'])
  assert results['shoes/sketch+text/acc@1'] == pytest.approx(curve[str(w)]['acc@1'], abs=1e-9)
  assert results['shoes/sketch+text/mAP'] == pytest.approx(curve[str(w)]['mAP'], abs=1e-6)
  # Calibrating again finds the same weight (from the halves as trained) and records nothing new.
  history = sorted((run / run_config.HISTORY).glob('*.json'))
  assert len(history) == (w != 0.5)
  assert calibrate.calibrate_run(str(run))['sketch_weight'] == w
  assert sorted((run / run_config.HISTORY).glob('*.json')) == history
  # The training command again: the finished run resumes at its own weight (no
  # --allow_config_change), calibrates again and reports the same results.
  assert train.train_and_evaluate(config, str(run)) == pytest.approx(trained)
  assert run_config.load_run(run)[1].model.fusion.sketch_weight == w


def test_only_a_split_fusion_has_a_sketch_weight():
  config = _tiny.tiny_config()
  assert config.model.fusion.kind == 'cross_attention'
  with pytest.raises(calibrate.CalibrationError, match="fusion.kind='cross_attention'"):
    calibrate.choose_sketch_weight(config, params=None)
  batch = _tiny.random_batch(config)
  query = lambda c: STBIR.from_config(c).init(
      jax.random.PRNGKey(0), batch['sketch'], batch['text_ids'], batch['text_mask'],
      batch['has_sketch'], batch['has_text'], method=STBIR.encode_query)
  config.model.fusion.sketch_weight = 0.3
  with pytest.raises(ValueError, match="sketch_weight=0.3: .* not kind 'cross_attention'"):
    query(config)
  config.model.fusion.sketch_weight = 0.5
  config.model.fusion.calibrate = True
  with pytest.raises(ValueError, match="calibrate=True needs a split fusion .* 'cross_attention'"):
    query(config)
  config.model.fusion.kind = 'concat'
  config.model.fusion.calibrate = False
  config.model.fusion.sketch_weight = 1.5
  with pytest.raises(ValueError, match=r'sketch_weight=1.5: .* in \[0, 1\]'):
    query(config)
