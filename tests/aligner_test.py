"""Tests of stbir_jax.models.aligner: the learned warp of the sketch (config.model.sketch_align)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from stbir_jax import degradations, losses
from stbir_jax.models import aligner
from stbir_jax.models.stbir import STBIR
from tests.models_test import init, make_batch, query_fn, tiny_model_config


def _map(seed=0, r=16):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, 9, (r, r)) * (rng.random((r, r)) > 0.7)
  return ids.astype(np.uint8)


def test_a_zero_warp_is_the_identity_and_whole_pixel_warps_match_the_jitters():
  x = _map()
  xf = jnp.asarray(x, jnp.float32)[..., None]
  np.testing.assert_array_equal(aligner.warp(xf, jnp.zeros(2), 0.0, 0.0)[..., 0], x)
  # Where the warp lands on whole pixels, bilinear sampling is the jitter's nearest neighbour:
  # a shift of (2, -3) pixels, a quarter turn about the centre, and both.
  for shift, angle in (((2.0, -3.0), 0.0), ((0.0, 0.0), np.pi / 2), ((1.0, 1.0), np.pi / 2)):
    want = degradations._warp(jnp.asarray(x), jnp.array(shift), 1.0, angle)
    got = aligner.warp(xf, jnp.array(shift), angle, 0.0)[..., 0]
    np.testing.assert_allclose(got, want, atol=1e-5)
  # Half a pixel along x: every output pixel is the mean of two neighbours.
  got = aligner.warp(xf, jnp.array([0.0, 0.5]), 0.0, 0.0)[..., 0]
  want = 0.5 * (x[:, :-1].astype(np.float32) + x[:, 1:])
  np.testing.assert_allclose(got[:, 1:], want, atol=1e-6)
  np.testing.assert_allclose(got[:, 0], 0.5 * x[:, 0], atol=1e-6)   # 0 enters at the edge


def test_a_new_aligner_leaves_the_query_as_it_was():
  c = tiny_model_config(image_kind='resnet')
  batch = make_batch()
  plain = STBIR(c)
  params = init(plain, batch)
  c = ml_collections.ConfigDict(c.to_dict())
  c.sketch_align = True
  aligned = STBIR(c)
  fresh = init(aligned, batch)
  assert set(fresh['sketch']) == set(params['sketch']) | {'aligner'}
  # The trained towers' params, and the new aligner's own: what train.init_from starts from.
  both = dict(params, sketch=dict(params['sketch'], aligner=fresh['sketch']['aligner']))
  a = query_fn(plain)(params, batch)
  b = query_fn(aligned)(both, batch)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  # A trained aligner moves the sketch: the query changes.
  warp = both['sketch']['aligner']['warp']
  moved = dict(both, sketch=dict(both['sketch'], aligner=dict(
      both['sketch']['aligner'], warp=dict(warp, bias=warp['bias'].at[0].set(1.0)))))
  assert np.abs(np.asarray(query_fn(aligned)(moved, batch)) - np.asarray(a)).max() > 1e-3


def test_a_shift_after_the_aligner_moves_the_sketch_as_the_pair_shift_would():
  """train.pair_shift_after_align: given the sketch where it was drawn and its pair shift, a new
  aligner's query is the query of the shifted sketch; a trained one predicts the warp of the
  sketch as drawn, whatever the shift, and moves it by that warp and then the shift."""
  c = tiny_model_config(image_kind='resnet')
  c.sketch_align = True
  model = STBIR(c)
  batch = make_batch()
  params = init(model, batch)
  offsets = np.array([[2, -3], [0, 1], [-1, 0]])
  moved = jnp.stack([degradations.translate(s, int(dy), int(dx))
                     for s, (dy, dx) in zip(batch['sketch'], offsets, strict=True)])

  @jax.jit
  def query_and_warp(p, sketch, shift):
    q, state = model.apply({'params': p}, sketch, batch['text_ids'], batch['text_mask'],
                           batch['has_sketch'], batch['has_text'], False, shift,
                           method=STBIR.encode_queries, mutable=['intermediates'])
    return q[0], state['intermediates']['sketch']['warp'][0]

  shift = jnp.asarray(offsets, jnp.float32)
  q_moved, _ = query_and_warp(params, moved, None)
  q_later, warp = query_and_warp(params, batch['sketch'], shift)
  np.testing.assert_allclose(np.asarray(q_later), np.asarray(q_moved), atol=1e-6)
  np.testing.assert_array_equal(warp, 0.0)
  # A trained aligner (its warp depends on what it reads): the warp of the sketch as drawn,
  # not of the moved one, and the shift after it.
  w = params['sketch']['aligner']['warp']
  kernel = np.random.default_rng(1).normal(0.0, 0.3, w['kernel'].shape).astype(np.float32)
  trained = dict(params, sketch=dict(params['sketch'], aligner=dict(
      params['sketch']['aligner'], warp=dict(kernel=jnp.asarray(kernel), bias=w['bias']))))
  _, drawn_warp = query_and_warp(trained, batch['sketch'], None)
  _, moved_warp = query_and_warp(trained, moved, None)
  assert np.abs(np.asarray(moved_warp) - np.asarray(drawn_warp)).max() > 1e-3
  q_later, later_warp = query_and_warp(trained, batch['sketch'], shift)
  np.testing.assert_allclose(later_warp, drawn_warp, atol=1e-7)
  r = batch['sketch'].shape[1]
  both = np.array(drawn_warp)
  both[:, :2] += offsets / r                     # the shift, as a fraction of the image
  bounds = np.array([aligner.MAX_SHIFT, aligner.MAX_SHIFT, aligner.MAX_ANGLE,
                     aligner.MAX_LOG_SCALE])
  for b in range(3):   # an aligner that applies sketch b's warp and shift whatever it reads
    fixed = dict(kernel=jnp.zeros_like(w['kernel']),
                 bias=jnp.asarray(np.arctanh(both[b] / bounds), jnp.float32))
    one = dict(trained, sketch=dict(trained['sketch'], aligner=dict(
        trained['sketch']['aligner'], warp=fixed)))
    q_one, _ = query_and_warp(one, batch['sketch'], None)
    np.testing.assert_allclose(np.asarray(q_later)[b], np.asarray(q_one)[b], atol=1e-5)


def test_the_aligner_learns_to_move_shifted_sketches_back():
  """Trained by the warp's own gradient (MSE to the unshifted map), the aligner must predict
  the shift that undoes each draw to within a pixel; at the start it moves nothing."""
  r = 24
  template = np.zeros((r, r), np.float32)
  template[6:18, 8] = template[6:18, 15] = template[6, 8:16] = template[17, 8:16] = 1.0
  template[10:14, 11:13] = 1.0
  # Blurred, so that a warp a few pixels off still overlaps its target and the MSE has a slope.
  g = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
  for axis in (0, 1):
    template = np.apply_along_axis(lambda v: np.convolve(v, g / g.sum(), 'same'), axis, template)
  blurred = jnp.asarray(template, jnp.float32)[None, ..., None]
  rng = np.random.default_rng(0)
  model = aligner.SketchAligner(width=8, hidden=32)
  params = model.init(jax.random.PRNGKey(0), blurred)
  opt = optax.adam(3e-3)
  state = opt.init(params)

  def shifted(shifts):
    return jnp.stack([degradations.translate(blurred[0], int(dy), int(dx)) for dy, dx in shifts])

  def loss(p, x):
    moved, _ = model.apply(p, x)
    return jnp.mean((moved - blurred) ** 2)

  @jax.jit
  def step(p, s, x):
    value, grads = jax.value_and_grad(loss)(p, x)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value

  test_shifts = rng.integers(-3, 4, (16, 2))
  _, warp0 = model.apply(params, shifted(test_shifts))
  np.testing.assert_array_equal(warp0, 0.0)
  for _ in range(400):
    params, state, _ = step(params, state, shifted(rng.integers(-3, 4, (16, 2))))
  _, warp = model.apply(params, shifted(test_shifts))
  predicted = np.asarray(warp[:, :2]) * r
  np.testing.assert_array_less(np.abs(predicted + test_shifts), 1.0)


def test_degrade_gives_the_warp_that_undoes_each_sketchs_jitter():
  """The undo of each query's jitter draw, warped onto the degraded sketch, puts a solid shape
  back where it was drawn (up to the jitter's nearest-neighbour rounding); a bucket without
  jitter needs none. The degraded batch is the one degrade gives without the undo."""
  r, b = 32, 6
  sketch = np.zeros((b, r, r), np.uint8)
  sketch[:, 9:23, 11:21] = 1          # a solid box: the shape survives nearest-neighbour warps
  sketch[:, 12:15, 5:27] = 2
  batch = dict(sketch=jnp.asarray(sketch), text_ids=jnp.ones((b, 4), jnp.int32),
               text_mask=jnp.ones((b, 4), jnp.int32), has_sketch=jnp.ones(b, bool),
               has_text=jnp.ones(b, bool))
  buckets = [dict(name='clean', level=0), dict(name='jitter', jitter=0.1, level=1)]
  table = degradations.buckets_from_config([dict(degradations.NO_DEGRADATION, **x)
                                            for x in buckets])
  which = jnp.asarray([0, 1, 1, 1, 1, 0], jnp.int32)
  key = jax.random.key(5)
  degraded, undo = degradations.degrade(key, batch, which, table, with_undo=True)
  plain = degradations.degrade(key, batch, which, table)
  jax.tree.map(np.testing.assert_array_equal, degraded, plain)
  undo = np.asarray(undo)
  np.testing.assert_array_equal(undo[[0, 5]], 0.0)
  assert np.abs(undo[1:5]).max() > 0.01
  ink = lambda s: (np.asarray(s) > 0).astype(np.float32)
  for i in range(1, 5):
    moved = ink(degraded['sketch'][i])
    back = np.asarray(aligner.warp(jnp.asarray(moved)[..., None], undo[i, :2] * r, undo[i, 2],
                                   undo[i, 3]))[..., 0]
    before, after = (np.abs(x - ink(sketch[i])).mean() for x in (moved, back))
    assert after < 0.5 * before, (i, before, after)   # a wrong sign would double it


def test_warp_regression_counts_each_parameter_in_its_own_unit():
  warp = jnp.array([[0.06, 0.0, 0.0, 0.0], [0.0, 0.0, 0.06 * np.pi, 0.12]])
  target = jnp.zeros((2, 4))
  # Row 0: one unit of shift -> 1; row 1: one unit of angle and two of scale -> 1 + 4.
  assert float(losses.warp_regression(warp, target, aligner.WARP_UNITS)) == pytest.approx(3.0)
  assert float(losses.warp_regression(warp, target, aligner.WARP_UNITS,
                                      valid=jnp.array([True, False]))) == pytest.approx(1.0)
