"""The jitted train step on a tiny model: it overfits a few examples to Acc@1 = 1, skips
non-finite updates and the loop then stops naming the step."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from configs import base
from stbir_jax import metrics, stages, train
from stbir_jax.models.stbir import STBIR


def _tiny_config(losses=('contrastive', 'triplet')):
  config = base.get_config('smoke')
  vit = dict(kind='vit', patch_size=8, hidden=32, layers=1, heads=2, mlp_dim=64)
  config.model.sketch.update(vit)
  config.model.photo.update(vit)
  config.model.embed_dim = 32
  config.curriculum.kind = 'none'
  config.train.modality_dropout = 0.0
  config.train.num_steps = 80
  config.optim.lr = 3e-3
  config.optim.warmup_steps = 5
  config.stages = [ml_collections.ConfigDict(dict(
      name='joint', fraction=1.0, train=list(stages.PARAM_GROUPS),
      losses=list(losses), query='sketch+text', lr_scale=1.0))]
  return config


def _batch(config):
  rng = np.random.default_rng(0)
  b, r, l = 8, config.data.resolution, config.data.max_text_len
  batch = dict(
      image=rng.integers(0, 256, (b, r, r, 3), dtype=np.uint8),
      sketch=((rng.random((b, r, r)) < 0.2) * rng.integers(1, 9, (b, r, r))).astype(np.uint8),
      text_ids=rng.integers(1000, 3000, (b, l)).astype(np.int32),
      text_mask=np.ones((b, l), np.int32), has_sketch=np.ones(b, bool),
      has_text=np.ones(b, bool), category=np.zeros(b, np.int32),
      instance=np.arange(b, dtype=np.int32), family=np.zeros(b, np.int32))
  return batch


@functools.lru_cache(maxsize=None)
def _setup(losses=('contrastive', 'triplet')):
  config = _tiny_config(losses)
  model = train.make_model(config)
  constants = train.make_constants(config, ['thing'])
  state = train.init_state(config, model, constants, jax.random.PRNGKey(0))
  step = jax.jit(train.make_step_fn(config, model, stages.build_stages(config)[0], constants,
                                    config.train.num_steps))
  return config, model, state, step


def test_tiny_model_overfits_to_acc1_of_one():
  config, model, state, step = _setup()
  batch = _batch(config)
  b = batch['instance'].shape[0]
  first = None
  for _ in range(config.train.num_steps):
    state, m = step(state, batch)
    first = float(m['loss']) if first is None else first
  assert float(m['loss']) < 0.25 * first

  variables = train.model_variables(state.params)
  q = model.apply(variables, batch['sketch'], batch['text_ids'], batch['text_mask'],
                  batch['has_sketch'], batch['has_text'], method=STBIR.encode_query)
  g = model.apply(variables, batch['image'], method=STBIR.encode_gallery)
  ranks = metrics.ranks(np.asarray(q @ g.T), np.arange(b))
  assert metrics.retrieval_metrics(ranks)['acc@1'] == 1.0


def test_single_modality_loss_makes_each_side_retrieve_on_its_own():
  config, model, state, step = _setup(('contrastive', 'single_modality'))
  batch = _batch(config)
  for _ in range(config.train.num_steps):
    state, m = step(state, batch)
  assert set(k for k in m if k.startswith('loss/')) == {'loss/contrastive',
                                                        'loss/single_modality'}
  variables = train.model_variables(state.params)
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
  config, _, state, step = _setup()
  poisoned = dict(state.params)
  poisoned['photo'] = jax.tree.map(lambda x: x * np.nan, state.params['photo'])
  state = state.replace(params=poisoned)
  new, metrics = step(state, _batch(config))
  assert float(metrics['finite']) == 0.0
  assert int(new.first_bad_step) == 0 and int(new.skipped_steps) == 1
  # The update was skipped: every parameter and the optimiser state are unchanged.
  for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                  jax.tree.leaves((new.params, new.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FloatingPointError, match='at step 0; .* no checkpoint exists'):
    train._check_finite(config, new, _NoCheckpoints())  # pylint: disable=protected-access
  config.train.nan_policy = 'skip'
  train._check_finite(config, new, _NoCheckpoints())  # pylint: disable=protected-access
  config.train.nan_policy = 'stop'


def test_frozen_groups_stay_bit_identical():
  config, model, state, _ = _setup()
  constants = train.make_constants(config, ['thing'])
  photo_only = stages.Stage(0, 'photo_refine', 0, config.train.num_steps, ('photo',),
                            ('contrastive',), 'sketch', 1.0)
  step = jax.jit(train.make_step_fn(config, model, photo_only, constants,
                                    config.train.num_steps))
  new, _ = step(state, _batch(config))
  for group in stages.MODEL_GROUPS:
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree.leaves(state.params[group]), jax.tree.leaves(new.params[group])))
    assert same == (group != 'photo'), group
