"""Text towers: `kind='bert'` mirrors HF `BertModel`, `kind='clip'` mirrors HF `CLIPTextModel`,
`kind='siglip'` mirrors HF `SiglipTextModel` (and `Siglip2TextModel`, the same computation).

Inputs: ids (B, L) int32 and mask (B, L) (1 = real token, 0 = padding; padding at the end).
Output: (pooled (B, hidden), tokens (B, L, hidden), mask (B, L) bool).

  'bert'  x = LN(word_embeddings[ids] + token_type_embeddings[0] + position_embeddings[0..L))
          (eps 1e-12); post-LN layers (exact gelu, eps 1e-12), key-padding mask.
          tokens = x (HF last_hidden_state).
          pool 'mean': masked mean over real tokens (sentence-transformers mean pooling, e.g.
          all-MiniLM-L6-v2); 'cls': x[:, 0]. HF's tanh pooler is not part of this tower.
  'clip'  x = token_embedding[ids] + position_embedding[0..L); pre-LN layers (quick_gelu,
          eps 1e-5), causal + key-padding mask; x = final_layer_norm(x); tokens = x.
          pool 'eos': x at the last real token (index sum(mask) - 1): HF's eos pooling when the
          tokenizer ends each text with EOS (it does; truncation keeps EOS) and pads after it.
          'argmax': x at argmax(ids) (HF's rule for old configs with eos_token_id == 2).
          'mean': masked mean.
  'siglip' x = token_embedding[ids] + position_embedding[0..L); pre-LN layers (gelu_tanh,
          eps 1e-6), key-padding mask only (no causal mask); x = final_layer_norm(x); tokens = x.
          pool 'last': x[:, -1], the last position whatever the mask (HF's rule; SigLIP is
          trained on texts padded to max_length, 64, so that position is usually padding);
          'mean': masked mean. pooled = head(pooled) (Linear with bias, hidden ->
          projection_size): HF's pooler_output, SigLIP's text embedding.

Position tables: `max_positions` rows (an optional tower config key; default 512 for bert, 77 for
clip, 64 for siglip, the HF sizes), so converted tables load as they are; L must not exceed it.

Parameter tree (HF BertModel path / HF CLIPTextModel path in brackets):

  bert: word_embeddings/embedding (V, H)        [embeddings.word_embeddings.weight]
        position_embeddings/embedding (P, H)    [embeddings.position_embeddings.weight]
        token_type_embeddings/embedding (2, H)  [embeddings.token_type_embeddings.weight]
        embeddings_layer_norm/{scale, bias}     [embeddings.LayerNorm]
        encoder/layer_{i}/self_attn/{q,k,v}_proj [encoder.layer.i.attention.self.{query,key,value}]
        encoder/layer_{i}/self_attn/out_proj    [encoder.layer.i.attention.output.dense]
        encoder/layer_{i}/layer_norm1           [encoder.layer.i.attention.output.LayerNorm]
        encoder/layer_{i}/mlp/fc1               [encoder.layer.i.intermediate.dense]
        encoder/layer_{i}/mlp/fc2               [encoder.layer.i.output.dense]
        encoder/layer_{i}/layer_norm2           [encoder.layer.i.output.LayerNorm]
  clip: token_embedding/embedding (V, H)        [embeddings.token_embedding.weight]
        position_embedding/embedding (P, H)     [embeddings.position_embedding.weight]
        encoder/layer_{i}/...                   [encoder.layers.i.{self_attn,layer_norm1,mlp,
                                                 layer_norm2}] (same names)
        final_layer_norm/{scale, bias}          [final_layer_norm]
  siglip: the clip names (without the causal mask) plus
        head/{kernel (H, P), bias (P,)}         [head]
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stbir_jax import sharding
from stbir_jax.models import layers

KINDS = ('bert', 'clip', 'siglip')
POOLS = {'bert': ('mean', 'cls'), 'clip': ('eos', 'argmax', 'mean'), 'siglip': ('last', 'mean')}
MAX_POSITIONS = {'bert': 512, 'clip': 77, 'siglip': 64}
# kind -> (activation, layer-norm eps, causal) of the pre-LN text towers.
PRE_LN = {'clip': ('quick_gelu', 1e-5, True), 'siglip': ('gelu_tanh', 1e-6, False)}
EMBED_INIT = nn.initializers.normal(0.02)


def masked_mean(x, mask):
  m = mask.astype(jnp.float32)[..., None]
  total = jnp.sum(x.astype(jnp.float32) * m, axis=1)
  return (total / jnp.maximum(jnp.sum(m, axis=1), 1e-9)).astype(x.dtype)


class TextTransformer(nn.Module):
  kind: str = 'bert'
  vocab_size: int = 30522
  hidden: int = 768
  layers: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  pool: str = 'mean'
  max_positions: int = 0          # 0 = MAX_POSITIONS[kind]
  projection_size: int = 0        # siglip's head output size; 0 = hidden
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32

  @property
  def out_dim(self) -> int:
    return (self.projection_size or self.hidden) if self.kind == 'siglip' else self.hidden

  @nn.compact
  def __call__(self, ids, mask):
    layers.check_choice('text kind', self.kind, KINDS)
    layers.check_choice(f'text pool (kind {self.kind!r})', self.pool, POOLS[self.kind])
    max_pos = self.max_positions or MAX_POSITIONS[self.kind]
    b, length = ids.shape
    if length > max_pos:
      raise ValueError(f'text length {length} exceeds the {self.kind} tower\'s max_positions='
                       f'{max_pos}; shorten config.data.max_text_len or raise max_positions')
    ids = ids.astype(jnp.int32)
    mask = mask.astype(bool)
    embed = lambda n, name: nn.Embed(n, self.hidden, dtype=self.dtype, embedding_init=EMBED_INIT,
                                     name=name)
    positions = jnp.arange(length)[None]
    key_mask = mask[:, None, None, :]                                  # (B, 1, 1, L)
    if self.kind == 'bert':
      x = (embed(self.vocab_size, 'word_embeddings')(ids)
           + embed(2, 'token_type_embeddings')(jnp.zeros_like(ids))
           + embed(max_pos, 'position_embeddings')(positions))
      x = sharding.constrain_to_batch(x)
      x = layers.layer_norm(1e-12, self.dtype, 'embeddings_layer_norm')(x)
      x = layers.Encoder(self.layers, self.hidden, self.heads, self.mlp_dim, act='gelu',
                         eps=1e-12, pre_ln=False, remat=self.remat, dtype=self.dtype,
                         name='encoder')(x, key_mask)
      pooled = x[:, 0] if self.pool == 'cls' else masked_mean(x, mask)
      return pooled, x, mask

    x = (embed(self.vocab_size, 'token_embedding')(ids)
         + embed(max_pos, 'position_embedding')(positions))
    x = sharding.constrain_to_batch(x)
    act, eps, causal = PRE_LN[self.kind]
    attend = key_mask
    if causal:
      attend = jnp.tril(jnp.ones((length, length), bool))[None, None] & key_mask
    x = layers.Encoder(self.layers, self.hidden, self.heads, self.mlp_dim, act=act, eps=eps,
                       pre_ln=True, remat=self.remat, dtype=self.dtype, name='encoder')(x, attend)
    x = layers.layer_norm(eps, self.dtype, 'final_layer_norm')(x)
    if self.pool == 'mean':
      pooled = masked_mean(x, mask)
    elif self.pool == 'last':
      pooled = x[:, -1]
    else:
      if self.pool == 'eos':
        index = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
      else:
        index = jnp.argmax(ids, axis=1)
      pooled = jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]
    if self.kind == 'siglip':
      pooled = nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=layers.DENSE_INIT,
                        name='head')(pooled)
    return pooled, x, mask
