"""Both sides of a match moved to one frame before their towers (config.model.canonical_frame).

A sketch is drawn over its photo's pose and the flattened towers read where strokes are, so a
sketch moved after drawing no longer lines up with its photo. Centring the sketch alone does not
help (docs/results.md, "A centred sketch"): the photo stays where it was. With 'centre' both
move, by whole pixels:

  sketch: the midpoint of its ink's interquartile range, per axis, to the image centre. A
          quantile, not the box or the centroid, so that a few spurious or dropped strokes move
          it little (a spurious stroke at the frame's edge stretches a box by its whole reach).
  photo:  the centre of the box of its edges to the image centre (a product photo's background
          is plain or a smooth gradient, so its strong edges are the object's; what enters the
          frame repeats the edge pixels, as the background continues).

A shift of the whole sketch is then undone up to the quantiles' own movement; rotation and scale
stay. Pure functions of a batch, inside the model's jit.
"""

import jax
import jax.numpy as jnp

from stbir_jax import degradations

FRAMES = ('none', 'centre')
# A photo pixel is an edge where its grey level differs from a neighbour's by this much (of the
# 0-1 range): far above a smooth background's step (at most ~0.012 a pixel at 64 px), below an
# object outline's.
EDGE_STEP = 0.1
# The sketch's centre is the midpoint of these quantiles of its ink, per axis.
SKETCH_QUANTILE = 0.25


def mass_box(mass, trim):
  """(R, R) non-negative mass -> (y0, y1, x0, x1) float32: per axis, the first pixel where the
  cumulative mass exceeds `trim` of the total and the first where it reaches 1 - trim (trim 0:
  the first and last non-zero row and column; 0.5: the median twice). An empty map gives
  (0, R - 1) on both axes, whose centre is the image centre."""
  r = mass.shape[0]

  def bounds(profile):
    total = jnp.sum(profile)
    cdf = jnp.cumsum(profile) / jnp.maximum(total, 1e-12)
    lo = jnp.argmax(cdf > trim)
    hi = jnp.argmax(cdf >= 1.0 - trim - 1e-6)
    empty = total <= 0
    return (jnp.where(empty, 0, lo).astype(jnp.float32),
            jnp.where(empty, r - 1, hi).astype(jnp.float32))

  y0, y1 = bounds(jnp.sum(mass, 1))
  x0, x1 = bounds(jnp.sum(mass, 0))
  return jnp.stack([y0, y1, x0, x1])


def edge_mass(image):
  """uint8 (R, R, 3) photo -> float32 (R, R): 1 at both pixels of every horizontal or vertical
  neighbour pair whose grey levels differ by >= EDGE_STEP, else 0."""
  grey = jnp.mean(image.astype(jnp.float32), -1) / 255.0
  dy = jnp.abs(grey[1:] - grey[:-1]) >= EDGE_STEP
  dx = jnp.abs(grey[:, 1:] - grey[:, :-1]) >= EDGE_STEP
  below, above = ((1, 0), (0, 0)), ((0, 1), (0, 0))   # a pair marks its lower and upper pixel
  right, left = ((0, 0), (1, 0)), ((0, 0), (0, 1))
  edge = jnp.pad(dy, below) | jnp.pad(dy, above) | jnp.pad(dx, right) | jnp.pad(dx, left)
  return edge.astype(jnp.float32)


def move_to_centre(x, cy, cx, *, edge: bool):
  """x (R, R[, C]) moved by whole pixels so that the point (cy, cx) is the image centre; what
  leaves the frame is lost, what enters is 0 (or repeats the edge with `edge`)."""
  r = x.shape[0]
  # floor(d + 1/2), not round-half-even: a map moved by whole pixels is moved back exactly.
  offset = lambda c: jnp.floor(c - (r - 1) / 2.0 + 0.5).astype(jnp.int32)
  return degradations.translate(x, -offset(cy), -offset(cx), edge=edge)


def _box_to_centre(x, box, edge: bool):
  return move_to_centre(x, (box[0] + box[1]) / 2.0, (box[2] + box[3]) / 2.0, edge=edge)


def centre_sketches(sketch, quantile=SKETCH_QUANTILE):
  """uint8 stroke-order maps (B, R, R) -> each moved so that the midpoint of its ink's
  interquartile range (the range within `quantile` of each end) is the image centre (what leaves
  the frame is dropped); blank ones stay."""
  return jax.vmap(lambda s: _box_to_centre(
      s, mass_box((s > 0).astype(jnp.float32), quantile), edge=False))(sketch)


def centre_photos(image):
  """uint8 (B, R, R, 3) -> each moved so that the box of its edges is centred (the frame's edge
  pixels repeat into what is vacated); a photo without edges stays."""
  return jax.vmap(lambda p: _box_to_centre(p, mass_box(edge_mass(p), 0.0), edge=True))(image)
