"""Losses against values computed by hand (the math is written out next to each number)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

import _xla
from stbir_jax import losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
e = np.exp
log = np.log

# Three queries and three gallery items in 2-D (unit norm). S = Q G^T:
#   row 0: q0=(1,0)     . g = [0.8, 0.0, 1.0]
#   row 1: q1=(0,1)     . g = [0.6, 1.0, 0.0]
#   row 2: q2=(.6,.8)   . g = [0.96, 0.8, 0.6]
Q3 = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
G3 = np.array([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]], np.float32)


def test_info_nce_2x2_identity():
  # S = I, scale 2: each direction, each row: -2 + log(e^2 + e^0) = log(1 + e^-2).
  eye = np.eye(2, dtype=np.float32)
  np.testing.assert_allclose(losses.info_nce(eye, eye, 2.0), log(1 + e(-2.0)), rtol=1e-6)
  np.testing.assert_allclose(losses.per_example_info_nce(eye, eye, 2.0),
                             [log(1 + e(-2.0))] * 2, rtol=1e-6)


def test_info_nce_3x3():
  # query->gallery: rows of S; gallery->query: columns of S (positive on the diagonal).
  q2g = [log(e(.8) + e(0.) + e(1.)) - .8,
         log(e(.6) + e(1.) + e(0.)) - 1.,
         log(e(.96) + e(.8) + e(.6)) - .6]
  g2q = [log(e(.8) + e(.6) + e(.96)) - .8,
         log(e(0.) + e(1.) + e(.8)) - 1.,
         log(e(1.) + e(0.) + e(.6)) - .6]
  np.testing.assert_allclose(losses.per_example_info_nce(Q3, G3, 1.0), q2g, rtol=1e-6)
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 1.0), 0.5 * (np.mean(q2g) + np.mean(g2q)),
                             rtol=1e-6)
  # The scale multiplies every logit: scale 3 == unit scale on 3x embeddings of one side.
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 3.0), losses.info_nce(3 * Q3, G3, 1.0),
                             rtol=1e-6)


def test_info_nce_same_instance_is_not_a_negative():
  # instance = [0, 1, 0]: (row 0, col 2) and (row 2, col 0) are the same photo -> dropped.
  inst = np.array([0, 1, 0])
  q2g = [log(e(.8) + e(0.)) - .8,
         log(e(.6) + e(1.) + e(0.)) - 1.,
         log(e(.8) + e(.6)) - .6]
  g2q = [log(e(.8) + e(.6)) - .8,
         log(e(0.) + e(1.) + e(.8)) - 1.,
         log(e(0.) + e(.6)) - .6]
  np.testing.assert_allclose(losses.per_example_info_nce(Q3, G3, 1.0, instance=inst), q2g,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 1.0, instance=inst),
                             0.5 * (np.mean(q2g) + np.mean(g2q)), rtol=1e-6)


def test_intra_category_weights_and_weighted_info_nce():
  w = losses.intra_category_weights(np.array([0, 0, 1]), np.array([0, 1, 2]), 3.0)
  # Only (0,1) and (1,0) share a category with different instances.
  np.testing.assert_array_equal(w, [[1, 3, 1], [3, 1, 1], [1, 1, 1]])
  # Same instance twice is not a twin: weight 1 even within a category.
  w2 = losses.intra_category_weights(np.array([0, 0]), np.array([5, 5]), 3.0)
  np.testing.assert_array_equal(w2, np.ones((2, 2)))
  # A weight w multiplies exp(logit) of that negative in the denominator.
  q2g = [log(e(.8) + 3 * e(0.) + e(1.)) - .8,
         log(3 * e(.6) + e(1.) + e(0.)) - 1.,
         log(e(.96) + e(.8) + e(.6)) - .6]
  g2q = [log(e(.8) + 3 * e(.6) + e(.96)) - .8,
         log(3 * e(0.) + e(1.) + e(.8)) - 1.,
         log(e(1.) + e(0.) + e(.6)) - .6]
  np.testing.assert_allclose(losses.per_example_info_nce(Q3, G3, 1.0, negative_weights=w), q2g,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 1.0, negative_weights=w),
                             0.5 * (np.mean(q2g) + np.mean(g2q)), rtol=1e-6)


def test_info_nce_asymmetric_weights_transpose_for_gallery_direction():
  # w weighs the pair (q_i, g_j): only (q0, g2) is hard. Gallery 2 sees it as its negative q0.
  w = np.ones((3, 3), np.float32)
  w[0, 2] = 5.0
  q2g = [log(e(.8) + e(0.) + 5 * e(1.)) - .8,
         log(e(.6) + e(1.) + e(0.)) - 1.,
         log(e(.96) + e(.8) + e(.6)) - .6]
  g2q = [log(e(.8) + e(.6) + e(.96)) - .8,
         log(e(0.) + e(1.) + e(.8)) - 1.,
         log(5 * e(1.) + e(0.) + e(.6)) - .6]
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 1.0, negative_weights=w),
                             0.5 * (np.mean(q2g) + np.mean(g2q)), rtol=1e-6)


def test_info_nce_padded_rows_ignored():
  valid = np.array([True, True, False])
  # Row/column 2 are padding: no query, no negative, not in the mean.
  q2g = [log(e(.8) + e(0.)) - .8, log(e(.6) + e(1.)) - 1.]
  g2q = [log(e(.8) + e(.6)) - .8, log(e(0.) + e(1.)) - 1.]
  expected = 0.5 * (np.mean(q2g) + np.mean(g2q))
  np.testing.assert_allclose(losses.info_nce(Q3, G3, 1.0, valid=valid), expected, rtol=1e-6)
  per = losses.per_example_info_nce(Q3, G3, 1.0, valid=valid)
  np.testing.assert_allclose(per, q2g + [0.0], rtol=1e-6)
  # Whatever the padded rows hold does not change the loss.
  q, g = Q3.copy(), G3.copy()
  q[2], g[2] = [-7.0, 3.0], [5.0, 5.0]
  np.testing.assert_allclose(losses.info_nce(q, g, 1.0, valid=valid), expected, rtol=1e-6)


def test_triplet_hard():
  # hinge_i = max(0, m - S_ii + max_{j != i} S_ij), m = 0.2:
  #   row 0: .2 - .8 + max(0, 1)     = .4
  #   row 1: .2 - 1. + max(.6, 0)    = -.2 -> 0
  #   row 2: .2 - .6 + max(.96, .8)  = .56
  np.testing.assert_allclose(losses.triplet_hard(Q3, G3, 0.2), (0.4 + 0.0 + 0.56) / 3, rtol=1e-6)
  # instance [0,1,0]: row 0 hardest is col 1 (0) -> .2-.8+0 < 0 -> 0; row 2 hardest col 1 (.8)
  # -> .2 - .6 + .8 = .4.
  np.testing.assert_allclose(losses.triplet_hard(Q3, G3, 0.2, instance=np.array([0, 1, 0])),
                             0.4 / 3, rtol=1e-6)
  # Padding [T, T, F]: row 0 hardest col 1 (0) -> 0; row 1 hardest col 0 (.6) -> 0; mean 0.
  np.testing.assert_allclose(losses.triplet_hard(Q3, G3, 0.5, valid=np.array([1, 1, 0], bool)),
                             (max(0, .5 - .8 + 0.) + max(0, .5 - 1. + .6)) / 2, rtol=1e-6)
  # No negatives at all (every row the same photo): 0, and a finite gradient.
  inst = np.zeros(3, np.int32)
  assert float(losses.triplet_hard(Q3, G3, 0.2, instance=inst)) == 0.0
  grad = jax.grad(lambda q: losses.triplet_hard(q, G3, 0.2, instance=inst))(Q3)
  assert np.all(np.isfinite(grad))


def test_triplet_all_averages_the_hinge_over_every_negative():
  # S = Q3 G3^T = [[.8, 0, 1], [.6, 1, 0], [.96, .8, .6]], m = 0.2:
  #   row 0: mean(max(0, .2-.8+0), .2-.8+1)       = mean(0, .4)   = .2
  #   row 1: mean(max(0, .2-1+.6), max(0, .2-1+0)) = 0
  #   row 2: mean(.2-.6+.96, .2-.6+.8)             = mean(.56, .4) = .48
  np.testing.assert_allclose(losses.triplet_all(Q3, G3, 0.2), (0.2 + 0.0 + 0.48) / 3, rtol=1e-6)
  # instance [0,1,0]: row 0 keeps only col 1 (0), row 2 only col 1 (.4).
  np.testing.assert_allclose(losses.triplet_all(Q3, G3, 0.2, instance=np.array([0, 1, 0])),
                             0.4 / 3, rtol=1e-6)
  # Padding [T, T, F]: column 2 is no negative, row 2 no query: rows 0 and 1 keep one each.
  np.testing.assert_allclose(losses.triplet_all(Q3, G3, 0.5, valid=np.array([1, 1, 0], bool)),
                             (max(0, .5 - .8 + 0.) + max(0, .5 - 1. + .6)) / 2, rtol=1e-6)
  inst = np.zeros(3, np.int32)
  assert float(losses.triplet_all(Q3, G3, 0.2, instance=inst)) == 0.0
  assert losses.TRIPLET_MINING == {'hard': losses.triplet_hard, 'all': losses.triplet_all}


def test_triplet_anchors_leave_the_mean_but_keep_their_photos_as_negatives():
  # S = [[.8, 0, 1], [.6, 1, 0], [.96, .8, .6]], m = .2. Anchors [T, F, T]: rows 0 and 2 only,
  # each still against every other column (col 1 included: a non-anchor's photo is a negative).
  anchors = np.array([1, 0, 1], bool)
  np.testing.assert_allclose(losses.triplet_hard(Q3, G3, 0.2, anchors=anchors),
                             (0.4 + 0.56) / 2, rtol=1e-6)
  np.testing.assert_allclose(losses.triplet_all(Q3, G3, 0.2, anchors=anchors),
                             (0.2 + 0.48) / 2, rtol=1e-6)
  # With padding [T, T, F] too: row 0 is the only anchor, and col 2 is no negative for it
  # (hardest col 1: .2 - .8 + 0 < 0); anchors restrict only the mean, padding also the columns.
  valid = np.array([1, 1, 0], bool)
  assert float(losses.triplet_hard(Q3, G3, 0.2, valid=valid, anchors=anchors)) == 0.0
  # margin 1: row 0's hinge 1 - .8 + 0 = .2 over one anchor (col 2's 1.0 would give 1.2).
  np.testing.assert_allclose(losses.triplet_hard(Q3, G3, 1.0, valid=valid, anchors=anchors),
                             0.2, rtol=1e-5)
  # No anchor at all: 0 and a finite (zero) gradient.
  none = np.zeros(3, bool)
  assert float(losses.triplet_hard(Q3, G3, 0.2, anchors=none)) == 0.0
  grad = jax.grad(lambda q: losses.triplet_all(q, G3, 0.2, anchors=none))(Q3)
  np.testing.assert_array_equal(grad, np.zeros_like(Q3))


def test_consistency_is_one_minus_cosine_over_the_valid_rows():
  q = jnp.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  target = jnp.array([[1.0, 0.0], [5.0, 0.0], [-1.0, -1.0]])
  # Rows: same direction (0), orthogonal (1), opposite (2, but not valid): (0 + 1) / 2.
  valid = jnp.array([True, True, False])
  np.testing.assert_allclose(losses.consistency(q, target, valid), 0.5, rtol=1e-6)
  np.testing.assert_allclose(losses.consistency(q, target), 1.0, rtol=1e-6)   # (0 + 1 + 2) / 3
  assert float(losses.consistency(q, target, jnp.zeros(3, bool))) == 0.0


def test_distill_is_the_tempered_kl_from_the_teachers_softmax():
  # Two photos g0 = (1, 0), g1 = (0, 1); s = 2, T = 2, so both softmaxes take logits <., g>.
  # Row 0: teacher (1, 0) -> p = softmax(1, 0); student (0, 1) -> r = softmax(0, 1).
  # Row 1: teacher = student (0, 0) -> p = r = (1/2, 1/2): KL 0.
  g = jnp.eye(2)
  teacher = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  q = jnp.array([[0.0, 1.0], [0.0, 0.0]])
  p0 = np.array([e(1), 1.0]) / (e(1) + 1)
  r0 = np.array([1.0, e(1)]) / (e(1) + 1)
  # log p0 - log r0 = (1, -1), so KL = e / (e + 1) - 1 / (e + 1).
  kl0 = float(np.sum(p0 * (log(p0) - log(r0))))
  np.testing.assert_allclose(kl0, (e(1) - 1) / (e(1) + 1), rtol=1e-6)
  want = 2.0 ** 2 * (kl0 + 0.0) / 2
  np.testing.assert_allclose(losses.distill(q, teacher, g, 2.0, temperature=2.0), want,
                             rtol=1e-5)
  # The teacher is held fixed, and a student equal to its teacher has nothing to learn.
  d_teacher = jax.grad(lambda t: losses.distill(q, t, g, 2.0, temperature=2.0))(teacher)
  assert float(jnp.abs(d_teacher).max()) == 0.0
  d_q = jax.grad(lambda x: losses.distill(x, x, g, 3.0))(jnp.array(Q3[:2]))
  np.testing.assert_allclose(np.asarray(d_q), 0.0, atol=1e-7)
  assert float(jnp.abs(jax.grad(lambda x: losses.distill(x, teacher, g, 2.0))(q)).max()) > 0.1


def test_prototype_loss():
  # Prototypes normalised inside: [[1,0],[0,2]] -> [[1,0],[0,1]]. margin .2, temperature .5.
  protos = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  kw = dict(margin=0.2, temperature=0.5)
  # emb (.6,.8), class 1: cos = (.6, .8); logits = (.6/.5, (.8-.2)/.5) = (1.2, 1.2) -> log 2.
  np.testing.assert_allclose(
      losses.prototype_loss(np.array([[0.6, 0.8]]), np.array([1]), protos, **kw), log(2.0),
      rtol=1e-6)
  # emb (1,0), class 0: logits ((1-.2)/.5, 0) = (1.6, 0) -> log(1 + e^-1.6).
  np.testing.assert_allclose(
      losses.prototype_loss(np.array([[1.0, 0.0]]), np.array([0]), protos, **kw),
      log(1 + e(-1.6)), rtol=1e-6)
  both = losses.prototype_loss(np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]),
                               np.array([1, 0, 0]), protos, valid=np.array([1, 1, 0], bool), **kw)
  np.testing.assert_allclose(both, 0.5 * (log(2.0) + log(1 + e(-1.6))), rtol=1e-6)


def test_info_nce_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(3, 4)).astype(np.float32)
  g = rng.normal(size=(3, 4)).astype(np.float32)
  w = np.array([[1, 2, 1], [2, 1, 1], [1, 1, 1]], np.float32)
  f = lambda q: losses.info_nce(q, g, 1.5, instance=np.array([0, 1, 2]), negative_weights=w)
  grad = np.asarray(jax.grad(f)(q))
  eps = 1e-2
  fd = np.zeros_like(q)
  for i in range(q.shape[0]):
    for j in range(q.shape[1]):
      d = np.zeros_like(q)
      d[i, j] = eps
      fd[i, j] = (float(f(q + d)) - float(f(q - d))) / (2 * eps)
  np.testing.assert_allclose(grad, fd, atol=2e-3)
  # Masked entries (-inf logits) give finite gradients.
  masked = jax.grad(lambda q: losses.info_nce(q, g, 1.0, instance=np.array([0, 0, 1]),
                                              valid=np.array([1, 1, 0], bool)))(q)
  assert np.all(np.isfinite(masked))


def test_gallery_learns_gates_the_gallery_gradient_row_by_row():
  """pair_scores: sum(W * S) has d/dG = (W * m[:, None])^T Q and d/dQ = W G whatever m; so
  symmetric InfoNCE keeps its value and its gradient to Q, and G gets only the rows of dL/dS
  whose query learns it: dL/dS_ij = s / 2B (softmax_j(s S_i.) + softmax_i(s S_.j) - 2 [i = j])."""
  w = np.arange(9, dtype=np.float32).reshape(3, 3) / 4.0
  m = np.array([True, False, True])
  s_of = lambda q, g: jnp.sum(w * losses.pair_scores(q, g, jnp.asarray(m)))
  np.testing.assert_allclose(losses.pair_scores(Q3, G3, jnp.asarray(m)), Q3 @ G3.T, atol=1e-7)
  dq, dg = jax.grad(s_of, argnums=(0, 1))(Q3, G3)
  np.testing.assert_allclose(dq, w @ G3, rtol=1e-6)
  np.testing.assert_allclose(dg, (w * m[:, None]).T @ Q3, rtol=1e-6)

  scale = 2.0
  x = scale * (Q3 @ G3.T)
  soft_rows = e(x) / e(x).sum(1, keepdims=True)
  soft_cols = e(x) / e(x).sum(0, keepdims=True)
  d_scores = scale / (2 * 3) * (soft_rows + soft_cols - 2 * np.eye(3))
  for learns in (None, m, np.zeros(3, bool)):
    gate = np.ones(3, bool) if learns is None else learns
    loss = lambda q, g, gl=learns: losses.info_nce(q, g, scale, gallery_learns=None if gl is None
                                                   else jnp.asarray(gl))
    np.testing.assert_allclose(loss(Q3, G3), losses.info_nce(Q3, G3, scale), rtol=1e-6)
    dq, dg = jax.grad(loss, argnums=(0, 1))(Q3, G3)
    np.testing.assert_allclose(dq, d_scores @ G3, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dg, (d_scores * gate[:, None]).T @ Q3, rtol=1e-5, atol=1e-7)


def test_bfloat16_inputs_compute_in_float32():
  out = losses.info_nce(jnp.asarray(Q3, jnp.bfloat16), jnp.asarray(G3, jnp.bfloat16), 1.0)
  assert out.dtype == jnp.float32


SHARDED = textwrap.dedent('''
  import jax, jax.numpy as jnp, numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from stbir_jax import losses
  assert jax.device_count() == 8, jax.devices()
  rng = np.random.default_rng(0)
  b, d, c = 32, 16, 5
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  q = unit(rng.normal(size=(b, d))).astype(np.float32)
  g = unit(rng.normal(size=(b, d))).astype(np.float32)
  inst = rng.integers(0, 24, b).astype(np.int32)
  inst = np.where(np.arange(b) % 5 == 0, inst, np.arange(b) + 100).astype(np.int32)
  cat = rng.integers(0, 3, b).astype(np.int32)
  valid = np.arange(b) < 29
  protos = rng.normal(size=(c, d)).astype(np.float32)

  def all_losses(q, g, inst, cat, valid, protos):
    w = losses.intra_category_weights(cat, inst, 2.0)
    return dict(
        nce=losses.info_nce(q, g, 10.0, instance=inst, negative_weights=w, valid=valid),
        per=losses.per_example_info_nce(q, g, 10.0, instance=inst, negative_weights=w),
        triplet=losses.triplet_hard(q, g, 0.2, instance=inst, valid=valid),
        proto=losses.prototype_loss(q, cat, protos, margin=0.2, temperature=0.1, valid=valid))

  args = (q, g, inst, cat, valid, protos)
  one = jax.device_put(args, jax.devices()[0])
  ref = jax.jit(all_losses)(*one)
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  rows = NamedSharding(mesh, P('data'))
  shard = (rows, rows, rows, rows, rows, NamedSharding(mesh, P()))
  sharded = jax.device_put(args, shard)
  assert len(sharded[0].sharding.device_set) == 8
  out = jax.jit(all_losses, in_shardings=shard)(*sharded)
  for k in ref:
    diff = float(np.max(np.abs(np.asarray(ref[k]) - np.asarray(out[k]))))
    print(k, np.asarray(ref[k]).ravel()[:1], diff)
    assert diff <= 1e-6, (k, diff)
  print('OK')
''')


def test_sharded_over_8_devices_equals_unsharded():
  env = dict(os.environ, XLA_FLAGS=_xla.flags(8),
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, '-c', SHARDED], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  assert 'OK' in proc.stdout
