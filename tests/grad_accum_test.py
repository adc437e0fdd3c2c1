"""Gradient accumulation (GradCache) and remat give the gradients of the plain step.

The losses compare every query with the whole batch, so accumulation must not change them: the
accumulated gradient equals the unaccumulated one to float summation order, and so do one step's
loss and updated params. The 8-device version is tests/multidevice_test.py."""

import functools

import jax
import numpy as np
import pytest

import _tiny
from configs import base
from stbir_jax import config_checks, stages, train_step
from stbir_jax.models import stbir

CATEGORIES = ['sneaker', 'boot']
ALL_LOSSES = ('contrastive', 'triplet', 'prototype', 'single_modality')


def _config(accum=1, learn_prototypes=True, remat='nothing'):
  config = _tiny.tiny_config(ALL_LOSSES)
  config.train.grad_accum_steps = accum
  config.category.learn_prototypes = learn_prototypes
  config.model.remat = remat
  # Its fixed target is computed per micro-batch too. Random sketches look alike to an untrained
  # tower (the term is ~0.004), so a large weight gives it a visible share of the gradient.
  config.loss.consistency = 100.0
  config.loss.clean_pairs = 0.5   # the undegraded queries' terms, from their own micro-batches
  config.loss.distill = 2.0       # its softmaxes span the whole batch's photos
  if not learn_prototypes:
    config.stages[0].train = list(stages.MODEL_GROUPS)
  # Large enough that Adam's first update, lr * g / (|g| + eps), moves by at most lr / eps times
  # the gradient difference (see tests/multidevice_test.py): equal gradients give equal params.
  config.optim.eps = 1e-2
  return config


def _batch(config):
  batch = _tiny.random_batch(config)
  # Two categories in both halves of the batch: intra-category weights and prototypes matter,
  # and every micro-batch (rows j, j+k, ...) mixes them.
  batch['category'] = (np.arange(8) // 2 % 2).astype(np.int32)
  # What the step adds for the consistency term: the sketches before degradation, and which
  # rows a bucket changed.
  batch['sketch_clean'] = np.roll(batch['sketch'], 3, axis=2)
  batch['sketch_degraded'] = np.arange(8) % 3 != 0
  batch['clean'] = dict(sketch=batch['sketch_clean'], text_ids=np.roll(batch['text_ids'], 1, 0),
                        text_mask=batch['text_mask'], has_sketch=batch['has_sketch'],
                        has_text=np.arange(8) % 4 != 0)
  return batch


@functools.cache
def _model_and_state(learn_prototypes):
  config = _config(learn_prototypes=learn_prototypes)
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, CATEGORIES)
  return model, constants, train_step.init_state(config, model, constants, jax.random.PRNGKey(0))


def _grads(config, model, constants, params, batch):
  stage = stages.build_stages(config)[0]
  fn = jax.jit(train_step.make_value_and_grad(config, model, stage, constants))
  (loss, (terms, per_example, _)), grads = fn(params, batch)
  return float(loss), terms, np.asarray(per_example), jax.device_get(grads)


def _assert_same_grads(expected, got, rtol=1e-5):
  norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(expected))))
  assert norm > 0.1
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got),
                          strict=True):
    np.testing.assert_allclose(b, a, rtol=0, atol=rtol * norm, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('accum,learn_prototypes', [
    (2, True), pytest.param(4, False, marks=pytest.mark.slow)])
def test_accumulated_gradients_and_step_equal_the_plain_ones(accum, learn_prototypes):
  model, constants, state = _model_and_state(learn_prototypes)
  plain, accumulated = _config(1, learn_prototypes), _config(accum, learn_prototypes)
  batch = _batch(plain)
  loss1, terms1, per1, grads1 = _grads(plain, model, constants, state.params, batch)
  loss_k, terms_k, per_k, grads_k = _grads(accumulated, model, constants, state.params, batch)
  assert set(terms1) == {*ALL_LOSSES, 'consistency', 'clean_pairs', 'distill'} and loss1 > 1.0
  assert terms1['consistency'] > 1e-3 and terms1['distill'] > 1e-3
  assert abs(loss_k - loss1) <= 1e-5 * loss1
  np.testing.assert_allclose(per_k, per1, rtol=1e-5, atol=1e-6)
  _assert_same_grads(grads1, grads_k)
  # Temperature and prototypes get their gradient from the loss directly, the towers through the
  # embeddings: every group must have one for the comparison to test both paths.
  for group in stages.PARAM_GROUPS if learn_prototypes else stages.MODEL_GROUPS:
    assert max(np.abs(g).max() for g in jax.tree.leaves(grads1[group])) > 1e-6, group

  # One full step (degradations, clipping, Adam, weight decay): same loss and same params.
  stage = stages.build_stages(plain)[0]
  news = []
  for config in (plain, accumulated):
    step = jax.jit(train_step.make_step_fn(config, model, stage, constants, config.train.num_steps))
    news.append(step(state, batch))
  (new1, m1), (new_k, m_k) = news
  assert abs(float(m_k['loss']) - float(m1['loss'])) <= 1e-5 * float(m1['loss'])
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(state.params), jax.tree.leaves(new1.params), strict=True))
  assert moved > 0.1 * float(m1['lr'])  # the step moved the params: equality means something
  for a, b in zip(jax.tree.leaves(new1.params), jax.tree.leaves(new_k.params), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5)


@pytest.mark.slow   # ~2 minutes on 2 cores
def test_remat_gives_the_same_gradients():
  plain = _config()
  # A ResNet sketch tower as well, so ResNet blocks and transformer layers are both rematted.
  plain.model.sketch = base.get_config('smoke').model.sketch
  remat = _config(remat='full')
  remat.model.sketch = plain.model.sketch
  model = stbir.STBIR.from_config(plain)
  constants = train_step.make_constants(plain, CATEGORIES)
  state = train_step.init_state(plain, model, constants, jax.random.PRNGKey(0))
  batch = _batch(plain)
  loss1, _, _, grads1 = _grads(plain, model, constants, state.params, batch)
  loss2, _, _, grads2 = _grads(remat, stbir.STBIR.from_config(remat), constants, state.params,
                               batch)
  assert abs(loss1 - loss2) <= 1e-6 * loss1
  _assert_same_grads(grads1, grads2)


@pytest.mark.parametrize('accum,data_parallel,message', [
    (3, 1, r'train.batch_size=8 is not divisible by train.grad_accum_steps=3'),
    (2, 8, r'gives 1 rows per device, not divisible by train.grad_accum_steps=2; use a batch size '
           r'that is a multiple of 16'),
    (0, 1, r'train.grad_accum_steps=0; expected an integer >= 1'),
])
def test_grad_accum_is_validated(accum, data_parallel, message):
  config = base.get_config('smoke')
  config.train.grad_accum_steps = accum
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.validate_config(config, 1, data_parallel)
  config.train.grad_accum_steps = 2
  config_checks.validate_config(config, 1, 4)  # 2 rows a device: one per micro-batch
