"""Tests of stbir_jax.models.canonical: one frame for a sketch and its photo (hand-made maps)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import pytest

from stbir_jax.models import canonical
from stbir_jax.models.stbir import STBIR
from tests.models_test import init, make_batch, tiny_model_config


def test_mass_box_holds_all_but_trim_of_the_mass_at_each_end():
  mass = np.zeros((8, 8), np.float32)
  mass[2, 1] = mass[2, 6] = 1.0     # rows: all mass in row 2 and row 5
  mass[5, 3] = 2.0                  # columns: 1 at 1, 2 at 3, 1 at 6 (cdf 0.25, 0.75, 1)
  np.testing.assert_array_equal(canonical.mass_box(jnp.asarray(mass), 0.0), [2, 5, 1, 6])
  # Rows: cdf 0.5 at row 2, 1 at row 5. Beyond a quarter at each end: rows 2 .. 5, columns 3 .. 3.
  np.testing.assert_array_equal(canonical.mass_box(jnp.asarray(mass), 0.25), [2, 5, 3, 3])
  np.testing.assert_array_equal(canonical.mass_box(jnp.zeros((8, 8)), 0.25), [0, 7, 0, 7])


def test_edge_mass_finds_an_object_on_a_smooth_gradient_but_not_the_gradient():
  r = 16
  ramp = np.linspace(40, 230, r)              # a background step of 12.7 levels: 0.05 < EDGE_STEP
  photo = np.broadcast_to(ramp[None, :, None], (r, r, 3)).astype(np.uint8).copy()
  assert not np.asarray(canonical.edge_mass(jnp.asarray(photo))).any()
  photo[4:9, 6:12] = 10                        # a dark object
  edges = np.asarray(canonical.edge_mass(jnp.asarray(photo)))
  # Both pixels of every pair across the object's border: one pixel beyond it on each side.
  np.testing.assert_array_equal(canonical.mass_box(jnp.asarray(edges), 0.0), [3, 9, 5, 12])
  assert not edges[6, 8]                       # the object's flat inside is not an edge


def test_centred_sketches_ignore_a_whole_pixel_move_and_keep_stroke_ids():
  sketch = np.zeros((3, 16, 16), np.uint8)
  sketch[0, 1:4, 2:8] = 1
  sketch[0, 2, 3] = 2
  sketch[1] = np.roll(sketch[0], (6, 5), axis=(0, 1))   # nothing crosses the edge
  out = np.asarray(canonical.centre_sketches(jnp.asarray(sketch)))
  np.testing.assert_array_equal(out[0], out[1])
  # Rows 1 .. 3 hold 6 pixels each: the interquartile midpoint is row (1 + 3) / 2 = 2; columns
  # 2 .. 7 hold 3 each: (3 + 6) / 2 = 4.5. To the centre 7.5 by whole pixels, floor(d + 1/2):
  # rows 5, columns 3.
  want = np.roll(sketch[0], (5, 3), axis=(0, 1))
  np.testing.assert_array_equal(out[0], want)
  np.testing.assert_array_equal(out[2], 0)
  assert out.dtype == np.uint8


def test_a_few_spurious_strokes_move_the_sketch_centre_less_than_its_box():
  sketch = np.zeros((32, 32), np.uint8)
  sketch[10:22, 10] = sketch[10:22, 21] = 1
  sketch[10, 10:22] = sketch[21, 10:22] = 1               # a square outline, centre 15.5
  noisy = sketch.copy()
  noisy[30, 0:6] = 2                                       # a short stroke near the corner
  box = lambda s, trim: np.asarray(canonical.mass_box(jnp.asarray(s > 0, jnp.float32), trim))
  centre = lambda b: ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2)
  assert centre(box(sketch, 0.25)) == centre(box(sketch, 0.0)) == (15.5, 15.5)
  assert centre(box(noisy, 0.0)) == (20.0, 10.5)          # the box follows the stroke
  # 50 ink pixels. Rows: 12 in row 10 (cdf 0.24), 2 a row to row 20 (0.64), 12 in row 21 (0.88):
  # quartile rows 11 and 21. Columns: 6 of noise (0.12), 12 in column 10 (0.36), 2 a column to
  # column 20 (0.76): quartile columns 10 and 20. Half a pixel each way from the clean centre.
  assert centre(box(noisy, canonical.SKETCH_QUANTILE)) == (16.0, 15.0)


def test_centred_photos_ignore_a_whole_pixel_move_of_the_object():
  photo = np.full((2, 16, 16, 3), 200, np.uint8)
  photo[0, 2:6, 3:9] = (20, 60, 90)
  photo[1] = np.roll(photo[0], (7, 4), axis=(0, 1))
  out = np.asarray(canonical.centre_photos(jnp.asarray(photo)))
  np.testing.assert_array_equal(out[0], out[1])
  # Edge box rows 1 .. 6, columns 2 .. 9: centre (3.5, 5.5) to 7.5 moves by (4, 2).
  np.testing.assert_array_equal(out[0], np.roll(photo[0], (4, 2), axis=(0, 1)))


def test_model_in_a_centred_frame_embeds_a_moved_pair_alike():
  c = tiny_model_config(image_kind='resnet')
  c.canonical_frame = 'centre'
  model = STBIR(c)
  batch = make_batch()
  sketch = np.zeros((3, 32, 32), np.uint8)
  sketch[:, 10:20, 8:14] = np.asarray(batch['sketch'])[:, :10, :6]
  photo = np.full((3, 32, 32, 3), 128, np.uint8)
  photo[:, 10:20, 8:14] = np.asarray(batch['image'])[:, :10, :6] // 4   # dark: edges all round
  batch = dict(batch, sketch=jnp.asarray(sketch), image=jnp.asarray(photo))
  moved = dict(batch, sketch=jnp.asarray(np.roll(sketch, (5, 9), axis=(1, 2))),
               image=jnp.asarray(np.roll(photo, (-4, 6), axis=(1, 2))))
  params = init(model, batch)
  run = jax.jit(lambda p, b: model.apply({'params': p}, b))
  a, b = run(params, batch), run(params, moved)
  np.testing.assert_allclose(np.asarray(a['query']), np.asarray(b['query']), atol=1e-6)
  np.testing.assert_allclose(np.asarray(a['gallery']), np.asarray(b['gallery']), atol=1e-6)
  c.canonical_frame = 'none'    # without it both towers see the move
  plain = STBIR(c)
  p = init(plain, batch)
  run = jax.jit(lambda p, b: plain.apply({'params': p}, b))
  a, b = run(p, batch), run(p, moved)
  assert np.abs(np.asarray(a['query']) - np.asarray(b['query'])).max() > 1e-3
  assert np.abs(np.asarray(a['gallery']) - np.asarray(b['gallery'])).max() > 1e-3


def test_an_unknown_frame_is_refused_by_name():
  c = tiny_model_config(image_kind='resnet')
  c.canonical_frame = 'box'
  with pytest.raises(ValueError, match="canonical_frame='box'.*'none', 'centre'"):
    init(STBIR(c), make_batch())
