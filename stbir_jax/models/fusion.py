"""Fusion of the sketch and text sides of a query into one embedding (config.model.fusion.kind).

Inputs (per example b): sketch embedding s (B, D) and tokens (B, Ns, Cs); text embedding t
(B, D), tokens (B, L, Ct) and mask (B, L); has_sketch, has_text (B,) bool. Output: (B, D), not
normalised. With 'concat', s and t are (B, D/2) each.

A missing modality is replaced, per example (jnp.where), by LEARNED NULL inputs, so sketch-only,
text-only and even empty queries are queries of the same model; nothing of the missing side's
(garbage) inputs reaches the output. ('concat' zeroes the missing side's half instead.)

With `normalize` (config.model.fusion.normalize, the default of every config since the module 3
study in docs/results.md), 'sum' and 'gated' first L2-normalise each side, null vectors
included, and multiply it by a learned per-modality scale exp(modality_scale[i]) (init 1). The
weight of the text in a query is then a learned choice: without it the tower whose output norm
grows fastest (the sketch's, to ~34 against the text's ~1 after sketch-only stages) drowns the
other one, and the fused query ignores the text.

  'sum'              s' + t'          s' = s if has_sketch else null_sketch; t' likewise
  'gated'            g * s' + (1 - g) * t',  g = sigmoid(gate([s'; t'])) per dimension
  'concat'           [e^a unit(s); e^b unit(t)]: each modality in its own half of the embedding,
                     a missing side's half zero. The photo's embedding is split the same way
                     (STBIR.encode_gallery), so a query's score is the weighted sum of a sketch
                     score and a text score, late fusion inside one model: no modality can drown
                     the other, and a single-modality query ranks by its own half alone. The
                     sketch and text towers project to D/2 each. `sketch_weight` w
                     (config.model.fusion.sketch_weight, default 0.5: no change) scales the
                     halves by 2w and 2(1 - w): the query-time weight of the sketch score that
                     `python -m stbir_jax.calibrate` chooses on validation after training
                     (docs/results.md, "A query-time sketch weight").
  'cross_attention'  a pre-LN transformer over [query] + sketch_proj(sketch tokens)
                     + text_proj(text tokens), each plus its modality embedding, with a
                     key-padding mask; out = out_proj(norm(h[query])). A missing side becomes
                     one null token (its other tokens masked out), so with both missing the
                     output is a learned constant (the null query).

Parameter trees:
  sum:              null_sketch (D,), null_text (D,) [+ modality_scale (2,): log scales of
                    sketch, text, with normalize]
  gated:            null_sketch, null_text, gate/{kernel (2D, D), bias} [+ modality_scale]
  concat:           modality_scale (2,) (no null vectors: a missing half is zero)
  cross_attention:  query (F,), modality_embedding (3, F) [query, sketch, text],
                    null_sketch (F,), null_text (F,), sketch_proj/{kernel, bias},
                    text_proj/{kernel, bias}, encoder/layer_{i}/... (layers.py; exact gelu,
                    eps 1e-6), norm/{scale, bias}, out_proj/{kernel (F, D), bias}
with F = fusion.hidden.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbir_jax.models import layers

KINDS = ('sum', 'gated', 'concat', 'cross_attention')
SPLIT_KINDS = ('concat',)   # kinds whose query and photo embeddings are [sketch half; text half]
NULL_INIT = nn.initializers.normal(0.02)


def unit(x):
  """x / |x| along the last axis, in float32 (a near-zero vector stays near zero)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


class Fusion(nn.Module):
  kind: str = 'cross_attention'
  embed_dim: int = 512
  hidden: int = 512
  layers: int = 2
  heads: int = 8
  mlp_dim: int = 2048
  normalize: bool = False
  sketch_weight: float = 0.5   # 'concat' only: halves scaled by 2w, 2(1 - w)
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, sketch_emb, sketch_tokens, text_emb, text_tokens, text_mask, has_sketch,
               has_text):
    layers.check_choice('config.model.fusion.kind', self.kind, KINDS)
    has_s = has_sketch.astype(bool)[:, None]
    has_t = has_text.astype(bool)[:, None]
    if self.kind == 'concat':
      log_scale = self.param('modality_scale', nn.initializers.zeros, (2,), jnp.float32)
      w = self.sketch_weight
      s = jnp.where(has_s, unit(sketch_emb) * (jnp.exp(log_scale[0]) * 2.0 * w), 0.0)
      t = jnp.where(has_t, unit(text_emb) * (jnp.exp(log_scale[1]) * 2.0 * (1.0 - w)), 0.0)
      return jnp.concatenate([s, t], axis=-1)
    if self.kind in ('sum', 'gated'):
      d = sketch_emb.shape[-1]
      s = jnp.where(has_s, sketch_emb, self.param('null_sketch', NULL_INIT, (d,), jnp.float32))
      t = jnp.where(has_t, text_emb, self.param('null_text', NULL_INIT, (d,), jnp.float32))
      if self.normalize:
        log_scale = self.param('modality_scale', nn.initializers.zeros, (2,), jnp.float32)
        s = unit(s) * jnp.exp(log_scale[0])
        t = unit(t) * jnp.exp(log_scale[1])
      if self.kind == 'sum':
        return s + t
      g = nn.sigmoid(nn.Dense(d, dtype=self.dtype, kernel_init=layers.DENSE_INIT, name='gate')(
          jnp.concatenate([s, t], axis=-1)))
      return g * s + (1.0 - g) * t
    return self._cross_attention(sketch_tokens, text_tokens, text_mask, has_s, has_t)

  def _cross_attention(self, sketch_tokens, text_tokens, text_mask, has_s, has_t):
    f, b = self.hidden, sketch_tokens.shape[0]
    query = self.param('query', NULL_INIT, (f,), jnp.float32)
    modality = self.param('modality_embedding', NULL_INIT, (3, f), jnp.float32)
    null_s = self.param('null_sketch', NULL_INIT, (f,), jnp.float32).astype(self.dtype)
    null_t = self.param('null_text', NULL_INIT, (f,), jnp.float32).astype(self.dtype)
    proj = lambda name: nn.Dense(f, dtype=self.dtype, kernel_init=layers.DENSE_INIT, name=name)
    s = proj('sketch_proj')(sketch_tokens)
    t = proj('text_proj')(text_tokens)
    # A missing side: its first token becomes the null token, the rest are masked out.
    first = lambda n: (jnp.arange(n) == 0)[None, :]
    s = jnp.where(has_s[..., None], s, jnp.where(first(s.shape[1])[..., None], null_s, 0))
    t = jnp.where(has_t[..., None], t, jnp.where(first(t.shape[1])[..., None], null_t, 0))
    s_mask = jnp.where(has_s, True, first(s.shape[1]))
    t_mask = jnp.where(has_t, text_mask.astype(bool), first(t.shape[1]))
    q = jnp.broadcast_to((query + modality[0]).astype(self.dtype), (b, 1, f))
    x = jnp.concatenate([q, s + modality[1].astype(self.dtype),
                         t + modality[2].astype(self.dtype)], axis=1)
    mask = jnp.concatenate([jnp.ones((b, 1), bool), s_mask, t_mask], axis=1)[:, None, None, :]
    x = layers.Encoder(self.layers, f, self.heads, self.mlp_dim, act='gelu', eps=1e-6,
                       pre_ln=True, remat=self.remat, dtype=self.dtype, name='encoder')(x, mask)
    x = layers.layer_norm(1e-6, self.dtype, 'norm')(x[:, 0])
    return nn.Dense(self.embed_dim, dtype=self.dtype, kernel_init=layers.DENSE_INIT,
                    name='out_proj')(x)
