"""Evaluators with a fake model whose rankings are known by construction, and fake data."""

import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

import _xla
from configs import base
from stbir_jax import config_rules, eval_report, eval_sections, evaluate

D = 4           # embedding size = gallery size: gallery photo k encodes to one-hot e_k
R, L = 4, 3     # tiny image side and text length
TRACES = {'encode_gallery': 0, 'encode_query': 0}


class FakeSTBIR(nn.Module):
  """Gallery: e_{image[0,0,0]}. Query: 2 e_{sketch[0,0]} * has_sketch
  + e_{text_ids[0]} * has_text."""

  def encode_gallery(self, image):
    TRACES['encode_gallery'] += 1  # Python side effect: counts traces (compilations)
    return jax.nn.one_hot(image[:, 0, 0, 0], D)

  def encode_query(self, sketch, text_ids, text_mask, has_sketch, has_text):
    TRACES['encode_query'] += 1
    s = 2.0 * jax.nn.one_hot(sketch[:, 0, 0], D) * has_sketch[:, None]
    t = jax.nn.one_hot(text_ids[:, 0], D) * (has_text[:, None] & (text_mask[:, :1] > 0))
    return s + t


# Gallery: instance 10 + k holds pointer k; photos 10, 11 are category 0, photos 12, 13 category 1.
# Batch size 3, last batch padded by the "pipeline"; the padded rows carry a duplicate instance
# and a pointer that would change ranks if kept.
def fake_gallery(config, dataset, split, batch_size):
  CALLS.append(('gallery', dataset, split))
  pointer = np.array([[0, 1, 2], [3, 1, 1]])
  instance = np.array([[10, 11, 12], [13, 10, 10]])
  valid = np.array([[1, 1, 1], [1, 0, 0]], bool)
  for b in range(2):
    image = np.zeros((3, R, R, 3), np.uint8)
    image[:, 0, 0, 0] = pointer[b]
    yield dict(image=image, instance=instance[b].astype(np.int32),
               category=(instance[b] >= 12).astype(np.int32), family=np.zeros(3, np.int32),
               valid=valid[b])


# Queries (target instance, sketch pointer a, text pointer b):
#   q0: 10, a=0, b=0   q1: 11, a=1, b=2   q2: 12, a=3, b=2   q3: 13, a=3, b=3
# The last batch is short (q3 + a padded row targeting a photo that is not in the gallery):
# the evaluator pads it to 3 rows so the encoder is not recompiled.
QUERIES = [(10, 0, 0), (11, 1, 2), (12, 3, 2), (13, 3, 3), (99, 1, 1)]


def fake_queries(config, dataset, split, batch_size):
  CALLS.append(('queries', dataset, split))
  for rows in (QUERIES[:3], QUERIES[3:]):
    n = len(rows)
    sketch = np.zeros((n, R, R), np.uint8)
    sketch[:, 0, 0] = [a for _, a, _ in rows]
    text_ids = np.zeros((n, L), np.int32)
    text_ids[:, 0] = [b for _, _, b in rows]
    yield dict(sketch=sketch, text_ids=text_ids, text_mask=np.ones((n, L), np.int32),
               has_sketch=np.ones(n, bool), has_text=np.ones(n, bool),
               instance=np.array([t for t, _, _ in rows], np.int32),
               category=np.zeros(n, np.int32), family=np.zeros(n, np.int32),
               query_index=np.arange(n, dtype=np.int32),
               valid=np.array([t != 99 for t, _, _ in rows]))


KEYS = []


def fake_degrade(key, batch, bucket_index, buckets, attribute_ids=None):
  """clean: as is; severe: sketch pointer + 1 (mod 4); no_sketch: has_sketch False."""
  bucket = buckets[bucket_index]
  jax.debug.callback(lambda k: KEYS.append((bucket.name, np.asarray(k))), key)
  if bucket.name == 'severe':
    batch = dict(batch, sketch=(batch['sketch'] + 1) % D)
  if bucket.missing_sketch:
    batch = dict(batch, has_sketch=batch['has_sketch'] & False)
  return batch


CALLS = []
DATA_FNS = dict(eval_gallery=fake_gallery, eval_queries=fake_queries,
                degrade_queries=fake_degrade)

# Ranks by hand (gallery e_0..e_3; pessimistic ties):
#   sketch:      q0 2e0 -> 1; q1 2e1 -> 1; q2 2e3: target e2 scores 0, e3 above, e0/e1 tie -> 4;
#                q3 2e3 -> 1                                     ranks [1, 1, 4, 1]
#   text:        q0 e0 -> 1; q1 e2: target e1 0, e2 above, e0/e3 tie -> 4; q2 e2 -> 1; q3 -> 1
#                                                                ranks [1, 4, 1, 1]
#   sketch+text: q0 3e0 -> 1; q1 2e1+e2: target e1 2 > e2 1 -> 1; q2 2e3+e2: e3 2 > target
#                e2 1 -> 2; q3 3e3 -> 1                          ranks [1, 1, 2, 1]
EXPECTED = {
    'sketch': dict(ranks=[1, 1, 4, 1]),
    'text': dict(ranks=[1, 4, 1, 1]),
    'sketch+text': dict(ranks=[1, 1, 2, 1]),
}


def _metrics(ranks):
  r = np.array(ranks, float)
  return {'acc@1': np.mean(r <= 1), 'acc@5': np.mean(r <= 5), 'acc@10': np.mean(r <= 10),
          'mAP': np.mean(1 / r), 'mean_rank': np.mean(r), 'median_rank': np.median(r),
          'num_queries': 4}


def _config(buckets=None, **fields):
  """The smoke config on shoes and chairs with a retrieval and a robustness section, `fields` set
  in both (split 'test' unless given) and robustness's `buckets`."""
  config = base.get_config('smoke')
  config.data.configs = ['shoes', 'chairs']
  eval_sections.add_section(config, 'robustness')
  for own in config.evals.values():
    own.update(dict(dict(split='test'), **fields))
  if buckets is not None:
    config.evals.robustness.buckets = buckets
  return config


def test_retrieval_exact_metrics_modes_and_padding():
  CALLS.clear()
  TRACES.update(encode_gallery=0, encode_query=0)
  ev = evaluate.make_evaluator('retrieval', _config(), FakeSTBIR(), data_fns=DATA_FNS)
  results = ev.run({'params': {}})
  expected = {}
  for c in ('shoes', 'chairs'):
    for mode, e in EXPECTED.items():
      for k, v in _metrics(e['ranks']).items():
        expected[f'{c}/{mode}/{k}'] = v
  assert results.keys() == expected.keys()
  for k, v in expected.items():
    assert results[k] == pytest.approx(v), k
  # Spot checks written out: sketch mode Acc@1 3/4, mAP (1+1+1/4+1)/4; sketch+text mAP 7/8.
  assert results['shoes/sketch/acc@1'] == 0.75
  assert results['shoes/sketch/mAP'] == pytest.approx(0.8125)
  assert results['shoes/sketch+text/mAP'] == pytest.approx(0.875)
  assert results['shoes/text/mean_rank'] == pytest.approx(1.75)
  # Gallery once, queries once per configuration, on the section's split.
  assert CALLS == [('gallery', 'shoes', 'test'), ('queries', 'shoes', 'test'),
                   ('gallery', 'chairs', 'test'), ('queries', 'chairs', 'test')]
  # Fixed padded shapes: each encoder compiled once for 2 configs x 2 batches x 3 modes.
  assert TRACES == {'encode_gallery': 1, 'encode_query': 1}


# Within the target's category only (gallery_scope='category'; pessimistic ties):
#   sketch:      q2 2e3 among {e2, e3}: e3 above the target -> 2       ranks [1, 1, 2, 1]
#   text:        q1 e2 among {e0, e1}: both 0, tie -> 2                 ranks [1, 2, 1, 1]
#   sketch+text: q2 2e3+e2 among {e2, e3}: e3 2 > e2 1 -> 2             ranks [1, 1, 2, 1]
EXPECTED_CATEGORY = {'sketch': [1, 1, 2, 1], 'text': [1, 2, 1, 1], 'sketch+text': [1, 1, 2, 1]}


def test_category_scope_ranks_within_the_target_category():
  ev = evaluate.make_evaluator('retrieval', _config(gallery_scope='category'), FakeSTBIR(),
                               data_fns=DATA_FNS)
  results = ev.run({'params': {}})
  for mode, ranks in EXPECTED_CATEGORY.items():
    for k, v in _metrics(ranks).items():
      assert results[f'shoes/{mode}/{k}'] == pytest.approx(v), (mode, k)


def test_unknown_gallery_scope_lists_the_valid_ones():
  with pytest.raises(evaluate.EvaluatorError,
                     match=r"retrieval.gallery_scope='family'; expected one of 'all', 'category'"):
    evaluate.make_evaluator('retrieval', _config(gallery_scope='family'), FakeSTBIR(),
                            data_fns=DATA_FNS)


def test_robustness_buckets_and_fixed_keys():
  KEYS.clear()
  config = _config(buckets=['clean', 'severe', 'no_sketch'])
  config.data.configs = ['shoes']
  ev = evaluate.make_evaluator('robustness', config, FakeSTBIR(), data_fns=DATA_FNS)
  results = ev.run({'params': {}})
  jax.effects_barrier()
  # severe shifts the sketch pointer: a' = 1, 2, 0, 0.
  #   sketch: every target scores 0 against a 2 and two tied zeros -> ranks [4, 4, 4, 4].
  #   sketch+text: q0 2e1+e0 -> 2; q1 3e2 (target e1 0, ties e0 e3) -> 4; q2 2e0+e2 -> 2;
  #                q3 2e0+e3 -> 2.                                      ranks [2, 4, 2, 2]
  # no_sketch: no sketch-only queries (they would be empty); the other modes equal text-only.
  ranks = {
      'clean': EXPECTED,
      'severe': {'sketch': dict(ranks=[4] * 4), 'text': EXPECTED['text'],
                 'sketch+text': dict(ranks=[2, 4, 2, 2])},
      'no_sketch': {'text': EXPECTED['text'], 'sketch+text': EXPECTED['text']},
  }
  expected = {}
  for bucket, modes in ranks.items():
    for mode, e in modes.items():
      m = _metrics(e['ranks'])
      expected[f'shoes/{bucket}/{mode}/acc@1'] = m['acc@1']
      expected[f'shoes/{bucket}/{mode}/mAP'] = m['mAP']
  assert results.keys() == expected.keys()
  for k, v in expected.items():
    assert results[k] == pytest.approx(v), k
  assert results['shoes/severe/sketch+text/mAP'] == pytest.approx(0.4375)
  # Keys: fold_in(PRNGKey(eval_seed), batch number), the same for every bucket.
  want = [np.asarray(jax.random.fold_in(jax.random.PRNGKey(config.curriculum.eval_seed), b))
          for b in range(2)]
  assert len(KEYS) == 6
  for name in ('clean', 'severe', 'no_sketch'):
    got = sorted(k.ravel().tolist() for n, k in KEYS if n == name)
    assert got == sorted(w.ravel().tolist() for w in want), name
  # Deterministic: the same numbers on a second run.
  assert ev.run({'params': {}}) == results


TABLES = []


def fake_degrade_by_field(key, batch, bucket_index, buckets, attribute_ids=None):
  """jitter shifts the sketch pointer by 1, word dropout the text pointer (mod 4), missing_text
  hides the text; the other fields do nothing. Records each call's table."""
  del key, attribute_ids
  TABLES.append([str(b.name) for b in buckets])
  bucket = buckets[bucket_index]
  if bucket.jitter:
    batch = dict(batch, sketch=(batch['sketch'] + 1) % D)
  if bucket.word_dropout:
    batch = dict(batch, text_ids=(batch['text_ids'] + 1) % D)
  if bucket.missing_text:
    batch = dict(batch, has_text=batch['has_text'] & False)
  return batch


def test_degradations_evaluator_scores_each_degradation_of_a_bucket_alone_and_all_but_it():
  TABLES.clear()
  config = _config()
  config.data.configs = ['shoes']
  eval_sections.add_section(config, 'degradations')
  config.evals.degradations.update(split='test', buckets=['moderate', 'no_text'])
  ev = evaluate.make_evaluator('degradations', config, FakeSTBIR(),
                               data_fns=dict(DATA_FNS, degrade_queries=fake_degrade_by_field))
  results = ev.run({'params': {}})
  # By hand (see EXPECTED; pessimistic ties):
  #   sketch shifted:  sketch [4, 4, 4, 4]; sketch+text [2, 4, 2, 2] (test_robustness_...)
  #   text shifted:    text q0 e1, q1 e3, q2 e3, q3 e0: every target 0 -> [4, 4, 4, 4];
  #                    sketch+text 2e0+e1, 2e1+e3, 3e3, 2e3+e0 -> [1, 1, 4, 1]
  #   both shifted:    sketch+text 3e1, 2e2+e3, 2e0+e3, 3e0 -> [4, 4, 4, 4]
  sketch_shifted = {'sketch': [4] * 4, 'text': EXPECTED['text']['ranks'],
                    'sketch+text': [2, 4, 2, 2]}
  text_shifted = {'sketch': EXPECTED['sketch']['ranks'], 'text': [4] * 4,
                  'sketch+text': [1, 1, 4, 1]}
  clean = {mode: e['ranks'] for mode, e in EXPECTED.items()}
  ranks_both = {'sketch': [4] * 4, 'text': [4] * 4, 'sketch+text': [4] * 4}
  ranks = {'moderate': ranks_both,
           'moderate.stroke_dropout': clean, 'moderate.keep_fraction': clean,
           'moderate.jitter': sketch_shifted, 'moderate.thickness': clean,
           'moderate.noise_strokes': clean, 'moderate.word_dropout': text_shifted,
           # All but one: undoing the jitter leaves the words dropped, and the other way round;
           # undoing a field the fake ignores leaves the whole bucket.
           'moderate.no_stroke_dropout': ranks_both, 'moderate.no_keep_fraction': ranks_both,
           'moderate.no_jitter': text_shifted, 'moderate.no_thickness': ranks_both,
           'moderate.no_noise_strokes': ranks_both, 'moderate.no_word_dropout': sketch_shifted,
           # no_text removes one thing: no breakdown; its sketch+text queries are sketch-only.
           'no_text': {'sketch': clean['sketch'], 'sketch+text': clean['sketch']}}
  expected = {}
  for variant, modes in ranks.items():
    for mode, r in modes.items():
      m = _metrics(r)
      expected[f'shoes/{variant}/{mode}/acc@1'] = m['acc@1']
      expected[f'shoes/{variant}/{mode}/mAP'] = m['mAP']
  assert list(results) == list(expected)
  for k, v in expected.items():
    assert results[k] == pytest.approx(v), k
  # The curriculum's buckets first, at their own indices, so its buckets draw as in robustness.
  curriculum = [str(b.name) for b in config.curriculum.buckets]
  fields = ('stroke_dropout', 'keep_fraction', 'jitter', 'thickness', 'noise_strokes',
            'word_dropout')
  assert {tuple(t) for t in TABLES} == {tuple(
      curriculum + [f'moderate.{f}' for f in fields] + [f'moderate.no_{f}' for f in fields])}


def test_registry_and_config_errors_list_valid_names():
  with pytest.raises(evaluate.EvaluatorError,
                     match=r"'recall' \(config.evals.recall\); "
                           r"valid evaluators: degradations, retr"):
    evaluate.get_evaluator('recall')
  with pytest.raises(evaluate.EvaluatorError,
                     match=r"robustness.buckets names 'extreme'.*clean, mild, moderate, severe"):
    evaluate.make_evaluator('robustness', _config(buckets=['extreme']), FakeSTBIR(),
                            data_fns=DATA_FNS)
  with pytest.raises(evaluate.EvaluatorError, match=r"retrieval.modes=\['sketch', 'audio'\]; "
                                                    r'expected a non-empty list of names from '
                                                    r'sketch, text, sketch\+text'):
    evaluate.make_evaluator('retrieval', _config(modes=['sketch', 'audio']), FakeSTBIR(),
                            data_fns=DATA_FNS)


def test_an_evaluator_needs_only_its_section_the_model_and_the_data():
  config = _config(buckets=['severe', 'no_sketch'], every_steps=7)
  section = evaluate.section(config, 'robustness')
  assert dict(section.to_dict(), buckets=[b.to_dict() for b in section.buckets]) == {
      'datasets': ['shoes', 'chairs'], 'split': 'test',
      'modes': list(config.evals.robustness.modes),
      'gallery_scope': 'all', 'batch_size': config.evals.robustness.batch_size, 'every_steps': 7,
      'buckets': [b.to_dict() for b in config.curriculum.buckets
                  if b.name in ('severe', 'no_sketch')],
      'eval_seed': config.curriculum.eval_seed}
  assert set(evaluate.section(config, 'retrieval')) == {
      *evaluate.RetrievalEvaluator.section_defaults, *evaluate.RetrievalEvaluator.shared_fields}
  # A section written by hand (no run config in sight) gives the same numbers.
  section = ml_collections.ConfigDict({'datasets': ['shoes'], 'split': 'test', 'modes': ['sketch'],
                                       'gallery_scope': 'all', 'batch_size': 3, 'every_steps': 5})
  ev = evaluate.RetrievalEvaluator(section, FakeSTBIR(), evaluate.EvalData(None, DATA_FNS))
  assert ev.every_steps == 5
  want = evaluate.make_evaluator('retrieval', _config(modes=['sketch']), FakeSTBIR(),
                                 data_fns=DATA_FNS).run({'params': {}})
  assert ev.run({'params': {}}) == {k: v for k, v in want.items() if k.startswith('shoes/')}


class GalleryNorm:
  """A newcomer's evaluator, written knowing only its section: the mean norm of the gallery
  embeddings of each dataset configuration."""

  name = 'gallery_norm'
  section_defaults = dict(every_steps=5, batch_size=3, split='test')
  section_rules = dict(every_steps=config_rules.POSITIVE, batch_size=config_rules.POSITIVE,
                       split=config_rules.choice('test', 'validation'))
  shared_fields = ('datasets',)

  def __init__(self, section, model, data, mesh=None):
    del mesh
    self.section, self.model, self.data = section, model, data
    self.every_steps = section.every_steps

  def run(self, variables):
    out = {}
    for dataset in self.section.datasets:
      norms = [np.linalg.norm(self.model.apply(variables, b['image'], method='encode_gallery'),
                              axis=-1)[b['valid']]
               for b in self.data.gallery(dataset, self.section.split, self.section.batch_size)]
      out[f'{dataset}/gallery_norm'] = float(np.mean(np.concatenate(norms)))
    return out


def test_a_new_evaluator_is_a_class_with_its_section_and_a_registry_entry(monkeypatch):
  monkeypatch.setitem(evaluate.EVALUATORS, 'gallery_norm', GalleryNorm)
  monkeypatch.setitem(eval_sections.SECTION_DEFAULTS, 'gallery_norm', GalleryNorm.section_defaults)
  config = _config()
  config.evals.gallery_norm = eval_sections.default_section('gallery_norm')
  evaluate.check_sections(config)
  evaluators = evaluate.make_evaluators(config, FakeSTBIR(), data_fns=DATA_FNS)
  assert [e.name for e in evaluators] == ['gallery_norm', 'retrieval', 'robustness']  # by name
  assert evaluators[0].run({'params': {}}) == {'shoes/gallery_norm': 1.0,
                                               'chairs/gallery_norm': 1.0}
  # Its section is checked by its own rules, naming the key.
  config.evals.gallery_norm.split = 'train'
  with pytest.raises(evaluate.EvaluatorError, match=r"config.evals.gallery_norm.split='train'; "
                                                    r"expected one of 'test', 'validation'"):
    evaluate.check_sections(config)
  config.evals.gallery_norm = ml_collections.ConfigDict(dict(every_steps=5, batch_size=3, k=1))
  with pytest.raises(evaluate.EvaluatorError, match=r'config key config.evals.gallery_norm.k: '
                                                    r'the gallery_norm evaluator reads '
                                                    r'every_steps, batch_size, split'):
    evaluate.check_sections(config)
  del config.evals.gallery_norm.k
  with pytest.raises(evaluate.EvaluatorError,
                     match=r"config.evals.gallery_norm has no field 'split'"):
    evaluate.check_sections(config)


def test_query_targeting_missing_photo_is_named():
  def queries(config, dataset, split, batch_size):
    for b in fake_queries(config, dataset, split, batch_size):
      yield dict(b, valid=np.ones_like(b['valid']))  # the instance-99 row now counts
  config = _config()
  config.data.configs = ['shoes']
  ev = evaluate.make_evaluator('retrieval', config, FakeSTBIR(),
                               data_fns=dict(DATA_FNS, eval_queries=queries))
  with pytest.raises(evaluate.EvaluatorError, match=r'shoes/test.*not in the gallery.*99'):
    ev.run({'params': {}})


def test_results_table_and_write_results(tmp_path):
  results = {'shoes/sketch/acc@1': 0.75, 'shoes/sketch/acc@5': 1.0, 'shoes/sketch/acc@10': 1.0,
             'shoes/sketch/mAP': 0.8125, 'shoes/sketch/mean_rank': 1.75,
             'shoes/sketch/median_rank': 1.0, 'shoes/sketch/num_queries': 4,
             'shoes/text/acc@1': 0.5, 'shoes/text/mAP': 0.6,
             'shoes/severe/sketch/acc@1': 0.0, 'shoes/severe/sketch/mAP': 0.25,
             'shoes/severe/sketch+text/acc@1': 0.125, 'shoes/severe/sketch+text/mAP': 0.4375}
  table = eval_report.results_table(results)
  assert '| mode | Acc@1 | Acc@5 | Acc@10 | mAP | mean rank |' in table
  assert '| sketch | 75.00 | 100.00 | 100.00 | 81.25 | 1.8 |' in table
  assert '| text | 50.00 | - | - | 60.00 | - |' in table
  assert '| bucket | sketch | sketch+text |' in table
  assert '| severe | 0.00 / 25.00 | 12.50 / 43.75 |' in table
  eval_report.write_results(results, tmp_path / 'run')
  assert json.loads((tmp_path / 'run' / 'results.json').read_text()) == results
  assert (tmp_path / 'run' / 'results.md').read_text() == table + '\n'


MESH_SCRIPT = '''
import sys, jax, numpy as np
sys.path.insert(0, 'tests')
import evaluate_test as t
from stbir_jax import evaluate, sharding
assert jax.device_count() == 3
mesh = sharding.make_mesh(dict(data=-1, fsdp=1, model=1))
config = t._config()
config.data.configs = ['shoes']
ev = evaluate.make_evaluator('retrieval', config, t.FakeSTBIR(), data_fns=t.DATA_FNS, mesh=mesh)
results = ev.run({'params': {}})
plain = evaluate.make_evaluator('retrieval', config, t.FakeSTBIR(), data_fns=t.DATA_FNS)
plain = plain.run({'params': {}})
assert results == plain, (results, plain)
assert results['shoes/sketch+text/mAP'] == 0.875
print('OK')
'''


def test_batches_sharded_over_a_mesh_give_the_same_results():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS=_xla.flags(3),
             JAX_PLATFORMS='cpu', PYTHONPATH=root)
  proc = subprocess.run([sys.executable, '-c', MESH_SCRIPT], env=env, cwd=root,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  assert 'OK' in proc.stdout


def test_a_mode_ranks_only_the_queries_that_have_its_inputs():
  # q1 has no sketch (a photo with more texts than sketches), q2 no text: sketch mode ranks
  # q0, q2, q3, text mode q0, q1, q3, sketch+text only q0 and q3 (hand ranks above).
  def queries(config, dataset, split, batch_size):
    for batch in fake_queries(config, dataset, split, batch_size):
      if batch['instance'][0] == 10:
        batch['has_sketch'][1] = False
        batch['has_text'][2] = False
      yield batch

  data_fns = dict(DATA_FNS, eval_queries=queries)
  results = evaluate.make_evaluator('retrieval', _config(), FakeSTBIR(), data_fns=data_fns).run(
      {'params': {}})
  # q1's sketch-only query would be empty (all scores 0, rank 4); it is not a sketch query.
  for mode, ranks in {'sketch': [1, 4, 1], 'text': [1, 4, 1], 'sketch+text': [1, 1]}.items():
    expected = dict(_metrics(ranks), num_queries=len(ranks))
    for k, v in expected.items():
      assert results[f'shoes/{mode}/{k}'] == pytest.approx(v), (mode, k)


def test_a_mode_without_any_query_says_which_mode_to_remove():
  def queries(config, dataset, split, batch_size):
    for batch in fake_queries(config, dataset, split, batch_size):
      batch['has_text'][:] = False
      yield batch

  with pytest.raises(evaluate.EvaluatorError,
                     match=r"mode 'text'.*config.evals.retrieval.modes"):
    evaluate.make_evaluator('retrieval', _config(), FakeSTBIR(),
                            data_fns=dict(DATA_FNS, eval_queries=queries)).run({'params': {}})


def test_each_evaluator_reads_the_section_defaults_that_configs_are_built_with():
  assert sorted(evaluate.EVALUATORS) == sorted(eval_sections.SECTION_DEFAULTS)
  for name, evaluator in evaluate.EVALUATORS.items():
    assert evaluator.section_defaults is eval_sections.SECTION_DEFAULTS[name], name
  with pytest.raises(evaluate.EvaluatorError,
                     match=r"Unknown evaluator 'recall'.*"
                           r"valid evaluators: degradations, retrieval, robustness"):
    eval_sections.default_section('recall')


def test_building_every_config_variant_imports_no_jax():
  """Configs are data: loading one (a CLI's --config, a notebook's cell) must not pull in jax,
  flax or the models."""
  variants = [v for v in base.VARIANTS if v != 'demo_minilm']  # reads the bundled tokenizer
  script = ('import sys; from configs import base\n'
            f'for v in {variants!r}: base.get_config(v)\n'
            "print(sorted(m for m in ('jax', 'flax', 'stbir_jax.models', 'stbir_jax.evaluate') "
            'if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True,
                       cwd=pathlib.Path(__file__).parent.parent)
  assert out.stdout.strip() == '[]', out.stdout + out.stderr
