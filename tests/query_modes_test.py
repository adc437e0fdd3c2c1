"""Query modes: each forces its missing modality, on numpy and jax batches alike."""

import jax.numpy as jnp
import numpy as np
import pytest

from stbir_jax import query_modes


def test_modes_force_missing_modality():
  batch = {'has_sketch': np.array([True, False]), 'has_text': np.array([True, True])}
  np.testing.assert_array_equal(query_modes.apply_mode(batch, 'sketch')['has_text'], [0, 0])
  np.testing.assert_array_equal(query_modes.apply_mode(batch, 'sketch')['has_sketch'], [1, 0])
  np.testing.assert_array_equal(query_modes.apply_mode(batch, 'text')['has_sketch'], [0, 0])
  np.testing.assert_array_equal(query_modes.apply_mode(batch, 'text')['has_text'], [1, 1])
  assert query_modes.apply_mode(batch, 'sketch+text') is batch
  with pytest.raises(query_modes.QueryModeError, match='valid modes: sketch, text, sketch\\+text'):
    query_modes.apply_mode(batch, 'photo')


def test_a_jax_batch_stays_jax_with_its_dtype():
  batch = {'has_sketch': jnp.array([True, False]), 'has_text': jnp.array([True, True])}
  out = query_modes.apply_mode(batch, 'sketch')
  assert isinstance(out['has_text'], type(batch['has_text'])) and out['has_text'].dtype == bool
  np.testing.assert_array_equal(out['has_text'], [False, False])
