"""The jitted train step on a tiny model: it overfits a few examples to Acc@1 = 1, skips
non-finite updates and the loop then stops naming the step."""

import dataclasses

import jax
import ml_collections
import numpy as np
import optax
import pytest

import _tiny
from stbir_jax import config_checks, losses, metrics, sharding, stages, train, train_step
from stbir_jax.models import aligner, stbir
from stbir_jax.models.stbir import STBIR


def test_tiny_model_overfits_to_acc1_of_one():
  batch = _tiny.random_batch(_tiny.tiny_config())
  b = batch['instance'].shape[0]
  _, model, state, history = _tiny.fit(batch)
  assert history[-1] < 0.25 * history[0]

  variables = stbir.model_variables(state.params)
  q = model.apply(variables, batch['sketch'], batch['text_ids'], batch['text_mask'],
                  batch['has_sketch'], batch['has_text'], method=STBIR.encode_query)
  g = model.apply(variables, batch['image'], method=STBIR.encode_gallery)
  ranks = metrics.ranks(np.asarray(q @ g.T), np.arange(b))
  assert metrics.retrieval_metrics(ranks)['acc@1'] == 1.0


def test_single_modality_loss_makes_each_side_retrieve_on_its_own():
  config, _, state, step = _tiny.setup(('contrastive', 'single_modality'))
  batch = _tiny.random_batch(config)
  _, m = step(state, batch)
  assert set(k for k in m if k.startswith('loss/')) == {'loss/contrastive',
                                                        'loss/single_modality'}
  _, model, state, _ = _tiny.fit(batch, ('contrastive', 'single_modality'))
  variables = stbir.model_variables(state.params)
  g = model.apply(variables, batch['image'], method=STBIR.encode_gallery)
  none = np.zeros_like(batch['has_sketch'])
  for has_sketch, has_text in ((batch['has_sketch'], none), (none, batch['has_text'])):
    q = model.apply(variables, batch['sketch'], batch['text_ids'], batch['text_mask'],
                    has_sketch, has_text, method=STBIR.encode_query)
    ranks = metrics.ranks(np.asarray(q @ g.T), np.arange(len(g)))
    assert metrics.retrieval_metrics(ranks)['acc@1'] == 1.0


class _NoCheckpoints:
  def wait(self):
    pass

  def all_steps(self):
    return []


def test_non_finite_update_is_skipped_and_named():
  config, _, state, step = _tiny.setup()
  poisoned = dict(state.params)
  poisoned['photo'] = jax.tree.map(lambda x: x * np.nan, state.params['photo'])
  state = state.replace(params=poisoned)
  new, metrics = step(state, _tiny.random_batch(config))
  assert float(metrics['finite']) == 0.0
  assert int(new.first_bad_step) == 0 and int(new.skipped_steps) == 1
  # The update was skipped: every parameter and the optimiser state are unchanged.
  for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                  jax.tree.leaves((new.params, new.opt_state)), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FloatingPointError, match='at step 0; .* no checkpoint exists'):
    train._check_finite(config, new, _NoCheckpoints())  # pylint: disable=protected-access
  config.train.nan_policy = 'skip'
  train._check_finite(config, new, _NoCheckpoints())  # pylint: disable=protected-access
  config.train.nan_policy = 'stop'


def test_frozen_groups_stay_bit_identical():
  config, model, state, _ = _tiny.setup()
  constants = train_step.make_constants(config, ['thing'])
  photo_only = stages.Stage(0, 'photo_refine', 0, config.train.num_steps, ('photo',),
                            ('contrastive',), 'sketch', 1.0)
  step = jax.jit(train_step.make_step_fn(config, model, photo_only, constants,
                                         config.train.num_steps))
  new, _ = step(state, _tiny.random_batch(config))
  for group in stages.MODEL_GROUPS:
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree.leaves(state.params[group]), jax.tree.leaves(new.params[group]),
                   strict=True))
    assert same == (group != 'photo'), group


@pytest.mark.slow   # ~1.5 minutes on 2 cores
def test_group_lr_scale_multiplies_that_groups_update_only():
  config, model, state, _ = _tiny.setup()
  constants = train_step.make_constants(config, ['thing'])
  stage = stages.build_stages(config)[0]
  batch = _tiny.random_batch(config)

  def delta(text_scale):
    c = ml_collections.ConfigDict(config.to_dict())
    c.optim.group_lr_scale.text = text_scale
    new, _ = jax.jit(train_step.make_step_fn(c, model, stage, constants, c.train.num_steps))(
        state, batch)
    return {g: jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new.params[g],
                            state.params[g]) for g in ('text', 'photo')}

  full, half = delta(1.0), delta(0.5)
  for a, b in zip(jax.tree.leaves(full['text']), jax.tree.leaves(half['text']), strict=True):
    # Deltas (~3e-4) are read back as new - old params: float32 rounding of params ~0.5 is 6e-8.
    np.testing.assert_allclose(b, 0.5 * a, rtol=1e-5, atol=1.2e-7)
  assert max(float(np.abs(a).max()) for a in jax.tree.leaves(full['text'])) > 0
  for a, b in zip(jax.tree.leaves(full['photo']), jax.tree.leaves(half['photo']), strict=True):
    np.testing.assert_array_equal(a, b)


def test_group_lr_scale_names_a_parameter_group():
  config = _tiny.tiny_config()
  config.optim.group_lr_scale.text = -1.0
  with pytest.raises(config_checks.ConfigError,
                     match=r'group_lr_scale.text=-1.0; expected a scale'):
    config_checks.validate_config(config)


def test_clean_triplet_queries_drop_degraded_and_modality_dropped_anchors():
  """loss.triplet_queries='clean': the triplet term over every query when all are clean, 0 when
  every query is degraded (a bucket is clean by its fields, not its position) or loses a
  modality."""
  config, model, state, _ = _tiny.setup()
  batch = _tiny.random_batch(config)
  stage = stages.build_stages(config)[0]

  def terms(queries, buckets=None, dropout=0.0):
    c = ml_collections.ConfigDict(config.to_dict())
    c.loss.triplet_queries = queries
    c.train.modality_dropout = dropout
    if buckets is not None:
      c.curriculum.buckets = buckets
    constants = train_step.make_constants(c, ['thing'])
    _, m = jax.jit(train_step.make_step_fn(c, model, stage, constants, c.train.num_steps))(
        state, batch)
    return float(m['loss/triplet']), float(m['loss/contrastive'])

  every, contrastive = terms('all')
  assert every > 0.0
  np.testing.assert_allclose(terms('clean'), (every, contrastive), rtol=1e-6)
  mild = [dict(config.curriculum.buckets[1].to_dict())]        # 'mild' as the only bucket
  assert mild[0]['name'] == 'mild'
  triplet, contrastive_mild = terms('clean', buckets=mild)
  assert triplet == 0.0 and contrastive_mild > 0.0
  # p = 0.5 drops the sketch (u < .5) or the text (.5 <= u < 1) of every query.
  assert terms('clean', dropout=0.5)[0] == 0.0


def test_gallery_from_clean_queries_keeps_degraded_queries_off_the_gallery_side():
  """loss.gallery_from_clean_queries: the loss and the query side's gradients are unchanged; the
  photo tower's gradient is unchanged when every query is clean and exactly 0 when none is."""
  config, model, state, _ = _tiny.setup(('contrastive', 'single_modality'))
  batch = _tiny.random_batch(config)
  stage = stages.build_stages(config)[0]
  constants = train_step.make_constants(config, ['thing'])

  def value_and_grad(on, clean=None):
    c = ml_collections.ConfigDict(config.to_dict())
    c.loss.gallery_from_clean_queries = on
    b = dict(batch) if clean is None else dict(batch, query_clean=clean)
    (loss, _), grads = jax.jit(train_step.make_value_and_grad(c, model, stage, constants))(
        state.params, b)
    return float(loss), grads

  b = batch['instance'].shape[0]
  loss, grads = value_and_grad(False)
  assert 'photo' in grads and optax.global_norm(grads['photo']) > 0
  close = lambda x, y: jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4,
                                                                            atol=1e-7), x, y)
  every_loss, every = value_and_grad(True, np.ones(b, bool))
  np.testing.assert_allclose(every_loss, loss, rtol=1e-6)
  close(every, grads)
  none_loss, none = value_and_grad(True, np.zeros(b, bool))
  np.testing.assert_allclose(none_loss, loss, rtol=1e-6)
  assert float(optax.global_norm(none['photo'])) == 0.0
  close({k: v for k, v in none.items() if k != 'photo'},
        {k: v for k, v in grads.items() if k != 'photo'})
  half_loss, half = value_and_grad(True, np.arange(b) % 2 == 0)
  np.testing.assert_allclose(half_loss, loss, rtol=1e-6)
  half_norm = float(optax.global_norm(half['photo']))
  assert 0.0 < half_norm and abs(half_norm - float(optax.global_norm(grads['photo']))) > 1e-6


def _consistency_config(config, weight=1.0):
  c = ml_collections.ConfigDict(config.to_dict())
  c.loss.consistency = weight
  return c


def test_consistency_pulls_the_degraded_sketch_towards_its_clean_query_held_fixed():
  """The term is 1 - cos(sketch-only query of the degraded sketch, that of the clean sketch) over
  the degraded rows, and its gradient reaches the towers through the degraded query only."""
  config, model, state, _ = _tiny.setup()
  config = _consistency_config(config)
  config.loss.contrastive = config.loss.triplet = 0.0   # the consistency term alone
  stage = stages.build_stages(config)[0]
  batch = _tiny.random_batch(config)
  batch['sketch_clean'] = np.roll(batch['sketch'], 3, axis=2)
  batch['sketch_degraded'] = np.arange(8) % 3 != 0
  constants = train_step.make_constants(config, ['thing'])
  (_, (terms, _, _)), grads = jax.jit(train_step.make_value_and_grad(
      config, model, stage, constants))(state.params, batch)

  def reference(params):
    sketch_only = lambda sketch: model.apply(
        stbir.model_variables(params), sketch, batch['text_ids'], batch['text_mask'],
        batch['has_sketch'], np.zeros(8, bool), method=STBIR.encode_query)
    q, target = sketch_only(batch['sketch']), jax.lax.stop_gradient(
        sketch_only(batch['sketch_clean']))
    cos = (q * target).sum(-1)
    w = batch['sketch_degraded']
    return ((1.0 - cos) * w).sum() / w.sum()

  want, want_grads = jax.value_and_grad(reference)(state.params)
  assert float(want) > 1e-3   # random sketches look alike to an untrained tower
  np.testing.assert_allclose(float(terms['consistency']), float(want), rtol=0, atol=1e-6)
  _assert_same_grads(want_grads, grads, min_norm=1e-4)


def _assert_same_grads(want, got, min_norm):
  """Each leaf of `got` equals `want`'s to 1e-5 of want's global norm (> min_norm: not 0)."""
  norm = float(optax.global_norm(want))
  assert norm > min_norm
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got),
                          strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5 * norm,
                               err_msg=jax.tree_util.keystr(path))


def test_consistency_term_counts_only_sketches_a_bucket_degraded():
  """In the step: 0 when every query is clean, > 0 when each is degraded ('mild'), absent when
  its weight is 0; not trained in a stage whose queries have no sketch."""
  config, model, state, _ = _tiny.setup()
  batch = _tiny.random_batch(config)

  def term(buckets, weight=1.0):
    c = _consistency_config(config, weight)
    c.curriculum.buckets = buckets
    stage = stages.build_stages(c)[0]
    constants = train_step.make_constants(c, ['thing'])
    _, m = jax.jit(train_step.make_step_fn(c, model, stage, constants, c.train.num_steps))(
        state, batch)
    return None if 'loss/consistency' not in m else float(m['loss/consistency'])

  clean, mild = ([dict(config.curriculum.buckets[i].to_dict())] for i in (0, 1))
  assert (clean[0]['name'], mild[0]['name']) == ('clean', 'mild')
  assert term(clean) == 0.0
  assert term(mild) > 0.0
  assert term(mild, weight=0.0) is None
  # A stage of text-only queries has no sketch to pull (decided before any step is built).
  with_term = _consistency_config(config)
  text_stage = dataclasses.replace(stages.build_stages(with_term)[0], query='text')
  assert not train_step.uses_consistency(with_term, text_stage)


def _clean_pairs_config(config, weight, **curriculum):
  c = ml_collections.ConfigDict(config.to_dict())
  c.loss.clean_pairs = weight
  c.curriculum.update(curriculum)
  return c


def _undegraded_queries(batch):
  """Other queries of the same photos: what a batch holds in 'clean' before the degradations."""
  rng = np.random.default_rng(1)
  return dict(sketch=np.roll(batch['sketch'], 3, axis=2),
              text_ids=rng.integers(1000, 3000, batch['text_ids'].shape).astype(np.int32),
              text_mask=batch['text_mask'], has_sketch=batch['has_sketch'],
              has_text=np.arange(8) % 4 != 0)


def test_clean_pairs_add_the_query_terms_of_the_undegraded_queries():
  """With loss.clean_pairs = w the loss is the unpaired loss of the (degraded) batch plus w times
  the contrastive and single-modality terms of the batch's undegraded queries against the same
  photos (the triplet term is not paired), in value and in gradient."""
  losses_ = ('contrastive', 'triplet', 'single_modality')
  config, model, state, _ = _tiny.setup(losses_)
  weight = 0.7
  paired = _clean_pairs_config(config, weight, kind='uniform')
  stage = stages.build_stages(config)[0]
  constants = train_step.make_constants(config, ['thing'])
  batch = _tiny.random_batch(config)
  batch['has_text'] = np.arange(8) % 3 != 0
  clean = _undegraded_queries(batch)

  def value_and_grad(c, b, s=stage):
    return jax.jit(train_step.make_value_and_grad(c, model, s, constants))(state.params, b)

  (loss, (terms, per_example, _)), grads = value_and_grad(paired, dict(batch, clean=clean))
  (plain_loss, (plain_terms, plain_per_example, _)), plain_grads = value_and_grad(config, batch)
  (_, (clean_terms, _, _)), clean_grads = value_and_grad(
      _clean_pairs_config(config, 0.0, kind='uniform'), dict(batch, **clean))
  want_pair = (config.loss.contrastive * clean_terms['contrastive']
               + config.loss.single_modality * clean_terms['single_modality'])
  assert float(want_pair) > 1.0
  np.testing.assert_allclose(float(terms['clean_pairs']), float(want_pair), rtol=1e-6)
  np.testing.assert_allclose(float(loss), float(plain_loss) + weight * float(want_pair), rtol=1e-6)
  for name in losses_:
    np.testing.assert_allclose(float(terms[name]), float(plain_terms[name]), rtol=1e-6)
  # The curriculum's per-example loss stays the degraded queries'.
  np.testing.assert_allclose(np.asarray(per_example), np.asarray(plain_per_example), rtol=1e-6)
  # d(clean terms)/d(params): the clean batch's loss less its (weighted) triplet term.
  _, triplet_grads = value_and_grad(config, dict(batch, **clean),
                                    dataclasses.replace(stage, losses=('triplet',)))
  want = jax.tree.map(lambda a, c, t: a + weight * (c - t), plain_grads, clean_grads,
                      triplet_grads)
  _assert_same_grads(want, grads, min_norm=1e-3)


def test_clean_pairs_score_the_queries_before_the_curriculum_degrades_them():
  """In the step, the clean pair of a degraded query is the query as the batch holds it: its term
  equals the unpaired step's contrastive term on the same batch with every query clean, while the
  degraded queries' own term differs."""
  config, model, state, _ = _tiny.setup()
  batch = _tiny.random_batch(config)
  def metrics_of(c):
    stage = stages.build_stages(c)[0]
    constants = train_step.make_constants(c, ['thing'])
    _, m = jax.jit(train_step.make_step_fn(c, model, stage, constants, c.train.num_steps))(
        state, batch)
    return {k: float(v) for k, v in m.items() if k.startswith('loss/')}

  # Every bucket of the table alike, the clean one too: most queries are degraded.
  paired = metrics_of(_clean_pairs_config(config, 1.0, kind='uniform', clean_share=0.0))
  plain = metrics_of(config)   # curriculum 'none': every query clean
  assert paired['loss/clean_pairs'] == pytest.approx(
      config.loss.contrastive * plain['loss/contrastive'], rel=1e-5)
  assert abs(paired['loss/contrastive'] - plain['loss/contrastive']) > 1e-3


@pytest.mark.parametrize('field', ['clean_pairs', 'distill'])
def test_clean_queries_need_a_degradation(field):
  config = _tiny.tiny_config()   # curriculum 'none', no dropout
  config.loss[field] = 1.0
  with pytest.raises(config_checks.ConfigError,
                     match=rf'loss.{field}=1.0 .* every query is clean already'):
    config_checks.validate_config(config)
  config.train.modality_dropout = 0.2
  config_checks.validate_config(config)


def test_distill_adds_the_kl_from_each_querys_undegraded_self():
  """With loss.distill = w (and no clean pairs) the loss is the plain loss of the degraded batch
  plus w times losses.distill of its fused queries against their undegraded selves, over the
  batch's photos at the model's logit scale; the teacher sends no gradient."""
  config, model, state, _ = _tiny.setup(('contrastive', 'single_modality'))
  weight, temperature = 0.6, 2.0
  c = _clean_pairs_config(config, 0.0, kind='uniform')
  c.loss.update(distill=weight, distill_temperature=temperature)
  stage = stages.build_stages(config)[0]
  constants = train_step.make_constants(config, ['thing'])
  batch = _tiny.random_batch(config)
  clean = _undegraded_queries(batch)

  def value_and_grad(cfg, b):
    return jax.jit(train_step.make_value_and_grad(cfg, model, stage, constants))(state.params, b)

  (loss, (terms, _, _)), grads = value_and_grad(c, dict(batch, clean=clean))
  (plain_loss, (plain_terms, _, _)), plain_grads = value_and_grad(config, batch)
  assert 'clean_pairs' not in terms
  variables = stbir.model_variables(state.params)
  out = model.apply(variables, batch)
  teacher = model.apply(variables, *(clean[k] for k in train_step.QUERY_FIELDS), False,
                        method=stbir.STBIR.encode_queries)[0]
  want = losses.distill(out['query'], teacher, out['gallery'], out['logit_scale'],
                        temperature=temperature)
  assert float(want) > 1e-3
  np.testing.assert_allclose(float(terms['distill']), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(plain_loss) + weight * float(want), rtol=1e-5)
  # Its gradient: the student's side only (the teacher's queries are held fixed).
  def distill_of(params):
    o = model.apply(stbir.model_variables(params), batch)
    return losses.distill(o['query'], jax.lax.stop_gradient(teacher), o['gallery'],
                          o['logit_scale'], temperature=temperature)
  distill_grads = jax.grad(distill_of)(state.params)
  _assert_same_grads(jax.tree.map(lambda a, d: a + weight * d, plain_grads, distill_grads),
                     grads, min_norm=1e-3)


def _symmetric_info_nce(q, g, scale, same):
  """Hand-written symmetric InfoNCE: pair (i, j != i) is a negative unless same[i, j]."""
  logits = scale * np.asarray(q, np.float64) @ np.asarray(g, np.float64).T
  keep = ~same | np.eye(len(q), dtype=bool)

  def one_way(x):
    lse = np.log(np.sum(np.where(keep, np.exp(x), 0.0), axis=1))
    return np.mean(lse - np.diagonal(x))

  return 0.5 * (one_way(logits) + one_way(logits.T))


def test_structure_only_sketch_term_leaves_appearance_twins_out_of_its_negatives():
  """With loss.sketch_structure_only the sketch-only InfoNCE skips photos of the same structure
  (instance // appearance_variants); the text-only one keeps every other photo a negative."""
  config, model, state, _ = _tiny.setup(('single_modality',))
  config = ml_collections.ConfigDict(config.to_dict())
  config.category.hard_negative_weight = 1.0   # every negative at weight 1
  config.data.synth.appearance_variants = 2
  batch = _tiny.random_batch(config)   # instances 0..7: structures 0, 0, 1, 1, 2, 2, 3, 3
  stage = stages.build_stages(config)[0]
  constants = train_step.make_constants(config, ['thing'])
  variables = stbir.model_variables(state.params)
  none = np.zeros(8, bool)
  q_sketch, q_text = (model.apply(variables, batch['sketch'], batch['text_ids'],
                                  batch['text_mask'], has_sketch, has_text,
                                  method=STBIR.encode_query)
                      for has_sketch, has_text in ((batch['has_sketch'], none),
                                                   (none, batch['has_text'])))
  g = model.apply(variables, batch['image'], method=STBIR.encode_gallery)
  scale = float(model.apply(variables, method=STBIR.logit_scale))
  instance, structure = np.arange(8), np.arange(8) // 2
  same_instance = instance[:, None] == instance[None]
  same_structure = structure[:, None] == structure[None]

  def single_modality_term(structure_only):
    c = ml_collections.ConfigDict(config.to_dict())
    c.loss.sketch_structure_only = structure_only
    (_, (terms, _, _)), _ = jax.jit(train_step.make_value_and_grad(
        c, model, stage, constants))(state.params, batch)
    return float(terms['single_modality'])

  text = _symmetric_info_nce(q_text, g, scale, same_instance)
  every_negative = 0.5 * (_symmetric_info_nce(q_sketch, g, scale, same_instance) + text)
  structure_only = 0.5 * (_symmetric_info_nce(q_sketch, g, scale, same_structure) + text)
  assert every_negative - structure_only > 1e-3   # the twins were negatives, now they are not
  np.testing.assert_allclose(single_modality_term(False), every_negative, rtol=1e-5)
  np.testing.assert_allclose(single_modality_term(True), structure_only, rtol=1e-5)
  config.data.name = 'jsonl'
  config.loss.sketch_structure_only = True
  with pytest.raises(config_checks.ConfigError, match='loss.sketch_structure_only=True needs'):
    config_checks.validate_config(config)


def _aligner_step(learns, retrieval, has_sketch=None):
  """One value-and-grad of a tiny model with a trained-looking aligner and loss.align_jitter,
  model.sketch_align_learns=`learns`, the retrieval loss on or off: (config, params, batch,
  terms, grads)."""
  config = _tiny.tiny_config()
  config.model.sketch_align = True
  config.model.sketch_align_learns = learns
  config.loss.align_jitter = 1.0
  if not retrieval:
    config.loss.contrastive = config.loss.triplet = 0.0   # the term alone
  model = STBIR.from_config(config)
  constants = train_step.make_constants(config, ['thing'])
  state = train_step.create_sharded_state(config, sharding.make_mesh(config.mesh), model,
                                          constants)
  params = jax.tree.map(lambda x: x, state.params)
  warp = params['sketch']['aligner']['warp']
  warp['bias'] = warp['bias'] + np.array([0.1, -0.2, 0.3, 0.05], np.float32)   # a trained warp
  batch = _tiny.random_batch(config)
  if has_sketch is not None:
    batch['has_sketch'] = has_sketch
  batch['jitter_undo'] = np.random.default_rng(2).uniform(-0.1, 0.1, (8, 4)).astype(np.float32)
  stage = stages.build_stages(config)[0]
  (_, (terms, _, _)), grads = jax.jit(train_step.make_value_and_grad(
      config, model, stage, constants))(params, batch)
  return config, params, batch, terms, grads


def _aligner_grads(learns, retrieval):
  """The align_jitter term and the gradient that reaches the aligner."""
  *_, terms, grads = _aligner_step(learns, retrieval)
  return float(terms['align_jitter']), grads['sketch']['aligner']


def test_align_jitter_regresses_the_aligners_warp_on_each_sketchs_undo():
  """The term is the aligner's warp of each query's sketch regressed on the batch's
  'jitter_undo' over the queries with a sketch (losses.warp_regression in aligner.WARP_UNITS);
  its gradient reaches the aligner and nothing else when it is the only term."""
  config, params, batch, terms, grads = _aligner_step('both', retrieval=False,
                                                      has_sketch=np.arange(8) % 3 != 0)

  kind = config.model.sketch.kind
  background = stbir.normalize_pixels(np.ones(3, np.float32), kind)
  images = stbir.normalize_pixels(stbir.sketch_to_image(batch['sketch']), kind) - background
  _, predicted = aligner.SketchAligner().apply({'params': params['sketch']['aligner']}, images)
  err = (np.asarray(predicted) - batch['jitter_undo']) / np.asarray(aligner.WARP_UNITS)
  want = (err ** 2).sum(1)[batch['has_sketch']].mean()
  assert want > 1.0
  np.testing.assert_allclose(float(terms['align_jitter']), want, rtol=1e-5)
  assert float(optax.global_norm(grads['sketch']['aligner'])) > 1e-3
  for group in ('photo', 'text'):
    assert float(optax.global_norm(grads[group])) == 0.0
  assert float(optax.global_norm(grads['sketch']['backbone'])) == 0.0


def test_sketch_align_learns_jitter_keeps_the_retrieval_gradient_out_of_the_aligner():
  """With 'jitter' the aligner's gradient is the regression's alone, retrieval loss or not;
  with 'both' the retrieval loss adds to it. The forward pass is the same either way."""
  alone, regression_only = _aligner_grads('jitter', retrieval=False)
  term, detached = _aligner_grads('jitter', retrieval=True)
  both_term, both = _aligner_grads('both', retrieval=True)
  assert alone == term == both_term
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               regression_only, detached)
  diff = jax.tree.map(lambda a, b: a - b, both, regression_only)
  assert float(optax.global_norm(diff)) > 1e-4 * float(optax.global_norm(regression_only))
  config = _tiny.tiny_config()
  config.model.sketch_align = True
  config.model.sketch_align_learns = 'jitter'
  with pytest.raises(config_checks.ConfigError,
                     match=r"sketch_align_learns='jitter' trains the sketch aligner by "
                           r'loss.align_jitter alone, which is 0'):
    config_checks.validate_config(config)


def test_align_jitter_needs_an_aligner():
  config = _tiny.tiny_config()
  config.loss.align_jitter = 1.0
  with pytest.raises(config_checks.ConfigError,
                     match=r'loss.align_jitter=1.0 trains the sketch aligner, and the model has '
                           r'none: set model.sketch_align=True'):
    config_checks.validate_config(config)


def test_pair_shift_after_align_is_the_pair_shift_while_nothing_else_moves_the_sketch():
  """With no degradation and a new (identity) aligner, the sketch moved after the aligner is the
  pair shift itself: one step gives the same losses and params, clean pairs included. Only what
  the aligner reads differs (tests/aligner_test.py)."""
  config = _tiny.tiny_config()
  config.model.sketch_align = True
  config.loss.align_jitter = 1.0
  config.loss.clean_pairs = 1.0
  config.train.modality_dropout = 0.2   # clean pairs are refused where nothing degrades a query
  model = STBIR.from_config(config)
  constants = train_step.make_constants(config, ['thing'])
  state = train_step.create_sharded_state(config, sharding.make_mesh(config.mesh), model,
                                          constants)
  stage = stages.build_stages(config)[0]
  batch = _tiny.random_batch(config)

  def one_step(shift, after):
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.pair_shift, c.train.pair_shift_after_align = shift, after
    config_checks.validate_config(c)
    return jax.jit(train_step.make_step_fn(c, model, stage, constants, c.train.num_steps))(
        state, batch)

  (moved, m_moved), (later, m_later) = one_step(0.1, False), one_step(0.1, True)
  _, m_still = one_step(0.0, False)
  assert abs(float(m_still['loss']) - float(m_moved['loss'])) > 1e-4   # the pairs did move
  for name in ('loss', 'loss/contrastive', 'loss/clean_pairs', 'loss/align_jitter'):
    np.testing.assert_allclose(float(m_later[name]), float(m_moved[name]), rtol=1e-5, atol=1e-7)
  # Every param but the aligner's: its gradient is not the same, since a rotation of the sketch
  # as drawn turns about another point of the drawing than one of the moved sketch.
  without_aligner = lambda p: dict(p, sketch={k: v for k, v in p['sketch'].items()
                                              if k != 'aligner'})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               without_aligner(later.params), without_aligner(moved.params))


def test_pair_shift_after_align_needs_an_aligner_a_pair_shift_and_no_pair_warp():
  config = _tiny.tiny_config()
  config.train.pair_shift_after_align = True
  config.train.pair_shift = 0.06
  with pytest.raises(config_checks.ConfigError,
                     match=r'after the sketch aligner, but model.sketch_align=False: there is no '
                           r'aligner'):
    config_checks.validate_config(config)
  config.model.sketch_align = True
  config.train.pair_shift = 0.0
  with pytest.raises(config_checks.ConfigError, match=r'train.pair_shift=0: there is no pair '
                                                      r'shift\. Set train.pair_shift > 0'):
    config_checks.validate_config(config)
  config.train.pair_shift, config.train.pair_warp = 0.06, 0.03
  with pytest.raises(config_checks.ConfigError, match=r'train.pair_warp=0.03: the pair warp '
                                                      r'would move the sketch before'):
    config_checks.validate_config(config)
  config.train.pair_warp = 0.0
  config_checks.validate_config(config)
