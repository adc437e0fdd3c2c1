"""Retrieval metrics on hand-made rankings and against brute-force (sort-based) references."""

import numpy as np
import pytest

from stbir_jax import metrics


def _ranks_by_sorting(sim, target, valid=None):
  """Reference: sort the gallery by score, ties put the target last (pessimistic)."""
  out = []
  for q in range(sim.shape[0]):
    cols = [j for j in range(sim.shape[1]) if valid is None or valid[j]]
    order = sorted(cols, key=lambda j: (-sim[q, j], j == target[q]))
    out.append(order.index(target[q]) + 1)
  return np.array(out)


def _ap_by_levels(scores, relevant):
  """Reference AP: walk distinct scores high to low; in a tie, non-relevant items come first."""
  seen = hits = 0
  precisions = []
  for level in sorted(set(scores.tolist()), reverse=True):
    at = scores == level
    seen += int(np.sum(at & ~relevant))
    for _ in range(int(np.sum(at & relevant))):
      seen += 1
      hits += 1
      precisions.append(hits / seen)
  return np.mean(precisions) if precisions else np.nan


def test_ranks_hand_made():
  sim = np.array([[0.9, 0.5, 0.1],
                  [0.2, 0.2, 0.7],
                  [0.3, 0.3, 0.3]])
  # q0: target best -> 1. q1: target 0.2 ties col 0 and is below col 2 -> 3. q2: all tie -> 3.
  np.testing.assert_array_equal(metrics.ranks(sim, np.array([0, 1, 2])), [1, 3, 3])
  # Column 2 is padding: q1 -> 2 (only the tie), q2 (target 0) -> 2.
  valid = np.array([True, True, False])
  np.testing.assert_array_equal(metrics.ranks(sim, np.array([0, 1, 0]), valid), [1, 2, 2])
  np.testing.assert_array_equal(metrics.ranks_jax(sim, np.array([0, 1, 0]), valid), [1, 2, 2])


def test_ranks_errors_name_the_problem():
  sim = np.zeros((2, 3))
  with pytest.raises(ValueError, match='out of range'):
    metrics.ranks(sim, np.array([0, 3]))
  with pytest.raises(ValueError, match='padded'):
    metrics.ranks(sim, np.array([0, 2]), np.array([True, True, False]))
  with pytest.raises(ValueError, match='target_index'):
    metrics.ranks(sim, np.array([0]))


def test_retrieval_metrics_hand_made():
  m = metrics.retrieval_metrics([1, 3, 3, 12])
  assert m == {'acc@1': 0.25, 'acc@5': 0.75, 'acc@10': 0.75,
               'mAP': pytest.approx((1 + 1 / 3 + 1 / 3 + 1 / 12) / 4),
               'mean_rank': 19 / 4, 'median_rank': 3.0, 'num_queries': 4}
  with pytest.raises(ValueError, match='no ranks'):
    metrics.retrieval_metrics([])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_ranks_match_sorting_reference_with_ties(seed):
  rng = np.random.default_rng(seed)
  q, n = 10, 13
  sim = rng.integers(0, 4, (q, n)).astype(np.float32)  # many ties
  valid = rng.random(n) < 0.8
  target = rng.choice(np.flatnonzero(valid), q)
  ref = _ranks_by_sorting(sim, target, valid)
  np.testing.assert_array_equal(metrics.ranks(sim, target, valid), ref)
  for chunk in (1, 3, 7, 64):
    np.testing.assert_array_equal(metrics.ranks_jax(sim, target, valid, chunk_size=chunk), ref)
  np.testing.assert_array_equal(metrics.ranks(sim, target), _ranks_by_sorting(sim, target))
  # Integer embeddings: the dot products are exact, so ties survive the matmul.
  qe = rng.integers(-2, 3, (q, 4)).astype(np.float32)
  ge = rng.integers(-2, 3, (n, 4)).astype(np.float32)
  ref_e = _ranks_by_sorting(qe @ ge.T, target, valid)
  for chunk in (1, 4, 1024):
    np.testing.assert_array_equal(
        metrics.ranks_from_embeddings(qe, ge, target, valid, chunk_size=chunk), ref_e)


def test_map_multi_hand_made():
  # Relevant at positions 1 and 3: AP = (1/1 + 2/3) / 2 = 5/6.
  assert metrics.map_multi([[0.9, 0.8, 0.7, 0.6]], [[1, 0, 1, 0]]) == pytest.approx(5 / 6)
  # A tie with a non-relevant item puts the relevant one second: AP = 1/2.
  assert metrics.map_multi([[0.5, 0.5, 0.1]], [[1, 0, 0]]) == pytest.approx(0.5)
  # All tied, 2 relevant of 3: order (non, rel, rel): AP = (1/2 + 2/3) / 2 = 7/12.
  assert metrics.map_multi([[0.5, 0.5, 0.5]], [[1, 0, 1]]) == pytest.approx(7 / 12)
  # Queries without relevant items are skipped; padding columns are dropped.
  ap = metrics.average_precision_multi([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3]],
                                       [[0, 0, 1], [0, 0, 0]], valid_gallery=[False, True, True])
  np.testing.assert_allclose(ap, [0.5, np.nan])
  assert metrics.map_multi([[0.9, 0.8, 0.7], [1, 1, 1]], [[0, 0, 1], [0, 0, 0]]) == (
      pytest.approx(1 / 3))
  with pytest.raises(ValueError, match='no query has a relevant'):
    metrics.map_multi([[0.1, 0.2]], [[0, 0]])


@pytest.mark.parametrize('seed', [0, 1])
def test_map_multi_matches_reference_and_single_relevant_ranks(seed):
  rng = np.random.default_rng(seed)
  sim = rng.integers(0, 3, (12, 9)).astype(np.float64)
  rel = rng.random((12, 9)) < 0.3
  ap = metrics.average_precision_multi(sim, rel)
  ref = np.array([_ap_by_levels(sim[i], rel[i]) for i in range(12)])
  np.testing.assert_allclose(ap, ref)
  # One relevant item per query: AP == 1 / rank, so map_multi == retrieval_metrics mAP.
  target = rng.integers(0, 9, 12)
  one = np.eye(9, dtype=bool)[target]
  assert metrics.map_multi(sim, one) == pytest.approx(
      metrics.retrieval_metrics(metrics.ranks(sim, target))['mAP'])
