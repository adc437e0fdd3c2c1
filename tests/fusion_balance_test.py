"""Fusion lets every modality count: the fused query reacts to the text as much as to the sketch,
at initialisation and after sketch-only stages have grown the sketch embedding's norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stbir_jax.models import fusion as fusion_lib
from stbir_jax.models.stbir import l2_normalize

D, B = 32, 64
# Embedding norms measured on the demo after the paper's two sketch-only stages (issue 13):
# the sketch tower's output grows to ~34 while the untrained text tower's stays at ~1.1.
SKETCH_NORM_AFTER_SKETCH_STAGES, TEXT_NORM = 34.0, 1.1


def _embeddings(key, norm):
  x = jax.random.normal(key, (B, D))
  return norm * x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _sensitivities(kind, normalize, sketch_norm, text_norm):
  """Mean change of the unit query when the text (resp. the sketch) is swapped for another
  query's: (text sensitivity, sketch sensitivity)."""
  ks, kt, kinit = jax.random.split(jax.random.PRNGKey(0), 3)
  s, t = _embeddings(ks, sketch_norm), _embeddings(kt, text_norm)
  other = lambda x: jnp.roll(x, 1, axis=0)
  module = fusion_lib.Fusion(kind=kind, embed_dim=D, normalize=normalize)
  ones = jnp.ones((B,), bool)
  tokens, mask = jnp.zeros((B, 1, D)), jnp.ones((B, 1), bool)
  variables = module.init(kinit, s, tokens, t, tokens, mask, ones, ones)
  query = lambda s_, t_: l2_normalize(module.apply(variables, s_, tokens, t_, tokens, mask, ones,
                                                   ones))
  base = query(s, t)
  text_change = jnp.linalg.norm(query(s, other(t)) - base, axis=-1).mean()
  sketch_change = jnp.linalg.norm(query(other(s), t) - base, axis=-1).mean()
  return float(text_change), float(sketch_change)


@pytest.mark.parametrize('kind', ['sum', 'gated', 'concat'])
@pytest.mark.parametrize('sketch_norm', [TEXT_NORM, SKETCH_NORM_AFTER_SKETCH_STAGES])
def test_normalised_fusion_is_as_sensitive_to_the_text_as_to_the_sketch(kind, sketch_norm):
  text_change, sketch_change = _sensitivities(kind, True, sketch_norm, TEXT_NORM)
  # Swapping either side for a random other one moves the unit query by about 1 (orthogonal
  # halves of a sum: sqrt(2) * sin(45 deg)); "the same order" is within a factor of 2.
  assert 0.5 < text_change / sketch_change < 2.0, (text_change, sketch_change)
  assert text_change > 0.5


@pytest.mark.parametrize('kind', ['sum', 'gated'])
def test_unnormalised_fusion_ignores_the_text_after_sketch_only_stages(kind):
  """The failure the normalisation removes (so the test above can fail): with raw norms
  34 vs 1.1 the text moves the query about 30x less than the sketch."""
  text_change, sketch_change = _sensitivities(kind, False, SKETCH_NORM_AFTER_SKETCH_STAGES,
                                              TEXT_NORM)
  assert text_change / sketch_change < 0.1, (text_change, sketch_change)


def test_null_vectors_are_normalised_and_scaled_like_the_embeddings():
  module = fusion_lib.Fusion(kind='sum', embed_dim=D, normalize=True)
  s, t = _embeddings(jax.random.PRNGKey(1), 5.0), _embeddings(jax.random.PRNGKey(2), 0.1)
  ones, none = jnp.ones((B,), bool), jnp.zeros((B,), bool)
  tokens, mask = jnp.zeros((B, 1, D)), jnp.ones((B, 1), bool)
  variables = module.init(jax.random.PRNGKey(3), s, tokens, t, tokens, mask, ones, ones)
  params = dict(variables['params'], modality_scale=jnp.log(jnp.asarray([2.0, 0.5])))
  out = module.apply({'params': params}, s, tokens, t, tokens, mask, ones, none)
  null_text = params['null_text'] / jnp.linalg.norm(params['null_text'])
  expected = 2.0 * s / 5.0 + 0.5 * null_text
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)
  assert variables['params']['modality_scale'].shape == (2,)
  np.testing.assert_array_equal(np.asarray(variables['params']['modality_scale']), [0.0, 0.0])


def test_sketch_weight_scales_the_halves_of_a_split_query_and_half_is_the_model_as_trained():
  ks, kt = jax.random.split(jax.random.PRNGKey(3))
  s, t = _embeddings(ks, 3.0), _embeddings(kt, 0.5)   # unit() inside: the norms do not count
  tokens, mask = jnp.zeros((B, 1, D)), jnp.ones((B, 1), bool)
  has_sketch = jnp.arange(B) % 3 != 0                  # some text-only queries
  has_text = jnp.ones((B,), bool)
  apply = lambda w, v=None: fusion_lib.Fusion(kind='concat', embed_dim=D, sketch_weight=w).apply(
      v, s, tokens, t, tokens, mask, has_sketch, has_text)
  variables = {'params': {'modality_scale': jnp.log(jnp.array([2.0, 0.5]))}}
  unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  for w in (0.5, 0.25, 1.0):
    out = apply(w, variables)
    # sketch half: 2 w e^a unit(s) (zero without a sketch); text half: 2 (1 - w) e^b unit(t)
    want_s = np.where(np.asarray(has_sketch)[:, None], 2 * w * 2.0 * unit(s), 0.0)
    np.testing.assert_allclose(out[:, :D], want_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, D:], 2 * (1 - w) * 0.5 * unit(t), rtol=1e-5, atol=1e-6)
  # A score is then 2w <s, g_s> + 2(1 - w) <t, g_t>: at 0.5 exactly the trained model's.
  np.testing.assert_array_equal(apply(0.5, variables),
                                fusion_lib.Fusion(kind='concat', embed_dim=D).apply(
                                    variables, s, tokens, t, tokens, mask, has_sketch, has_text))
