"""ResNet-18/34 (basic blocks) and -50/101 (bottleneck blocks), laid out like HF `ResNetModel`.

Input: float images (B, H, W, 3), already normalised. Output: (pooled (B, C), tokens (B, h*w, C))
with h = H/32: the global average pool (HF `pooler_output`, flattened) and the last feature map
(HF `last_hidden_state`, NHWC, flattened row-major) for cross-attention fusion.

Two options for small inputs (64 px sketches and photos), neither changes the parameters, so HF
weights load either way: `stem_pool=False` drops the stem's max pool (h = H/16: fine strokes
survive to the later stages), and `pool='flatten'` returns the last feature map flattened
(B, h*w*C) instead of its mean, so the embedding keeps where each part of the object is.
Sketch and photo of one object are drawn in the same pose, so layout is evidence; measured on
STBIR-Synth shoes, both together raise sketch+text Acc@1 from 0.37 to 0.56 (docs/results.md).

Computation (HF microsoft/resnet-50 and friends): stem = 7x7/2 conv (no bias) -> norm -> ReLU ->
3x3/2 max pool (padding 1); stages of widths width*(1, 2, 4, 8) (x4 for bottleneck outputs);
stage 0 has stride 1, later stages downsample in their first block: on the first 3x3 conv of a
basic block, on the 3x3 (middle) conv of a bottleneck (HF downsample_in_bottleneck=False). A
block gets a shortcut 1x1 conv (stride s, no bias) + norm when its input and output shapes differ.
Convs pad k//2 on every side (as torch), not 'SAME' (which pads stride-2 convs asymmetrically).

Norms (`norm`): 'group' (GroupNorm with gcd(32, C/2) groups, i.e. 32 for C >= 64, eps 1e-5; the
default: no batch statistics, so the train state is params only; the last norm of each residual
branch starts at scale 0), or 'affine' (y = x * scale + bias per channel: a pretrained BatchNorm
folded at conversion: scale = gamma / sqrt(running_var + eps), bias = beta - running_mean * scale,
eps = 1e-5).
Both hold {scale (C,), bias (C,)}: the same count as BatchNorm's gamma/beta.

Parameter tree (HF path in brackets; all convs have only `kernel` (kh, kw, in, out)):

  stem/conv                            [embedder.embedder.convolution]
  stem/norm/{scale, bias}              [embedder.embedder.normalization]
  stage_{i}/block_{j}/conv_{k}         [encoder.stages.i.layers.j.layer.k.convolution]
  stage_{i}/block_{j}/norm_{k}         [encoder.stages.i.layers.j.layer.k.normalization]
  stage_{i}/block_{j}/shortcut_conv    [encoder.stages.i.layers.j.shortcut.convolution]
  stage_{i}/block_{j}/shortcut_norm    [encoder.stages.i.layers.j.shortcut.normalization]

k = 0, 1 (basic) or 0, 1, 2 (bottleneck: 1x1 reduce, 3x3, 1x1 expand).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stbir_jax import sharding
from stbir_jax.models import layers

DEPTHS = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)),
          50: ('bottleneck', (3, 4, 6, 3)), 101: ('bottleneck', (3, 4, 23, 3))}
NORMS = ('group', 'affine')
POOLS = ('gap', 'flatten')
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')  # He init, as torchvision


class GroupNorm(nn.Module):
  """nn.GroupNorm's values (two-pass variance, f32 statistics), its statistics taken per channel
  first and then averaged over each group's channels.

  Why not nn.GroupNorm: it reduces a (B, H, W, G, C/G) view, and on XLA CPU those reductions and
  their gradients over the narrow, high-resolution maps of the demo's towers (8 - 16 channels at
  32 x 32) took about a third of the demo's train step; reducing over H, W to (B, C) first and
  mixing channels in that small array makes the whole step 1.05x (demo) and 1.08x (demo_split)
  faster, medians of 3 processes (docs/performance.md, "The demo's ResNet step"). The group mean
  is the mean of its channels' means (every channel has H*W values), so the result equals
  nn.GroupNorm up to summation order.
  """
  num_groups: int
  epsilon: float = 1e-5
  scale_init: Any = nn.initializers.ones
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    if c % self.num_groups:
      raise ValueError(f'GroupNorm: {c} channels do not split into {self.num_groups} groups')
    scale = self.param('scale', self.scale_init, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    return group_norm(x, self.num_groups, self.epsilon, scale, bias).astype(self.dtype)


def group_norm(x, num_groups: int, epsilon: float, scale, bias):
  """GroupNorm of channels-last `x` in float32 (a function of its own, so that profiles can tell
  its ops apart: benchmarks/profile_step.py)."""
  b, c = x.shape[0], x.shape[-1]
  spatial = tuple(range(1, x.ndim - 1))
  per_group = lambda t: jnp.repeat(t.reshape(b, num_groups, -1).mean(-1), c // num_groups,
                                   axis=1).reshape((b,) + (1,) * len(spatial) + (c,))
  x32 = x.astype(jnp.float32)
  centred = x32 - per_group(jnp.mean(x32, axis=spatial))
  var = per_group(jnp.mean(centred * centred, axis=spatial))
  return centred * jax.lax.rsqrt(var + epsilon) * scale + bias


class Affine(nn.Module):
  """Per-channel scale and bias: a BatchNorm with its statistics folded in."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    return x * scale.astype(x.dtype) + bias.astype(x.dtype)


def _norm(kind: str, channels: int, dtype, name: str, zero_init: bool = False) -> nn.Module:
  if kind == 'affine':
    return Affine(name=name)
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  # 32 groups (Wu & He) for C >= 64; narrower towers keep >= 2 channels a group, since a
  # one-channel group over a 1x1 map (tiny test resolutions) normalises to exactly zero.
  return GroupNorm(num_groups=math.gcd(32, max(channels // 2, 1)), epsilon=1e-5,
                   scale_init=scale_init, dtype=dtype, name=name)


def _conv(features: int, kernel: int, stride: int, dtype, name: str) -> nn.Conv:
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((p, p), (p, p)),
                 use_bias=False, dtype=dtype, kernel_init=CONV_INIT, name=name)


class Block(nn.Module):
  """A basic or bottleneck residual block (see the module docstring)."""
  kind: str          # 'basic' | 'bottleneck'
  features: int      # output channels
  stride: int = 1
  norm: str = 'group'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.kind == 'basic':
      convs = [(self.features, 3, self.stride), (self.features, 3, 1)]
    else:
      mid = self.features // 4
      convs = [(mid, 1, 1), (mid, 3, self.stride), (self.features, 1, 1)]
    h = x
    for k, (features, kernel, stride) in enumerate(convs):
      last = k == len(convs) - 1
      # Split over the batch (layers.Attention says why).
      h = sharding.constrain_to_batch(_conv(features, kernel, stride, self.dtype, f'conv_{k}')(h))
      h = _norm(self.norm, features, self.dtype, f'norm_{k}', zero_init=last)(h)
      if not last:
        h = nn.relu(h)
    if x.shape[-1] != self.features or self.stride != 1:
      x = sharding.constrain_to_batch(
          _conv(self.features, 1, self.stride, self.dtype, 'shortcut_conv')(x))
      x = _norm(self.norm, self.features, self.dtype, 'shortcut_norm')(x)
    return nn.relu(h + x)


class ResNet(nn.Module):
  depth: int = 18
  width: int = 64
  norm: str = 'group'
  stem_pool: bool = True   # False: no stem max pool, for small inputs (stages at 2x resolution)
  pool: str = 'gap'        # 'gap' | 'flatten' (the last feature map, row-major: keeps layout)
  # > 0: a 1x1 convolution to this many channels and a ReLU before the global average pool (as
  # MobileNetV3's last expansion), so that a mean over positions can keep more than the last
  # stage's width*8 channels; 0: none.
  head_width: int = 0
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32

  @property
  def out_dim(self) -> int:
    if self.head_width and self.pool == 'gap':
      return self.head_width
    return self.width * 8 * (4 if DEPTHS[self.depth][0] == 'bottleneck' else 1)

  @nn.compact
  def __call__(self, x):
    if self.depth not in DEPTHS:
      raise ValueError(f'ResNet depth={self.depth!r}; valid depths: {", ".join(map(str, DEPTHS))}')
    layers.check_choice('ResNet norm', self.norm, NORMS)
    layers.check_choice('ResNet pool', self.pool, POOLS)
    if self.head_width < 0 or (self.head_width and self.pool != 'gap'):
      raise ValueError(f'ResNet head_width={self.head_width!r} with pool={self.pool!r}; expected '
                       "0, or a width > 0 with pool='gap'.")
    kind, counts = DEPTHS[self.depth]
    x = x.astype(self.dtype)
    x = _Stem(self.width, self.norm, self.stem_pool, self.dtype, name='stem')(x)
    expansion = 4 if kind == 'bottleneck' else 1
    for i, count in enumerate(counts):
      x = _Stage(kind, self.width * 2**i * expansion, count, 2 if i > 0 else 1, self.norm,
                 self.remat, self.dtype, name=f'stage_{i}')(x)
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c)
    if self.pool == 'flatten':
      pooled = tokens.reshape(b, h * w * c)
    else:
      if self.head_width:
        x = nn.relu(nn.Conv(self.head_width, (1, 1), dtype=self.dtype, name='head')(x))
      pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    return pooled, tokens


class _Stem(nn.Module):
  width: int
  norm: str
  pool: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    x = _conv(self.width, 7, 2, self.dtype, 'conv')(x)
    x = nn.relu(_norm(self.norm, self.width, self.dtype, 'norm')(x))
    if not self.pool:
      return x
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class _Stage(nn.Module):
  kind: str
  features: int
  count: int
  stride: int
  norm: str
  remat: str | bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    block_cls = layers.rematted(Block, self.remat)
    for j in range(self.count):
      x = block_cls(self.kind, self.features, self.stride if j == 0 else 1, self.norm,
                    self.dtype, name=f'block_{j}')(x)
    return x
