"""A learned spatial aligner for the sketch (config.model.sketch_align): a spatial transformer
(Jaderberg et al. 2015) that reads the sketch, predicts a shift, a rotation and a scale, and
warps the sketch by them before its tower.

Why: the flattened sketch tower reads where strokes are, and a sketch moved after drawing (the
robustness buckets' jitter) no longer lines up with its photo; jitter is the degradation that
costs a degraded query most (docs/results.md, "Which degradation costs a degraded query most").
Fixed frames (a centred sketch, both sides centred) threw the photo's pose away with the jitter.
A learned warp is trained by the retrieval loss itself, so it moves a sketch only as far as that
helps its match.

The last layer starts at zero, so a new aligner is the identity: added to a trained run
(train.init_from), the model starts exactly where that run ended. Pure functions of a batch,
inside the model's jit.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbir_jax import degradations

# The largest warp the aligner can predict: shift as a fraction of the image, rotation in
# radians, scale as a log. Twice the severe bucket's jitter (0.1: shift 0.1, rotation 0.1 pi,
# scale 1 +- 0.1), so a sketch jittered that far can be moved back.
MAX_SHIFT = 0.2
MAX_ANGLE = 0.2 * jnp.pi
MAX_LOG_SCALE = 0.2
# One unit of each warp parameter in the regression on the jitter (loss.align_jitter): the
# moderate bucket's jitter range (shift 0.06 of the image, rotation 0.06 pi, scale 1 +- 0.06).
WARP_UNITS = (0.06, 0.06, 0.06 * jnp.pi, 0.06)
# What trains the aligner (config.model.sketch_align_learns): 'both' the retrieval loss through
# the warped sketch and loss.align_jitter; 'jitter' loss.align_jitter alone.
LEARNS = ('both', 'jitter')


def warp(x, shift, angle, log_scale):
  """One map x (R, R, C) scaled by exp(log_scale), rotated by `angle` about its centre and then
  moved by `shift` (dy, dx) pixels, sampled bilinearly (differentiable in the warp); what enters
  the frame is 0. With a zero warp every output pixel samples its own pixel: x exactly."""
  r = x.shape[0]
  # The jitter's inverse map (degradations._warp rounds it; here it is sampled bilinearly).
  sy, sx = degradations.source_pixels(r, shift, jnp.exp(log_scale), angle)
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

  def tap(yi, xi):
    inside = ((yi >= 0) & (yi < r) & (xi >= 0) & (xi < r))[..., None]
    return jnp.where(inside, x[jnp.clip(yi, 0, r - 1), jnp.clip(xi, 0, r - 1)], 0.0)

  return ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1))
          + fy * ((1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)))


class SketchAligner(nn.Module):
  """(B, R, R, C) float maps, 0 = background -> (the same maps warped (B, R, R, C), the warp
  (B, 4): shift dy, dx as fractions of the image, angle, log scale).

  A small strided CNN whose last map is flattened (a shift must be seen to be undone), a hidden
  layer, and a zero-initialised layer to the four warp parameters, each bounded by tanh.

  With retrieval_grad=False the warp is applied as a constant: the retrieval loss trains the
  towers behind it and not the aligner, which then learns only from the warp it returns
  (loss.align_jitter's regression).

  `shift` (B, 2) pixels, optional: a move (dy, dx) applied after the predicted warp, in the same
  resampling; the returned warp is the prediction alone (train.pair_shift_after_align)."""
  width: int = 16
  hidden: int = 32
  retrieval_grad: bool = True

  @nn.compact
  def __call__(self, x, shift=None):
    r = x.shape[1]
    h = jnp.mean(x.astype(jnp.float32), -1, keepdims=True)
    for i in range(3):
      h = nn.relu(nn.Conv(self.width * 2 ** i, (3, 3), strides=2, name=f'conv{i}')(h))
    h = nn.relu(nn.Dense(self.hidden, name='hidden')(h.reshape(h.shape[0], -1)))
    raw = nn.Dense(4, kernel_init=nn.initializers.zeros, name='warp')(h)
    bounds = jnp.array([MAX_SHIFT, MAX_SHIFT, MAX_ANGLE, MAX_LOG_SCALE], jnp.float32)
    params = jnp.tanh(raw) * bounds
    applied = params if self.retrieval_grad else jax.lax.stop_gradient(params)
    moves = applied[:, :2] * r + (0.0 if shift is None else shift)
    out = jax.vmap(warp)(x.astype(jnp.float32), moves, applied[:, 2], applied[:, 3])
    return out.astype(x.dtype), params
