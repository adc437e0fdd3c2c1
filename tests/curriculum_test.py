"""Tests of stbir_jax.degradations and stbir_jax.curriculum: degradations remove exactly what they
should, the sampler follows the hand-computed schedule and weights."""

import math
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from stbir_jax import config_checks
from stbir_jax import curriculum as cu
from stbir_jax import degradations as dg

R, L = 16, 10
CLS, SEP = 101, 102
RED, LEATHER, SHOE, WITH, LACES = 2417, 5898, 10818, 2007, 17901


def bucket(name='b', drop=0.0, keep=1.0, jitter=0.0, thick=0, noise=0, words=0.0, vague=False,
           no_sketch=False, no_text=False, level=1):
  return dict(name=name, level=level, stroke_dropout=drop, keep_fraction=keep, jitter=jitter,
              thickness=thick, noise_strokes=noise, word_dropout=words, vague_text=vague,
              missing_sketch=no_sketch, missing_text=no_text)


NB, B = 5, 6  # every degrade test uses these shapes: eager ops compile once for the file


def table(*buckets):
  """Bucket 0 is clean, then the given ones, padded with clean buckets to NB."""
  buckets = [bucket('clean', level=0)] + list(buckets)
  buckets += [bucket('pad', level=0)] * (NB - len(buckets))
  return dg.buckets_from_config(buckets)


def stroke_map(num_strokes):
  """Stroke k is row 1 + k (columns 2..13): every id is visible and has 12 pixels."""
  m = np.zeros((R, R), np.uint8)
  for k in range(1, num_strokes + 1):
    m[1 + k, 2:14] = k
  return m


def make_batch(sketches, texts, has_sketch=None, has_text=None):
  """A batch of B rows: the given examples, then clean filler rows."""
  n = len(sketches)
  sketches = list(sketches) + [stroke_map(1)] * (B - n)
  texts = list(texts) + [[CLS, SEP]] * (B - n)
  pad = lambda v: None if v is None else list(v) + [True] * (B - n)
  has_sketch, has_text, b = pad(has_sketch), pad(has_text), B
  ids = np.zeros((b, L), np.int32)
  for i, t in enumerate(texts):
    ids[i, :len(t)] = t
  return dict(sketch=np.stack(sketches), text_ids=ids, text_mask=(ids > 0).astype(np.int32),
              has_sketch=np.ones(b, bool) if has_sketch is None else np.asarray(has_sketch),
              has_text=np.ones(b, bool) if has_text is None else np.asarray(has_text),
              instance=np.arange(b))


TEXT = [CLS, RED, LEATHER, SHOE, WITH, RED, LACES, SEP]
ATTR = np.asarray([RED, LEATHER], np.int32)


def run(buckets, batch, idx, key=0):
  idx = list(idx) + [0] * (B - len(idx))
  out = dg.degrade(jax.random.PRNGKey(key), batch, jnp.asarray(idx, jnp.int32), buckets,
                   attribute_ids=ATTR)
  return jax.tree.map(np.asarray, out)


def ids_of(m):
  return set(np.unique(m).tolist()) - {0}


# ------------------------------------------------------------------------------------ buckets


def test_buckets_from_base_config():
  cfg = base.get_config('smoke').curriculum
  b = dg.buckets_from_config(cfg.buckets)
  assert dg.bucket_names(cfg.buckets) == ['clean', 'mild', 'moderate', 'severe', 'no_sketch',
                                          'no_text']
  np.testing.assert_allclose(b.stroke_dropout, [0, 0.1, 0.25, 0.4, 0, 0])
  np.testing.assert_array_equal(b.noise_strokes, [0, 1, 2, 4, 0, 0])
  np.testing.assert_array_equal(b.level, [0, 1, 2, 3, 2, 2])
  np.testing.assert_array_equal(b.missing_sketch, [0, 0, 0, 0, 1, 0])
  assert b.thickness.dtype == np.int32 and b.vague_text.dtype == bool


@pytest.mark.parametrize('field,value,message', [
    ('stroke_dropout', 1.5, 'stroke_dropout=1.5; expected a probability'),
    ('keep_fraction', 0.0, "buckets[1] ('b').keep_fraction=0.0"),
    ('thickness', 1.5, 'thickness=1.5; expected an integer'),
    ('noise_strokes', 99, 'expected an integer in [0, 16]'),
    ('level', 1.0, 'level=1.0; expected an integer >= 0'),
    ('vague_text', 1, 'vague_text=1; expected True or False'),
    ('name', '', "buckets[1].name=''; expected a non-empty string"),
])
def test_bad_bucket_names_field(field, value, message):
  bad = bucket()
  bad[field] = value
  with pytest.raises(dg.CurriculumError, match=re.escape(message)):
    dg.check_buckets([bucket('clean', level=0), bad])
  missing = bucket()
  del missing['jitter']
  with pytest.raises(dg.CurriculumError, match="has no field 'jitter'"):
    dg.check_buckets([missing])


def test_attribute_words_cover_colour_pattern_material():
  for w in ('red', 'navy', 'beige', 'striped', 'polka', 'plaid', 'leather', 'suede', 'denim'):
    assert w in dg.ATTRIBUTE_WORDS
  assert len(set(dg.ATTRIBUTE_WORDS)) == len(dg.ATTRIBUTE_WORDS)
  # Bundled BERT vocab: 'red' is 2417, 'leather' 5898.
  assert {RED, LEATHER} <= set(dg.attribute_token_ids().tolist())


# ------------------------------------------------------------------------------- degradations


def test_clean_bucket_is_identity():
  batch = make_batch([stroke_map(5)] * 2, [TEXT, TEXT[:3] + [SEP]])
  out = run(table(), batch, [0, 0])
  for k in batch:
    np.testing.assert_array_equal(out[k], batch[k], err_msg=k)


def test_stroke_dropout_probability_one_keeps_only_outline_zero_keeps_all():
  m = stroke_map(6)
  out = run(table(bucket(drop=1.0), bucket(drop=0.0)), make_batch([m, m], [TEXT] * 2), [1, 2])
  np.testing.assert_array_equal(out['sketch'][0], np.where(m == 1, m, 0))
  np.testing.assert_array_equal(out['sketch'][1], m)
  assert out['has_sketch'][:2].tolist() == [True, True]


def test_stroke_dropout_removes_exactly_the_drawn_ids():
  m = stroke_map(12)
  key = 7
  out = run(table(bucket(drop=0.5)), make_batch([m, m], [TEXT] * 2), [1, 1], key=key)
  # Same key path as degrade: split(key, 4)[0] -> split(., B)[i] -> uniform (256,) per example.
  k_keep = jax.random.split(jax.random.split(jax.random.PRNGKey(key), 4)[0], B)
  for i in range(2):
    u = np.asarray(jax.random.uniform(k_keep[i], (256,)))
    expected = {k for k in range(1, 13) if u[k] >= 0.5}
    assert 0 < len(expected) < 12  # the key really exercises both outcomes
    assert ids_of(out['sketch'][i]) == expected
    np.testing.assert_array_equal(out['sketch'][i], np.where(np.isin(m, list(expected)), m, 0))


@pytest.mark.parametrize('n,fraction,kept', [(7, 0.5, 4), (10, 0.7, 7), (10, 0.9, 9),
                                             (3, 0.1, 1), (6, 1.0, 6)])
def test_partial_drawing_keeps_ids_up_to_ceil(n, fraction, kept):
  assert kept == math.ceil(round(fraction * n, 6))
  m = stroke_map(n)
  out = run(table(bucket(keep=fraction)), make_batch([m], [TEXT]), [1])
  np.testing.assert_array_equal(out['sketch'][0], np.where(m <= kept, m, 0))


def test_jitter_zero_is_identity_and_jitter_keeps_integer_ids():
  m = stroke_map(8)
  out = run(table(bucket(jitter=0.0, level=1), bucket(jitter=0.1)),
            make_batch([m, m], [TEXT] * 2), [1, 2], key=3)
  np.testing.assert_array_equal(out['sketch'][0], m)
  assert not np.array_equal(out['sketch'][1], m)
  assert ids_of(out['sketch'][1]) <= ids_of(m)
  assert out['sketch'].dtype == np.uint8


def test_thickness_dilates_single_pixel_to_block_with_same_id():
  m = np.zeros((R, R), np.uint8)
  m[7, 8] = 5
  out = run(table(bucket(thick=1), bucket(thick=2)), make_batch([m, m], [TEXT] * 2), [1, 2])
  one = np.zeros((R, R), np.uint8)
  one[6:9, 7:10] = 5
  two = np.zeros((R, R), np.uint8)
  two[5:10, 6:11] = 5
  np.testing.assert_array_equal(out['sketch'][0], one)
  np.testing.assert_array_equal(out['sketch'][1], two)


def test_noise_adds_exactly_k_new_stroke_ids():
  m = stroke_map(5)
  out = run(table(bucket(noise=3), bucket(noise=1)), make_batch([m, m], [TEXT] * 2), [1, 2],
            key=11)
  assert ids_of(out['sketch'][0]) == {1, 2, 3, 4, 5, 6, 7, 8}
  assert ids_of(out['sketch'][1]) == {1, 2, 3, 4, 5, 6}
  for i in range(2):
    s = out['sketch'][i]
    # Noise only draws new ids on top; every other pixel is untouched.
    np.testing.assert_array_equal(np.where(s <= 5, s, m), m)
    # Segments are short: each has at least 2 pixels and fewer than 0.3 * R * sqrt(2) + 2.
    for k in ids_of(s) - ids_of(m):
      assert 1 <= np.sum(s == k) <= int(0.3 * R * math.sqrt(2)) + 2


def test_word_dropout_one_leaves_cls_sep_and_zero_is_identity():
  batch = make_batch([stroke_map(2)] * 2, [TEXT] * 2)
  out = run(table(bucket(words=1.0), bucket(words=0.0)), batch, [1, 2])
  np.testing.assert_array_equal(out['text_ids'][0], [CLS, SEP] + [0] * (L - 2))
  np.testing.assert_array_equal(out['text_mask'][0], [1, 1] + [0] * (L - 2))
  np.testing.assert_array_equal(out['text_ids'][1], batch['text_ids'][1])
  np.testing.assert_array_equal(out['text_mask'][1], batch['text_mask'][1])


def test_word_dropout_compacts_the_surviving_words():
  out = run(table(bucket(words=0.5)), make_batch([stroke_map(2)], [TEXT]), [1], key=5)
  k_text = jax.random.split(jax.random.split(jax.random.PRNGKey(5), 4)[3], B)[0]
  u = np.asarray(jax.random.uniform(k_text, (L,)))
  expected = [t for j, t in enumerate(TEXT) if j in (0, len(TEXT) - 1) or u[j] >= 0.5]
  assert 2 < len(expected) < len(TEXT)
  n = len(expected)
  np.testing.assert_array_equal(out['text_ids'][0], expected + [0] * (L - n))
  np.testing.assert_array_equal(out['text_mask'][0], [1] * n + [0] * (L - n))


def test_vague_text_removes_exactly_attribute_tokens():
  out = run(table(bucket(vague=True)), make_batch([stroke_map(2)], [TEXT]), [1])
  expected = [CLS, SHOE, WITH, LACES, SEP]
  np.testing.assert_array_equal(out['text_ids'][0], expected + [0] * (L - 5))
  np.testing.assert_array_equal(out['text_mask'][0], [1] * 5 + [0] * (L - 5))


def test_missing_modality_flags_content_and_never_both():
  m = stroke_map(3)
  buckets = table(bucket(no_sketch=True), bucket(no_text=True),
                  bucket(no_sketch=True, no_text=True))
  batch = make_batch([m] * 5, [TEXT] * 5, has_sketch=[True, True, True, False, True],
                     has_text=[True, True, True, True, False])
  out = run(buckets, batch, [1, 2, 3, 2, 1])
  assert out['has_sketch'][:5].tolist() == [False, True, False, False, True]
  assert out['has_text'][:5].tolist() == [True, False, False, True, False]
  np.testing.assert_array_equal(out['sketch'][0], 0)
  np.testing.assert_array_equal(out['text_ids'][0], batch['text_ids'][0])
  np.testing.assert_array_equal(out['sketch'][1], m)
  np.testing.assert_array_equal(out['text_ids'][1], 0)
  np.testing.assert_array_equal(out['text_mask'][1], 0)
  np.testing.assert_array_equal(out['sketch'][2], 0)        # the bucket says both
  np.testing.assert_array_equal(out['text_mask'][2], 0)
  # Example 3 has no sketch: 'no_text' leaves its text. Example 4 has no text: sketch stays.
  np.testing.assert_array_equal(out['text_ids'][3], batch['text_ids'][3])
  np.testing.assert_array_equal(out['sketch'][4], m)


def test_mixed_batch_respects_each_examples_bucket():
  m = stroke_map(8)
  buckets = table(bucket(keep=0.5), bucket(words=1.0), bucket(no_text=True), bucket(thick=1))
  batch = make_batch([m] * 6, [TEXT] * 6)
  out = run(buckets, batch, [2, 0, 1, 3, 1, 4])
  np.testing.assert_array_equal(out['sketch'][0], m)                    # words=1
  np.testing.assert_array_equal(out['text_mask'][0], [1, 1] + [0] * (L - 2))
  for k in ('sketch', 'text_ids', 'text_mask', 'has_sketch', 'has_text'):  # clean
    np.testing.assert_array_equal(out[k][1], batch[k][1])
  for i in (2, 4):                                                       # keep=0.5
    np.testing.assert_array_equal(out['sketch'][i], np.where(m <= 4, m, 0))
    np.testing.assert_array_equal(out['text_ids'][i], batch['text_ids'][i])
  assert out['has_text'].tolist() == [True, True, True, False, True, True]  # no_text
  np.testing.assert_array_equal(out['sketch'][3], m)
  np.testing.assert_array_equal(out['text_mask'][3], 0)
  thick = out['sketch'][5]                                               # thick=1
  assert ids_of(thick) == ids_of(m) and np.sum(thick > 0) > np.sum(m > 0)
  np.testing.assert_array_equal(out['text_ids'][5], batch['text_ids'][5])
  np.testing.assert_array_equal(out['instance'], batch['instance'])


def _jit_check(buckets, traced_table):
  batch = make_batch([stroke_map(6)] * 6, [TEXT] * 6)
  idx = jnp.arange(6, dtype=jnp.int32) % len(buckets.level)
  if traced_table:
    fn = jax.jit(lambda k, b, i, t: dg.degrade(k, b, i, t, attribute_ids=ATTR))
    call = lambda key: fn(jax.random.PRNGKey(key), batch, idx, jax.tree.map(jnp.asarray, buckets))
  else:
    fn = jax.jit(lambda k, b, i: dg.degrade(k, b, i, buckets, attribute_ids=ATTR))
    call = lambda key: fn(jax.random.PRNGKey(key), batch, idx)
  a = call(2)
  for k in ('sketch', 'text_ids', 'text_mask', 'has_sketch', 'has_text'):
    assert a[k].shape == batch[k].shape and a[k].dtype == batch[k].dtype, k
  # Determinism: same key, same result; another key, other draws.
  b = call(2)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['sketch'], call(3)['sketch'])
  return jax.tree.map(np.asarray, a)


def test_degrade_under_jit_with_static_shapes():
  buckets = dg.buckets_from_config(base.get_config('smoke').curriculum.buckets)
  a = _jit_check(buckets, traced_table=False)
  assert a['has_sketch'].tolist() == [True, True, True, True, False, True]
  assert a['has_text'].tolist() == [True, True, True, True, True, False]
  np.testing.assert_array_equal(a['sketch'][0], stroke_map(6))
  severe = ids_of(a['sketch'][3])  # at most 3 strokes kept, then 4 spurious ones on top
  assert set(range(max(severe) - 3, max(severe) + 1)) <= severe and max(severe) <= 7
  np.testing.assert_array_equal(a['text_ids'][3][:1], [CLS])
  assert RED not in a['text_ids'][3] and LEATHER not in a['text_ids'][3]


@pytest.mark.slow
def test_degrade_under_jit_with_traced_bucket_table():
  # A traced table falls back to the static caps (16 noise slots, 8 dilations).
  buckets = dg.buckets_from_config(base.get_config('smoke').curriculum.buckets)
  a = _jit_check(buckets, traced_table=False)
  b = _jit_check(buckets, traced_table=True)
  for k in ('text_ids', 'text_mask', 'has_sketch', 'has_text'):
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  for i in (0, 4, 5):  # buckets without spurious strokes draw the same
    np.testing.assert_array_equal(a['sketch'][i], b['sketch'][i])
  severe = ids_of(b['sketch'][3])
  assert set(range(max(severe) - 3, max(severe) + 1)) <= severe and max(severe) <= 7


def test_degrade_queries_one_bucket_from_config_list_and_channel_axis():
  cfg = ml_collections.ConfigDict(dict(buckets=[bucket('clean', level=0),
                                                bucket('partial', keep=0.5)]))
  m = stroke_map(6)
  batch = make_batch([m] * B, [TEXT] * B)
  batch['sketch'] = batch['sketch'][..., None]
  out = dg.degrade_queries(jax.random.PRNGKey(0), batch, 1, cfg.buckets)
  assert out['sketch'].shape == (B, R, R, 1)
  for i in range(B):
    np.testing.assert_array_equal(out['sketch'][i, ..., 0], np.where(m <= 3, m, 0))
  with pytest.raises(dg.CurriculumError, match='bucket_index=2; expected 0..1'):
    dg.degrade_queries(jax.random.PRNGKey(0), batch, 2, cfg.buckets)


def test_all_but_one_degradation_undoes_one_field_each_and_keeps_the_other_draws():
  moderate = bucket('moderate', drop=0.25, jitter=0.06, noise=2, words=0.25, level=2)
  variants = dg.all_but_one_degradation(moderate)
  values = dict(moderate, name=None)
  assert [f for f, _ in variants] == ['stroke_dropout', 'jitter', 'noise_strokes', 'word_dropout']
  assert variants[1] == ('jitter', dict(values, name='moderate.no_jitter', jitter=0.0))
  assert variants[3] == ('word_dropout',
                         dict(values, name='moderate.no_word_dropout', word_dropout=0.0))
  assert dg.all_but_one_degradation(bucket('no_text', no_text=True)) == []
  # moderate without its jitter: the same strokes dropped and added, the same words dropped, as
  # the whole bucket draws them; only the jitter's move is missing.
  table = [bucket('clean', level=0), moderate]
  table += [b for _, b in variants]
  batch = make_batch([stroke_map(6)] * B, [TEXT] * B)
  key = jax.random.PRNGKey(3)
  whole = dg.degrade_queries(key, batch, 1, table)
  no_jitter = dg.degrade_queries(key, batch, 3, table)
  np.testing.assert_array_equal(no_jitter['text_ids'], whole['text_ids'])
  assert not np.array_equal(no_jitter['sketch'], whole['sketch'])
  by_hand = bucket('by_hand', drop=0.25, noise=2, words=0.25, level=2)
  expected = dg.degrade_queries(key, batch, 2, table[:2] + [by_hand])
  for k in expected:
    np.testing.assert_array_equal(no_jitter[k], expected[k], err_msg=k)
  # Undoing the word dropout leaves the text as drawn and the sketch as the whole bucket's.
  no_words = dg.degrade_queries(key, batch, 5, table)
  np.testing.assert_array_equal(no_words['sketch'], whole['sketch'])
  np.testing.assert_array_equal(no_words['text_ids'], batch['text_ids'])


def test_single_degradations_apply_one_field_each_and_keep_the_bucket_draws():
  moderate = bucket('moderate', drop=0.25, jitter=0.06, noise=2, words=0.25, level=2)
  singles = dg.single_degradations(moderate)
  clean = dict(bucket('x', level=2), name=None)
  assert singles == [
      ('stroke_dropout', dict(clean, name='moderate.stroke_dropout', stroke_dropout=0.25)),
      ('jitter', dict(clean, name='moderate.jitter', jitter=0.06)),
      ('noise_strokes', dict(clean, name='moderate.noise_strokes', noise_strokes=2)),
      ('word_dropout', dict(clean, name='moderate.word_dropout', word_dropout=0.25))]
  # One degradation (or none): the bucket is its own breakdown.
  assert dg.single_degradations(bucket('no_text', no_text=True)) == []
  assert dg.single_degradations(bucket('clean', level=0)) == []
  # Appended to the table, the singles leave the bucket's draws as they were.
  table = [bucket('clean', level=0), moderate, bucket('no_text', no_text=True)]
  batch = make_batch([stroke_map(6)] * B, [TEXT] * B)
  key = jax.random.PRNGKey(3)
  alone = dg.degrade_queries(key, batch, 1, table)
  extended = dg.degrade_queries(key, batch, 1, table + [b for _, b in singles])
  for k in alone:
    np.testing.assert_array_equal(alone[k], extended[k], err_msg=k)
  # moderate.word_dropout changes the text only.
  words_only = dg.degrade_queries(key, batch, 6, table + [b for _, b in singles])
  np.testing.assert_array_equal(words_only['sketch'], batch['sketch'])
  assert not np.array_equal(words_only['text_mask'], batch['text_mask'])


def test_clean_buckets_are_those_without_any_degradation_whatever_their_name_or_level():
  buckets = dg.buckets_from_config([
      bucket('clean', level=0), bucket('renamed_clean', level=3), bucket('mild', words=0.1),
      bucket('no_text', no_text=True, level=0), bucket('thick', thick=1, level=0)])
  assert dg.clean_buckets(buckets).tolist() == [True, True, False, False, False]


# ------------------------------------------------------------------------------------ sampler


def _smoke_with(**curriculum):
  config = base.get_config('smoke')
  config.curriculum.update(curriculum)
  return config


def ccfg(**kw):
  c = dict(kind='self_paced', competence_start=0.25, competence_steps=100, ema=0.9,
           temperature=1.0, min_weight=0.05, clean_share=0.0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


LEVELS = table(bucket(level=1), bucket(level=2), bucket(level=3), bucket(level=2))  # 0,1,2,3,2


def test_competence_sqrt_schedule():
  c = ccfg()
  expect = {0: 0.25, 25: math.sqrt(0.25 * 0.9375 + 0.0625), 50: math.sqrt(0.53125),
            99: math.sqrt(0.99 * 0.9375 + 0.0625), 100: 1.0, 500: 1.0}
  for step, value in expect.items():
    np.testing.assert_allclose(float(cu.competence(step, 1000, c)), value, rtol=1e-6)
  # competence_steps=0: half the run (total 400 -> 200 steps).
  np.testing.assert_allclose(float(cu.competence(100, 400, ccfg(competence_steps=0))),
                             math.sqrt(0.5 * 0.9375 + 0.0625), rtol=1e-6)
  traced = jax.jit(lambda s: cu.competence(s, 1000, c))(jnp.int32(50))
  np.testing.assert_allclose(float(traced), math.sqrt(0.53125), rtol=1e-6)


def test_admitted_set_grows():
  c = ccfg()
  # levels / 3: 0, .333, .667, 1, .667. Competence 0.25 -> clean; c(t) >= 1/3 from
  # t = 100 (1/9 - 1/16) / 0.9375 = 5.19 -> step 6; >= 2/3 from step 40.7 -> 41; 1 at 100.
  expect = {0: [1, 0, 0, 0, 0], 5: [1, 0, 0, 0, 0], 6: [1, 1, 0, 0, 0], 40: [1, 1, 0, 0, 0],
            41: [1, 1, 1, 0, 1], 99: [1, 1, 1, 0, 1], 100: [1, 1, 1, 1, 1]}
  for step, mask in expect.items():
    assert np.asarray(cu.admitted(step, 1000, LEVELS, c)).astype(int).tolist() == mask, step


def test_a_curriculum_that_never_admits_a_degraded_bucket_is_refused():
  """Every degraded bucket at one level makes level / max level 1 for each; with competence_steps
  beyond the run, competence stays below it and the run would train on clean queries only."""
  as_config = lambda *bs: [ml_collections.ConfigDict(b) for b in bs]
  levels = as_config(bucket('clean', level=0), bucket('mild', level=1), bucket('severe', level=1))
  never = _smoke_with(buckets=levels, competence_steps=10 ** 8)
  never.train.num_steps = 2712
  # c(2711) = sqrt(2711 * 0.9375 / 1e8 + 0.0625) = 0.2501 < 1
  with pytest.raises(config_checks.ConfigError, match=re.escape(
      'admits no degraded bucket in 2712 steps: its competence reaches 0.25 (competence_start'
      '=0.25, competence_steps=100000000), and its easiest bucket needs level / max level = 1 '
      '(levels [0, 1, 1])')):
    config_checks.validate_config(never)
  # The same run admits its buckets when one is held out at a higher level, when competence
  # grows within the run, or when the kind does not follow competence.
  held_out = as_config(bucket('clean', level=0), bucket('mild', level=1),
                       bucket('severe', level=100))
  for fix in (dict(buckets=held_out), dict(competence_steps=0), dict(kind='uniform'),
              dict(kind='none')):
    config = _smoke_with(buckets=levels, competence_steps=10 ** 8)
    config.train.num_steps = 2712
    config.curriculum.update(fix)
    config_checks.validate_config(config)
  # Competence 1/3 reached at step 6 of 100 (test_admitted_set_grows): 7 steps admit, 6 do not.
  thirds = as_config(bucket('clean', level=0), bucket('b', level=1), bucket('c', level=3))
  for steps, admits in ((7, True), (6, False)):
    config = _smoke_with(buckets=thirds, competence_steps=100)
    config.train.num_steps = steps
    if admits:
      config_checks.validate_config(config)
    else:
      with pytest.raises(config_checks.ConfigError, match='in 6 steps: its competence reaches'):
        config_checks.validate_config(config)


def test_probs_none_uniform_competence():
  state = cu.init_state(5)
  np.testing.assert_array_equal(cu.bucket_probs(state, 50, 1000, LEVELS, ccfg(kind='none')),
                                [1, 0, 0, 0, 0])
  np.testing.assert_allclose(cu.bucket_probs(state, 0, 1000, LEVELS, ccfg(kind='uniform')),
                             [0.2] * 5)
  np.testing.assert_allclose(cu.bucket_probs(state, 0, 1000, LEVELS, ccfg(kind='competence')),
                             [1, 0, 0, 0, 0])
  np.testing.assert_allclose(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(kind='competence')),
                             [0.25, 0.25, 0.25, 0, 0.25])
  # Checked when the config is validated, not while the step is traced.
  with pytest.raises(cu.CurriculumError, match="kind='random'; valid: none, uniform"):
    cu.check_config(ccfg(kind='random', buckets=[bucket('clean', level=0)]))
  with pytest.raises(config_checks.ConfigError, match="curriculum.kind='random'; valid: none"):
    config_checks.check_fields(_smoke_with(kind='random'))


def test_self_paced_softmax_with_floor():
  state = cu.CurriculumState(weights=jnp.zeros(5), ema_loss=jnp.asarray([0.0, 4.0, 0.0, 9.0, 1.5]),
                             seen=jnp.asarray([3.0, 2.0, 1.0, 1.0, 4.0]))
  # Step 41: buckets 0, 1, 2, 4 admitted (bucket 3's EMA must not matter).
  p = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg()))
  e = [1.0, math.exp(4.0), 1.0, math.exp(1.5)]
  s = [v / sum(e) for v in e]                   # 0.0164, 0.8939, 0.0164, 0.0734
  w = [max(v, 0.05) for v in s]
  expected = [w[0] / sum(w), w[1] / sum(w), w[2] / sum(w), 0.0, w[3] / sum(w)]
  np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-7)
  assert p[1] > p[4] > p[0] and p[0] == p[2] and p[3] == 0
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
  # Temperature 2 flattens: softmax(ema / 2), all above the floor.
  p2 = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(temperature=2.0)))
  e2 = [1.0, math.exp(2.0), 1.0, math.exp(0.75)]
  np.testing.assert_allclose(p2[[0, 1, 2, 4]], [v / sum(e2) for v in e2], rtol=1e-5)


def test_clean_share_keeps_that_fraction_clean_and_spreads_the_rest_by_the_kind():
  state = cu.CurriculumState(weights=jnp.zeros(5), ema_loss=jnp.asarray([0.0, 4.0, 0.0, 9.0, 1.5]),
                             seen=jnp.asarray([3.0, 2.0, 1.0, 1.0, 4.0]))
  for kind in ('uniform', 'competence', 'self_paced'):
    rule = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(kind=kind)))
    p = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(kind=kind, clean_share=0.5)))
    np.testing.assert_allclose(p, 0.5 * np.eye(5)[0] + 0.5 * rule, rtol=1e-6)
  # Competence at step 41 admits 4 buckets: clean 0.6 + 0.4 / 4, the others 0.1 each.
  np.testing.assert_allclose(
      cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(kind='competence', clean_share=0.6)),
      [0.7, 0.1, 0.1, 0.0, 0.1], rtol=1e-6)
  # Self-paced: the hard bucket 1 no longer takes 89% of the batch.
  p = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(clean_share=0.5)))
  assert p[0] > 0.5 and p[1] < 0.5
  assert np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg(kind='none', clean_share=0.3))
                    ).tolist() == [1, 0, 0, 0, 0]
  with pytest.raises(config_checks.ConfigError,
                     match=re.escape('clean_share=1.5; expected a number >= 0 and <= 1')):
    config_checks.check_fields(_smoke_with(clean_share=1.5))


def test_self_paced_unseen_bucket_counts_as_hardest_seen():
  state = cu.CurriculumState(weights=jnp.zeros(5), ema_loss=jnp.asarray([1.0, 2.0, 0.0, 0, 0]),
                             seen=jnp.asarray([5.0, 5.0, 0.0, 0, 0]))
  p = np.asarray(cu.bucket_probs(state, 41, 1000, LEVELS, ccfg()))
  e = [math.exp(1.0), math.exp(2.0), math.exp(2.0), math.exp(2.0)]
  np.testing.assert_allclose(p, [e[0] / sum(e), e[1] / sum(e), e[2] / sum(e), 0,
                                 e[3] / sum(e)], rtol=1e-5)
  # Nothing seen yet: uniform over admitted.
  np.testing.assert_allclose(cu.bucket_probs(cu.init_state(5), 41, 1000, LEVELS, ccfg()),
                             [0.25, 0.25, 0.25, 0, 0.25], rtol=1e-6)


def test_update_ema_over_two_steps():
  c = ccfg(ema=0.9)
  s0 = cu.init_state(3)
  probs1 = jnp.asarray([0.5, 0.5, 0.0])
  s1 = cu.update(s0, jnp.asarray([0, 0, 1, 1]), jnp.asarray([1.0, 3.0, 4.0, 6.0]), probs1, c)
  # First sighting initialises: bucket 0 mean 2, bucket 1 mean 5; bucket 2 unseen.
  np.testing.assert_allclose(s1.ema_loss, [2.0, 5.0, 0.0])
  np.testing.assert_allclose(s1.seen, [2, 2, 0])
  np.testing.assert_allclose(s1.weights, probs1)
  probs2 = jnp.asarray([0.2, 0.3, 0.5])
  s2 = jax.jit(lambda s, i, losses, p: cu.update(s, i, losses, p, c))(
      s1, jnp.asarray([0, 2, 2, 0]), jnp.asarray([4.0, 1.0, 2.0, 6.0]), probs2)
  # Bucket 0: 0.9 * 2 + 0.1 * 5 = 2.3; bucket 1 keeps 5; bucket 2 first seen: 1.5.
  np.testing.assert_allclose(s2.ema_loss, [2.3, 5.0, 1.5], rtol=1e-6)
  np.testing.assert_allclose(s2.seen, [4, 2, 2])
  np.testing.assert_allclose(s2.weights, probs2)


def test_sample_buckets_deterministic_and_follows_probs():
  probs = jnp.asarray([0.5, 0.0, 0.3, 0.2])
  a = cu.sample_buckets(jax.random.PRNGKey(0), probs, 4000)
  b = cu.sample_buckets(jax.random.PRNGKey(0), probs, 4000)
  assert a.dtype == jnp.int32 and a.shape == (4000,)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, cu.sample_buckets(jax.random.PRNGKey(1), probs, 4000))
  freq = np.bincount(np.asarray(a), minlength=4) / 4000
  assert freq[1] == 0
  np.testing.assert_allclose(freq, probs, atol=0.03)


def test_sampler_jits_with_traced_step():
  cfg = base.get_config('smoke').curriculum
  buckets = dg.buckets_from_config(cfg.buckets)

  @jax.jit
  def step(state, step, key):
    probs = cu.bucket_probs(state, step, 6, buckets, cfg)
    idx = cu.sample_buckets(key, probs, 8)
    return cu.update(state, idx, jnp.ones(8), probs, cfg), idx

  state = cu.init_state(6)
  state, idx = step(state, jnp.int32(0), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(idx, 0)  # step 0: only 'clean' admitted
  np.testing.assert_allclose(state.weights, [1, 0, 0, 0, 0, 0])
  state, idx = step(state, jnp.int32(3), jax.random.PRNGKey(1))
  assert np.all(np.asarray(state.weights) > 0)  # competence 1 at half the run


def test_warp_pairs_scales_and_rotates_photo_and_sketch_together():
  r = 9
  rng = np.random.default_rng(0)
  sketch = rng.integers(0, 4, (2, r, r)).astype(np.uint8)
  image = np.stack([sketch, sketch + 10, np.full_like(sketch, 50)], -1)   # channel 0 = the sketch
  batch = {'image': image, 'sketch': sketch, 'instance': np.arange(2)}
  key = jax.random.PRNGKey(5)
  out = dg.warp_pairs(key, batch, 0.1)   # scale 1 +- 0.1, rotation +- 18 degrees
  keys = jax.random.split(key, (2, 2))
  c = (r - 1) / 2
  for b in range(2):
    scale = 1 + float(jax.random.uniform(keys[b, 0], (), minval=-1.0, maxval=1.0)) * 0.1
    angle = float(jax.random.uniform(keys[b, 1], (), minval=-1.0, maxval=1.0)) * 0.1 * np.pi
    assert abs(scale - 1) > 1e-3 and abs(angle) > 1e-3
    want_sketch, want_image = np.zeros((r, r), np.uint8), np.zeros((r, r, 3), np.uint8)
    for y in range(r):
      for x in range(r):   # the inverse map, by hand: output pixel -> nearest source pixel
        sy = round(c + (np.cos(angle) * (y - c) + np.sin(angle) * (x - c)) / scale)
        sx = round(c + (-np.sin(angle) * (y - c) + np.cos(angle) * (x - c)) / scale)
        if 0 <= sy < r and 0 <= sx < r:
          want_sketch[y, x] = sketch[b, sy, sx]
        want_image[y, x] = image[b, min(max(sy, 0), r - 1), min(max(sx, 0), r - 1)]
    np.testing.assert_array_equal(out['sketch'][b], want_sketch)
    np.testing.assert_array_equal(out['image'][b], want_image)   # the edge repeats
  assert not np.array_equal(out['sketch'], sketch)
  assert out['instance'] is batch['instance'] and out['sketch'].dtype == np.uint8
  assert dg.warp_pairs(key, batch, 0.0) is batch


def test_shift_pairs_moves_photo_and_sketch_together():
  r = 8
  image = np.arange(2 * r * r * 3, dtype=np.int32).reshape(2, r, r, 3).astype(np.uint8)
  sketch = np.zeros((2, r, r), np.uint8)
  sketch[:, 3, 4] = 5
  batch = {'image': image, 'sketch': sketch, 'instance': np.arange(2)}
  key = jax.random.PRNGKey(3)
  out = dg.shift_pairs(key, batch, 0.25)   # up to 2 pixels each way
  offsets = np.asarray(jax.random.randint(key, (2, 2), -2, 3))   # the draws it makes
  assert np.any(offsets != 0)
  for b, (dy, dx) in enumerate(offsets):
    ys, xs = np.clip(np.arange(r) - dy, 0, r - 1), np.clip(np.arange(r) - dx, 0, r - 1)
    np.testing.assert_array_equal(out['image'][b], image[b][ys[:, None], xs[None, :]])
    want = np.zeros((r, r), np.uint8)
    want[3 + dy, 4 + dx] = 5                   # the stroke moved with the photo
    np.testing.assert_array_equal(out['sketch'][b], want)
  assert out['instance'] is batch['instance'] and out['sketch'].dtype == np.uint8
  # A stroke moved out of the frame leaves background, not the edge's pixels.
  edge = dict(batch, sketch=np.full((2, r, r), 7, np.uint8))
  moved = np.asarray(dg.shift_pairs(key, edge, 0.25)['sketch'])
  assert (moved == 0).sum() == sum((r * r - (r - abs(dy)) * (r - abs(dx))) for dy, dx in offsets)
  assert dg.shift_pairs(key, batch, 0.01) is batch   # under half a pixel: unchanged
  # sketch_later: the same photos, the sketch where it was drawn, and its offset for later.
  later = dg.shift_pairs(key, batch, 0.25, sketch_later=True)
  np.testing.assert_array_equal(later['image'], out['image'])
  assert later['sketch'] is batch['sketch']
  np.testing.assert_array_equal(later['sketch_shift'], offsets.astype(np.float32))
  none = dg.shift_pairs(key, batch, 0.01, sketch_later=True)
  assert none['image'] is batch['image']
  np.testing.assert_array_equal(none['sketch_shift'], np.zeros((2, 2), np.float32))
