"""What a perfect reader learns from the strokes a robustness bucket leaves (ceiling_strokes),
against hand-computed probabilities, the bucket's own JAX degradation and the drawer."""

import itertools

import jax
import numpy as np
import pytest

from stbir_jax import degradations
from stbir_jax.data import ceiling, ceiling_strokes, synth
from stbir_jax.data.ceiling_strokes import FIRST, NONE, SECOND, WHOLE
from stbir_jax.data.synth import geometry, render

SHOE = synth.categories.CATEGORIES['shoes'][0]


def _strokes(*elements):
  return ceiling_strokes.Strokes.of(render.Drawing(list(elements)))


def _line(x, rank=2, minor=False):
  return geometry.line([(x, 0.0), (x, 1.0)], 'dark', rank=rank, minor=minor)


def _draws(first, two, count):
  return ceiling_strokes.Draws(first=np.asarray([first]), two=np.asarray([two]),
                               count=np.asarray([count]))


def _likelihood(strokes, draws, visible_states, p, keep):
  visible = {k: s for k, s in zip(strokes.keys, visible_states, strict=True) if s != NONE}
  return ceiling_strokes.likelihood(visible, strokes, draws, p, keep)


def test_two_strokes_half_kept_leave_the_first_always_and_the_second_never():
  strokes = _strokes(_line(0.0, rank=0), _line(0.5, rank=0))   # outline group: fixed order
  draws = _draws([1, 2], [False, False], 2)
  # keep_fraction 0.5 of 2 strokes keeps stroke 1 only; dropped (0.4), it is shown anyway.
  assert _likelihood(strokes, draws, [WHOLE, NONE], 0.4, 0.5) == pytest.approx(1.0)
  assert _likelihood(strokes, draws, [NONE, WHOLE], 0.4, 0.5) == 0.0
  assert _likelihood(strokes, draws, [NONE, NONE], 0.4, 0.5) == 0.0
  # Both kept: 0.6 * 0.6; the first alone: 0.6 * 0.4 + both dropped (0.16), shown anyway.
  assert _likelihood(strokes, draws, [WHOLE, WHOLE], 0.4, 1.0) == pytest.approx(0.36)
  assert _likelihood(strokes, draws, [WHOLE, NONE], 0.4, 1.0) == pytest.approx(0.40)
  assert _likelihood(strokes, draws, [NONE, WHOLE], 0.4, 1.0) == pytest.approx(0.24)


def test_an_element_drawn_as_two_strokes_can_leave_either_half():
  strokes = _strokes(_line(0.0, rank=0), _line(0.5))
  draws = _draws([1, 3], [True, False], 3)     # ids 1, 2 the first element's halves, 3 the line
  # p = 0.5, all three ids kept by the partial drawing: every pattern of survivors has 1/8.
  assert _likelihood(strokes, draws, [SECOND, WHOLE], 0.5, 1.0) == pytest.approx(0.125)
  assert _likelihood(strokes, draws, [WHOLE, NONE], 0.5, 1.0) == pytest.approx(0.125)
  # The first half alone: kept alone (1/8), or nothing kept and stroke 1 shown (1/8).
  assert _likelihood(strokes, draws, [FIRST, NONE], 0.5, 1.0) == pytest.approx(0.25)
  # keep_fraction 0.5 of 3 strokes keeps ids 1 and 2: the line never remains.
  assert _likelihood(strokes, draws, [WHOLE, WHOLE], 0.5, 0.5) == 0.0
  assert _likelihood(strokes, draws, [SECOND, NONE], 0.5, 0.5) == pytest.approx(0.25)


def test_an_element_the_structure_lacks_rules_it_out():
  with_cap = _strokes(_line(0.0, rank=0), _line(0.5))
  without = _strokes(_line(0.0, rank=0))
  draws = ceiling_strokes.draw(without, 10.0, 64, np.random.default_rng(0), 64)
  visible = {with_cap.keys[1]: WHOLE}
  assert ceiling_strokes.likelihood(visible, without, draws, 0.4, 1.0) == 0.0
  # ... while the outline alone is explained by both.
  assert ceiling_strokes.likelihood({with_cap.keys[0]: WHOLE}, without, draws, 0.4, 1.0) > 0


@pytest.mark.parametrize('p, keep', [(0.4, 0.5), (0.25, 0.75), (0.0, 1.0)])
def test_the_likelihood_of_every_possible_remainder_sums_to_one(p, keep):
  strokes = _strokes(geometry.fill([(0, 0), (1, 0), (1, 1), (0, 1)], 'main', rank=0),
                     _line(0.3), _line(0.6), _line(0.9, rank=3, minor=True))
  draws = ceiling_strokes.draw(strokes, 30.0, 64, np.random.default_rng(1), 256)
  assert draws.two.any() and (draws.first == 0).any()    # some splits, some omissions
  total = sum(_likelihood(strokes, draws, states, p, keep)
              for states in itertools.product([NONE, FIRST, SECOND, WHOLE], repeat=4))
  assert total == pytest.approx(1.0)


def test_the_likelihood_matches_the_buckets_own_stroke_degradation():
  # A stroke-order map holding ids 1..5, one pixel each; keep ids as degradations._keep_strokes
  # does, over many keys, and count each pattern of what remains.
  strokes = _strokes(_line(0.0, rank=0), _line(0.25), _line(0.5), _line(0.75))
  draws = _draws([1, 3, 4, 5], [True, False, False, False], 5)
  sketch = np.zeros((4, 4), np.uint8)
  sketch.flat[:5] = np.arange(1, 6)
  p, keep = 0.4, 0.7                     # ceil(0.7 * 5) = 4: ids 1..4
  kept = jax.vmap(lambda k: degradations._keep_strokes(k, sketch, p, keep))(
      jax.random.split(jax.random.key(0), 20_000))
  ids = np.asarray(kept).reshape(len(kept), -1)[:, :5] > 0
  patterns, counts = np.unique(ids, axis=0, return_counts=True)
  for pattern, n in zip(patterns, counts, strict=True):
    a, b = pattern[0], pattern[1]
    states = [WHOLE if a and b else FIRST if a else SECOND if b else NONE, *(
        WHOLE if x else NONE for x in pattern[2:])]
    assert n / len(ids) == pytest.approx(_likelihood(strokes, draws, states, p, keep), abs=0.01)
  assert not ids[:, 4].any()             # id 5 is past the partial drawing
  assert ceiling_strokes.KEEP_EPS == degradations._CEIL_EPS


def test_draws_match_the_drawers_stroke_counts():
  # The number of strokes render_sketch draws for a real shoe and pose, against draw()'s.
  structure = synth.twins.base_structure(np.random.default_rng(3), SHOE)
  drawing = render.Drawing(SHOE.build(structure))
  rng = np.random.default_rng(4)
  linear, translation = render.pose(rng, drawing, 64)
  drawn = [int(render.render_sketch(rng, drawing, linear, translation, 64).max())
           for _ in range(400)]
  scale = ceiling._scale_angle(linear)[0]
  draws = ceiling_strokes.draw(ceiling_strokes.Strokes.of(drawing), scale, 64,
                               np.random.default_rng(5), 4000)
  assert np.mean(drawn) == pytest.approx(draws.count.mean(), abs=0.25)
  assert min(drawn) >= draws.count.min() and max(drawn) <= draws.count.max()
  # Stroke 1 is always the outline's first.
  outline = int(np.flatnonzero(drawing.rank == 0)[0])
  assert (draws.first[:, outline] == 1).all()


def test_a_query_that_loses_its_details_ties_the_structures_that_differ_only_in_them():
  spec = synth.SynthSpec(resolution=32, test_families=2, structural_variants=2,
                         appearance_variants=2, sketches_per_instance=2, texts_per_instance=2)
  blind = ceiling.ceiling('shoes', 'test', spec, pose_blind=True)
  untouched = ceiling.ceiling('shoes', 'test', spec, pose_blind=True, stroke_dropout=0.0,
                              keep_fraction=1.0)
  assert untouched == blind and blind['sketch'] == 0.5
  # Only the outline's first stroke remains: structures with the same outline tie.
  outline_only = ceiling.ceiling('shoes', 'test', spec, pose_blind=True, keep_fraction=1e-3,
                                 stroke_samples=64)
  assert outline_only['sketch'] < blind['sketch']
  assert outline_only['text'] == blind['text']
  severe = ceiling.ceiling('shoes', 'test', spec, stroke_dropout=0.4, keep_fraction=0.5,
                           stroke_samples=64)
  clean = ceiling.ceiling('shoes', 'test', spec)
  assert severe['sketch'] <= clean['sketch'] and severe['sketch+text'] <= 1.0
  with pytest.raises(ValueError, match='keep_fraction=0'):
    ceiling.ceiling('shoes', 'test', spec, keep_fraction=0.0)
  with pytest.raises(ValueError, match='stroke_dropout=1.5'):
    ceiling.ceiling('shoes', 'test', spec, stroke_dropout=1.5)
