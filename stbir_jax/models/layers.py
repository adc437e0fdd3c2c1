"""Shared building blocks of the towers: attention, MLP, transformer layer, config helpers.

The transformer layer mirrors the Hugging Face computation of the models we convert from, op for
op, so that converted weights reproduce HF outputs to ~1e-5 in float32:

  pre-LN  (CLIP vision/text, ViT):  x = x + attn(ln1(x)); x = x + mlp(ln2(x))
  post-LN (BERT):                    x = ln1(x + attn(x)); x = ln2(x + mlp(x))

Parameter tree of one `TransformerLayer` (the names the converters write):

  self_attn/{q_proj,k_proj,v_proj,out_proj}/{kernel (in, out), bias}
  layer_norm1/{scale, bias}        pre-LN: before attention; post-LN: after attention + residual
  mlp/{fc1,fc2}/{kernel, bias}
  layer_norm2/{scale, bias}        pre-LN: before the MLP;   post-LN: after MLP + residual

HF -> here: a torch Linear weight (out, in) is a Flax kernel (in, out) (transpose); a torch
Conv2d weight (out, in, kh, kw) is a Flax kernel (kh, kw, in, out).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbir_jax import sharding

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """config.model.dtype ('float32' | 'bfloat16') -> jnp dtype."""
  if name not in DTYPES:
    raise ValueError(f'config.model.dtype={name!r}; valid values: {", ".join(DTYPES)}')
  return DTYPES[name]


def option(cfg, key: str, default):
  """An optional config key of a tower (keys added after the config was written, e.g. `norm`).

  The one place that tolerates a missing key, so old configs (and checkpoints' saved configs)
  keep working; every other key is read directly and fails loudly when absent.
  """
  return cfg[key] if key in cfg else default


def check_choice(where: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f'{where}={value!r}; valid values: {", ".join(map(repr, choices))}')


# config.model.remat: what a transformer layer / ResNet block keeps for the backward pass.
#   'nothing'        no rematerialisation: every activation is kept (fastest, most memory)
#   'dots_saveable'  matmul outputs (attention scores included) are kept, the elementwise ops
#                    between them (norms, activations, softmax) are recomputed: between the two
#   'full'           only each layer's input is kept; the whole layer runs again
# The booleans of older configs mean 'full' (True) and 'nothing' (False).
REMAT_POLICIES = ('nothing', 'dots_saveable', 'full')


def remat_policy(value) -> str:
  """config.model.remat (a name in REMAT_POLICIES, or a bool) -> its policy name."""
  if isinstance(value, bool):
    return 'full' if value else 'nothing'
  if isinstance(value, str) and value.lower() in ('true', 'false'):  # --config.model.remat=True
    return 'full' if value.lower() == 'true' else 'nothing'
  check_choice('config.model.remat', value, REMAT_POLICIES)
  return value


def rematted(module_cls, remat):
  """`module_cls`, recomputed in the backward pass as the remat policy says."""
  policy = remat_policy(remat)
  if policy == 'nothing':
    return module_cls
  if policy == 'dots_saveable':
    return nn.remat(module_cls, policy=jax.checkpoint_policies.dots_saveable)
  return nn.remat(module_cls)


def quick_gelu(x):
  """CLIP's activation: x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def gelu_exact(x):
  """BERT/ViT's activation: the erf gelu (HF 'gelu'), not the tanh approximation."""
  return jax.nn.gelu(x, approximate=False)


ACTIVATIONS = {'quick_gelu': quick_gelu, 'gelu': gelu_exact,
               'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True)}

DENSE_INIT = nn.initializers.normal(0.02)


@jax.custom_vjp
def gradient_barrier(x):
  """The identity, whose incoming gradient is materialised (an optimization barrier) before
  anything downstream in the backward pass uses it."""
  return x


gradient_barrier.defvjp(lambda x: (x, None),
                        lambda _, g: (jax.lax.optimization_barrier(g),))


def layer_norm(eps: float, dtype, name: str) -> Callable:
  """nn.LayerNorm(name=name) applied behind a gradient_barrier.

  Two-pass variance, as torch computes it (the fast E[x^2]-E[x]^2 form differs at ~1e-6). The
  barrier: without it XLA CPU fuses the whole LayerNorm backward into the sum with the residual
  branch's gradient and writes that sum transposed for the next weight gradient, reading some 40
  inputs at a stride; that fusion took about half the ViT-S/16 train step, and the barrier makes
  the step 1.4x faster (docs/performance.md, section 1). Values and gradients are unchanged.
  """
  norm = nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name)
  return lambda x: norm(gradient_barrier(x))


class Attention(nn.Module):
  """Multi-head self- or cross-attention; scores = (q k^T) * head_dim^-0.5, softmax in float32.

  mask: bool, broadcastable to (B, 1, Lq, Lk); True = may attend. A fully masked row gives a
  uniform average (as HF's additive finfo.min mask does), never NaN.
  """
  hidden: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, kv=None):
    if self.hidden % self.heads:
      raise ValueError(f'attention hidden={self.hidden} is not divisible by heads={self.heads}')
    kv = x if kv is None else kv
    head_dim = self.hidden // self.heads
    dense = lambda name: nn.Dense(self.hidden, dtype=self.dtype, kernel_init=DENSE_INIT, name=name)
    split = lambda t: t.reshape(t.shape[:-1] + (self.heads, head_dim))
    # Each projection stays split over the batch: with fsdp-sharded kernels the partitioner would
    # otherwise follow the kernel's split, gather the whole global batch onto every chip and
    # all-reduce the activations (tensor parallelism by accident; docs/scaling.md).
    project = lambda name, t: split(sharding.constrain_to_batch(dense(name)(t)))
    q, k, v = project('q_proj', x), project('k_proj', kv), project('v_proj', kv)
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) * head_dim**-0.5
    if mask is not None:
      scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    out = jnp.einsum('bhqk,bkhd->bqhd', probs, v)
    out = out.reshape(out.shape[:-2] + (self.hidden,))
    return sharding.constrain_to_batch(dense('out_proj')(out))


class Mlp(nn.Module):
  mlp_dim: int
  act: Callable = gelu_exact
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=DENSE_INIT, name='fc1')(x)
    h = self.act(sharding.constrain_to_batch(h))   # split over the batch, as in Attention
    return sharding.constrain_to_batch(
        nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=DENSE_INIT, name='fc2')(h))


class TransformerLayer(nn.Module):
  """One encoder layer, pre-LN or post-LN (see the module docstring)."""
  hidden: int
  heads: int
  mlp_dim: int
  act: str = 'gelu'
  eps: float = 1e-6
  pre_ln: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    attn = Attention(self.hidden, self.heads, dtype=self.dtype, name='self_attn')
    mlp = Mlp(self.mlp_dim, ACTIVATIONS[self.act], dtype=self.dtype, name='mlp')
    ln1 = layer_norm(self.eps, self.dtype, 'layer_norm1')
    ln2 = layer_norm(self.eps, self.dtype, 'layer_norm2')
    if self.pre_ln:
      x = x + attn(ln1(x), mask)
      return x + mlp(ln2(x))
    x = ln1(x + attn(x, mask))
    return ln2(x + mlp(x))


class Encoder(nn.Module):
  """A stack of `layers` TransformerLayers named layer_0 ... layer_{n-1}; optional remat."""
  layers: int
  hidden: int
  heads: int
  mlp_dim: int
  act: str = 'gelu'
  eps: float = 1e-6
  pre_ln: bool = True
  remat: str | bool = 'nothing'   # a REMAT_POLICIES name
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    check_choice('activation', self.act, tuple(ACTIVATIONS))
    layer_cls = rematted(TransformerLayer, self.remat)
    for i in range(self.layers):
      x = layer_cls(self.hidden, self.heads, self.mlp_dim, act=self.act, eps=self.eps,
                    pre_ln=self.pre_ln, dtype=self.dtype, name=f'layer_{i}')(x, mask)
    return x


class MapHead(nn.Module):
  """Multihead attention pooling (MAP, SigLIP's vision head): a learned probe attends to the
  tokens, then a pre-LN MLP with a residual; -> (B, hidden).

    x = attention(probe, tokens); x = x + mlp(layernorm(x))

  HF SiglipMultiheadAttentionPoolingHead (torch nn.MultiheadAttention, whose packed in_proj is
  split into q/k/v by the converter). Parameters: probe (1, hidden), attention/{q,k,v,out}_proj,
  layernorm/{scale, bias}, mlp/{fc1, fc2}.
  """
  hidden: int
  heads: int
  mlp_dim: int
  act: str = 'gelu_tanh'
  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens):
    probe = self.param('probe', nn.initializers.xavier_uniform(), (1, self.hidden), jnp.float32)
    probe = jnp.broadcast_to(probe.astype(self.dtype)[None], (tokens.shape[0], 1, self.hidden))
    x = Attention(self.hidden, self.heads, dtype=self.dtype, name='attention')(probe, kv=tokens)
    h = layer_norm(self.eps, self.dtype, 'layernorm')(x)
    x = x + Mlp(self.mlp_dim, ACTIVATIONS[self.act], dtype=self.dtype, name='mlp')(h)
    return x[:, 0]
