"""bfloat16 compute (config.model.dtype, the TPU presets' default) on CPU: parameters and optimiser
state stay float32, one step's loss and the evaluation embeddings agree with float32 within
bf16's precision, and the tiny smoke model trains as it does in float32.

Tolerances: bf16 keeps 8 significant bits (relative rounding 2**-9 ~ 0.2 %); through a few
layers and a softmax over the batch the loss moves by ~1e-3 relative here, so 2 % is a bound
with room that still fails on a real bug (a float32 loss differs by > 10 % from a random one).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _tiny
from stbir_jax import stages, train_step
from stbir_jax.models import stbir
from stbir_jax.models.stbir import STBIR

LOSS_RTOL = 0.02
MIN_COSINE = 0.99

# Three bf16 steps and evaluations: ~2.5 minutes on 2 cores.
pytestmark = pytest.mark.slow


@functools.cache
def _setup(dtype):
  """-> (config, model, constants, jitted step), compiled once per dtype for all tests."""
  if dtype == 'float32':  # the tiny model of tests/_tiny.py: its compiled step is shared
    config, model, _, step = _tiny.setup()
    return config, model, train_step.make_constants(config, ['thing']), step
  config = _tiny.tiny_config()
  config.model.dtype = dtype
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, ['thing'])
  step = jax.jit(train_step.make_step_fn(config, model, stages.build_stages(config)[0], constants,
                                         config.train.num_steps))
  return config, model, constants, step


def _state():
  """One float32-initialised state for both dtypes (the params do not depend on it)."""
  return _tiny.setup()[2]


def test_bf16_keeps_params_and_optimizer_state_in_float32():
  config, _, _, step = _setup('bfloat16')
  new, _ = step(_state(), _tiny.random_batch(config))
  dtypes = {x.dtype for x in jax.tree.leaves((new.params, new.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype('float32')}


def test_one_bf16_step_has_the_float32_loss_within_tolerance():
  state = _state()
  batch = _tiny.random_batch(_tiny.tiny_config())
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    _, _, _, step = _setup(dtype)
    _, metrics = step(state, batch)
    losses[dtype] = float(metrics['loss'])
  assert abs(losses['bfloat16'] - losses['float32']) <= LOSS_RTOL * abs(losses['float32'])
  # Not trivially equal: the compute really ran in bf16.
  assert losses['bfloat16'] != losses['float32']


def test_bf16_evaluation_embeddings_match_float32():
  state = _state()
  config = _tiny.tiny_config()
  batch = _tiny.random_batch(config)
  variables = stbir.model_variables(state.params)
  out = {}
  for dtype in ('float32', 'bfloat16'):
    _, model, _, _ = _setup(dtype)
    q = model.apply(variables, batch['sketch'], batch['text_ids'], batch['text_mask'],
                    batch['has_sketch'], batch['has_text'], method=STBIR.encode_query)
    g = model.apply(variables, batch['image'], method=STBIR.encode_gallery)
    out[dtype] = (np.asarray(q), np.asarray(g))
  for a, b in zip(out['float32'], out['bfloat16'], strict=True):
    assert b.dtype == np.float32  # embeddings are normalised in float32
    cosine = np.sum(a * b, axis=-1)  # rows are unit vectors
    assert cosine.min() >= MIN_COSINE, cosine
    assert np.abs(a - b).max() > 0  # bf16 did change the computation


def test_bf16_smoke_model_trains_with_falling_loss():
  config, _, _, step = _setup('bfloat16')
  state, batch = _state(), _tiny.random_batch(config)
  history = []
  for _ in range(40):
    state, metrics = step(state, batch)
    history.append(float(metrics['loss']))
  assert np.isfinite(history).all()
  assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5]), history
