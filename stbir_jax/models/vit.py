"""Vision transformers: variant 'clip' mirrors HF `CLIPVisionModel`, 'vit' mirrors HF `ViTModel`,
'siglip' mirrors HF `SiglipVisionModel` (and `Siglip2VisionModel` at its native patch grid).

Input: float images (B, H, W, 3), already normalised; H, W multiples of patch_size. Output:
(pooled (B, hidden), tokens (B, 1 + (H/p)*(W/p), hidden)), tokens = class token then patches in
row-major order (HF order).

  'clip'  x = [class_embedding; patch_embedding(img) (conv, no bias)] + position_embedding
          x = pre_layrnorm(x); pre-LN layers (quick_gelu, eps 1e-5)
          tokens = x (HF last_hidden_state); pooled = post_layernorm(x[:, 0])   (pool='cls')
                                              or post_layernorm(mean(x[:, 1:]))  (pool='gap')
  'vit'   x = [class_embedding; patch_embedding(img) (conv + bias)] + position_embedding
          pre-LN layers (exact gelu, eps 1e-12); x = post_layernorm(x) (HF ViTModel.layernorm)
          tokens = x (HF last_hidden_state); pooled = x[:, 0] (cls) or mean(x[:, 1:]) (gap);
          HF's optional tanh pooler is not part of this tower.
  'siglip' x = patch_embedding(img) (conv + bias) + position_embedding; no class token.
          pre-LN layers (gelu_tanh, eps 1e-6); tokens = post_layernorm(x) (HF last_hidden_state);
          pooled = MAP head(tokens) (pool='map', HF pooler_output; layers.MapHead)
                   or mean(tokens) (pool='gap').

The position table has 1 + (H/p)*(W/p) rows ('siglip': (H/p)*(W/p)), fixed by the resolution
seen at init.

Parameter tree (HF CLIPVisionModel path / HF ViTModel path in brackets):

  patch_embedding/kernel (p, p, 3, hidden)  [embeddings.patch_embedding.weight /
                                             embeddings.patch_embeddings.projection.weight]
  patch_embedding/bias (hidden,)            ('vit' only) [- / ...projection.bias]
  class_embedding (hidden,)                 [embeddings.class_embedding / embeddings.cls_token]
  position_embedding (N+1, hidden)          [embeddings.position_embedding.weight /
                                             embeddings.position_embeddings[0]]
                                             (CLIPVisionModel nests these under vision_model.
                                             in older transformers; module paths, not names,
                                             are what matter)
  pre_layrnorm/{scale, bias}                ('clip' only) [pre_layrnorm]
  encoder/layer_{i}/...                     [encoder.layers.i / layers.i]; see layers.py:
                                             ViT (transformers 5 module names)
                                             attention.{q,k,v,o}_proj -> self_attn.{q,k,v,out}_proj,
                                             layernorm_before -> layer_norm1,
                                             layernorm_after -> layer_norm2, mlp.fc1/fc2 -> same
  post_layernorm/{scale, bias}              [post_layernorm / layernorm]
  head/...                                  ('siglip', pool 'map') [head]; layers.MapHead
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stbir_jax import sharding
from stbir_jax.models import layers

VARIANTS = {  # variant -> (activation, layer-norm eps, patch bias, pre_layrnorm)
    'clip': ('quick_gelu', 1e-5, False, True),
    'vit': ('gelu', 1e-12, True, False),
    'siglip': ('gelu_tanh', 1e-6, True, False),
}
POOLS = {'clip': ('cls', 'gap'), 'vit': ('cls', 'gap'), 'siglip': ('map', 'gap')}


class ViT(nn.Module):
  variant: str = 'vit'
  patch_size: int = 16
  hidden: int = 768
  layers: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  pool: str = 'cls'
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32

  @property
  def out_dim(self) -> int:
    return self.hidden

  @nn.compact
  def __call__(self, x):
    layers.check_choice('ViT variant', self.variant, tuple(VARIANTS))
    layers.check_choice(f'ViT pool (variant {self.variant!r})', self.pool, POOLS[self.variant])
    act, eps, patch_bias, pre_ln = VARIANTS[self.variant]
    b, h, w, _ = x.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f'ViT: image size {h}x{w} is not a multiple of patch_size={p}')
    x = nn.Conv(self.hidden, (p, p), strides=(p, p), padding='VALID', use_bias=patch_bias,
                dtype=self.dtype, kernel_init=nn.initializers.lecun_normal(),
                name='patch_embedding')(x.astype(self.dtype))
    # The patches stay split over the batch (layers.Attention says why).
    x = sharding.constrain_to_batch(x.reshape(b, -1, self.hidden))
    if self.variant == 'siglip':
      return self._siglip(x, act, eps)
    cls = self.param('class_embedding', nn.initializers.normal(self.hidden**-0.5),
                     (self.hidden,), jnp.float32)
    pos = self.param('position_embedding', nn.initializers.normal(0.02),
                     (x.shape[1] + 1, self.hidden), jnp.float32)
    cls = jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.hidden))
    x = jnp.concatenate([cls, x], axis=1) + pos.astype(self.dtype)
    if pre_ln:
      x = layers.layer_norm(eps, self.dtype, 'pre_layrnorm')(x)
    x = layers.Encoder(self.layers, self.hidden, self.heads, self.mlp_dim, act=act, eps=eps,
                       pre_ln=True, remat=self.remat, dtype=self.dtype, name='encoder')(x)
    post_ln = layers.layer_norm(eps, self.dtype, 'post_layernorm')
    if self.variant == 'clip':
      tokens = x
      pooled = x[:, 0] if self.pool == 'cls' else jnp.mean(x[:, 1:], axis=1)
      return post_ln(pooled), tokens
    tokens = post_ln(x)
    pooled = tokens[:, 0] if self.pool == 'cls' else jnp.mean(tokens[:, 1:], axis=1)
    return pooled, tokens

  def _siglip(self, x, act, eps):
    pos = self.param('position_embedding', nn.initializers.normal(self.hidden**-0.5),
                     x.shape[1:], jnp.float32)
    x = layers.Encoder(self.layers, self.hidden, self.heads, self.mlp_dim, act=act, eps=eps,
                       pre_ln=True, remat=self.remat, dtype=self.dtype,
                       name='encoder')(x + pos.astype(self.dtype))
    tokens = layers.layer_norm(eps, self.dtype, 'post_layernorm')(x)
    if self.pool == 'gap':
      return jnp.mean(tokens, axis=1), tokens
    pooled = layers.MapHead(self.hidden, self.heads, self.mlp_dim, act=act, eps=eps,
                            dtype=self.dtype, name='head')(tokens)
    return pooled, tokens
