"""The probes' pure parts (probes/ is not a package: loaded by path, with their folder on the
import path as `python probes/<probe>.py` has it)."""

import importlib.util
import os
import sys

import numpy as np
import pytest

PROBES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'probes')


def _load(name):
  if PROBES not in sys.path:
    sys.path.insert(0, PROBES)
  spec = importlib.util.spec_from_file_location(name, os.path.join(PROBES, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_error_kinds_names_which_twin_took_the_top():
  error_kinds = _load('error_kinds').error_kinds
  # 2 structures x 2 appearances: instance 5 is family 1, structure 0, appearance 1.
  top = np.array([5, 4, 7, 6, 1, 9, 5, 5])
  target = np.full(8, 5)
  shares = error_kinds(top, target, structures=2, appearances=2)
  assert shares == pytest.approx({'right': 37.5, 'appearance': 12.5, 'structure': 12.5,
                                  'both': 12.5, 'family': 25.0})


def test_accuracy_by_weight_scores_the_weighted_sum_of_the_halves():
  accuracy_by_weight = _load('sketch_weight_by_bucket').accuracy_by_weight
  # Query 0: the sketch says column 0, the text column 1 (more strongly); query 1: both say 1.
  sketch = np.array([[0.9, 0.1], [0.2, 0.8]])
  text = np.array([[0.1, 0.9], [0.0, 1.0]])
  target = np.array([0, 1])
  # w * sketch + (1 - w) * text for query 0: column 0 wins once w > 0.5 (0.5 is a tie: the
  # first maximum, column 0, wins).
  assert accuracy_by_weight(sketch, text, target, [0.0, 0.25, 0.5, 0.75, 1.0]) == {
      0.0: 50.0, 0.25: 50.0, 0.5: 100.0, 0.75: 100.0, 1.0: 100.0}


def test_frame_alignment_measures_ink_distance_and_undoes_a_move():
  probe = _load('frame_alignment')
  target = np.zeros((1, 16, 16), np.uint8)
  target[0, 4:10, 5] = 1                    # a vertical stroke
  moved = np.roll(target, 3, axis=2)        # the same, 3 px to the right
  assert probe.mean_distance(moved, target) == pytest.approx(3.0)
  # A pair with a blank map is left out, not counted as 0.
  pairs = np.concatenate([moved, np.zeros_like(moved)]), np.concatenate([target, target])
  assert probe.mean_distance(*pairs) == pytest.approx(3.0)
  np.testing.assert_array_equal(probe.framed(moved, None), moved)
  # In a centred frame (box or interquartile) the move is undone exactly.
  for trim in (0.0, 0.25):
    assert probe.mean_distance(probe.framed(moved, trim), probe.framed(target, trim)) == 0.0


def test_score_ensemble_top1_accuracy_counts_the_first_maximum():
  top1_accuracy = _load('score_ensemble').top1_accuracy
  clean = np.array([[0.9, 0.2, 0.1], [0.3, 0.4, 0.5], [0.5, 0.5, 0.0], [0.0, 0.6, 0.3]])
  robust = np.array([[0.1, 0.7, 0.1], [0.1, 0.9, 0.2], [0.2, 0.6, 0.0], [0.0, 0.0, 0.9]])
  target = np.array([0, 1, 0, 2])
  # Clean alone: rows 0 and 2 (a tie: the first column wins) are right.
  assert top1_accuracy(clean, target) == 50.0
  # The even mix: row 0 (0.5 over 0.45), row 1 (0.65 over 0.35), row 3 (0.6 over 0.3); row 2
  # goes to column 1 (0.55 over 0.35).
  assert top1_accuracy(0.5 * clean + 0.5 * robust, target) == 75.0


def test_gallery_size_scores_each_query_within_its_own_family_group():
  probe = _load('gallery_size')
  # Families 7, 7, 9, 9 (two photos each) in groups of one family: photos 0-1 and 2-3.
  groups = probe.family_groups(np.array([7, 7, 9, 9]), 1)
  np.testing.assert_array_equal(groups, [0, 0, 1, 1])
  np.testing.assert_array_equal(probe.family_groups(np.array([7, 7, 9, 9]), 2), [0, 0, 0, 0])
  scores = np.array([[0.5, 0.1, 0.9, 0.0],    # target 0: photo 2 wins overall, 0 within its group
                     [0.2, 0.3, 0.1, 0.0],    # target 1: right both ways
                     [0.0, 0.0, 0.1, 0.4]])   # target 2: photo 3 wins in both
  target = np.array([0, 1, 2])
  everyone = np.zeros(4, int)
  assert probe.grouped_top1(scores, target, everyone, everyone[target]) == pytest.approx(100 / 3)
  assert probe.grouped_top1(scores, target, groups, groups[target]) == pytest.approx(200 / 3)


def test_aligner_alone_undone_is_the_slope_on_the_undo_shift_axes_pooled():
  probe = _load('aligner_alone')
  target = np.array([[0.1, -0.2, 0.3, 0.05],
                     [-0.1, 0.1, -0.1, -0.05]])
  # Shift: half of dy and all of dx predicted; pooled: (0.5 (0.01 + 0.01) + (0.04 + 0.01))
  # / (0.01 + 0.04 + 0.01 + 0.01) = 0.06 / 0.07. Angle ignored (0), scale overshot (x 2).
  warp = target * np.array([0.5, 1.0, 0.0, 2.0])
  shift, angle, scale = probe.undone(warp, target)
  assert shift == pytest.approx(0.06 / 0.07)
  assert angle == pytest.approx(0.0)
  assert scale == pytest.approx(2.0)
