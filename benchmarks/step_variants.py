"""One train-step change at a time: our step as it is against the same step with one change, in
the same process, interleaved, so that the ratio measures the change and not the machine.

  python benchmarks/repeat.py --runs 3 -- benchmarks/step_variants.py --size small \
      --variants fast_variance_ln,fused_attention,bf16

Variants (each changes only what its name says, while the step is traced):
  no_ln_barrier     LayerNorm without layers.gradient_barrier (the step before that change);
  fast_variance_ln  LayerNorm's variance as E[x^2] - E[x]^2 (one pass) instead of two passes;
  fused_attention   jax.nn.dot_product_attention in place of einsum + softmax + einsum;
  bf16              model.dtype = bfloat16 (f32 params and optimiser state);
  remat_dots        model.remat = dots_saveable (less memory, recomputed elementwise work);
  mlp_barrier_in    a layers.gradient_barrier on the MLP activation's input as well;
  mlp_barrier_out   the same on its output;
  flax_group_norm   the ResNet towers' norm as nn.GroupNorm (the step before resnet.GroupNorm;
                    for --size demo / demo_split, the configs/base.py variants' real step);
  im2col_conv       the ResNet towers' convolutions as patches times kernel (explicit im2col);
  patch_kernel_grad the same convolutions, with only their kernel gradient taken as patches^T @
                    output gradient (custom_vjp).
"""

import argparse
import contextlib
import functools

import jax
import jax.numpy as jnp

import common


@contextlib.contextmanager
def _patched(obj, name, value):
  real = getattr(obj, name)
  setattr(obj, name, value)
  try:
    yield
  finally:
    setattr(obj, name, real)


def _layer_norm(fast_variance: bool, barrier: bool):
  """layers.layer_norm with the variance and the gradient barrier chosen."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from stbir_jax.models import layers  # pylint: disable=g-import-not-at-top

  def layer_norm(eps, dtype, name):
    norm = nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=fast_variance, name=name)
    return (lambda x: norm(layers.gradient_barrier(x))) if barrier else norm

  return _patched(layers, 'layer_norm', layer_norm)


def _fused_attention():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from stbir_jax import sharding  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import layers  # pylint: disable=g-import-not-at-top

  class FusedAttention(layers.Attention):
    """layers.Attention with the same projections and jax.nn.dot_product_attention between."""

    @nn.compact
    def __call__(self, x, mask=None, kv=None):
      kv = x if kv is None else kv
      head_dim = self.hidden // self.heads
      dense = lambda name: nn.Dense(self.hidden, dtype=self.dtype,
                                    kernel_init=layers.DENSE_INIT, name=name)
      project = lambda name, t: sharding.constrain_to_batch(dense(name)(t)).reshape(
          t.shape[:-1] + (self.heads, head_dim))
      q, k, v = project('q_proj', x), project('k_proj', kv), project('v_proj', kv)
      if mask is not None:
        mask = jnp.broadcast_to(mask, (q.shape[0], 1, q.shape[1], k.shape[1]))
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation='xla')
      out = out.reshape(out.shape[:-2] + (self.hidden,))
      return sharding.constrain_to_batch(dense('out_proj')(out))

  return _patched(layers, 'Attention', FusedAttention)


def _mlp_barrier(where: str):
  """layers.Mlp with a gradient_barrier on the activation's input ('in') or output ('out')."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from stbir_jax import sharding  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import layers  # pylint: disable=g-import-not-at-top

  class BarrierMlp(layers.Mlp):

    @nn.compact
    def __call__(self, x):
      dense = lambda n, name: nn.Dense(n, dtype=self.dtype, kernel_init=layers.DENSE_INIT,
                                       name=name)
      h = sharding.constrain_to_batch(dense(self.mlp_dim, 'fc1')(x))
      if where == 'in':
        h = self.act(layers.gradient_barrier(h))
      else:
        h = layers.gradient_barrier(self.act(h))
      return sharding.constrain_to_batch(dense(x.shape[-1], 'fc2')(h))

  return _patched(layers, 'Mlp', BarrierMlp)


def _flax_group_norm():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from stbir_jax.models import resnet  # pylint: disable=g-import-not-at-top
  return _patched(resnet, 'GroupNorm',
                  lambda **kw: nn.GroupNorm(use_fast_variance=False, **kw))


def _patches(x, k: int, s: int):
  """(B, H', W', k*k*C) patches of NHWC `x` for a k x k, stride-s convolution padded k // 2,
  in the order of a (k, k, C, out) kernel reshaped to (k*k*C, out)."""
  p = k // 2
  x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
  cols = [x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] for i in range(k)
          for j in range(k)]
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _conv_as(fn):
  """resnet's convolutions computed as fn(x, kernel, stride), with nn.Conv's parameter."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from stbir_jax.models import resnet  # pylint: disable=g-import-not-at-top

  class FnConv(nn.Module):
    features: int
    kernel: int
    stride: int
    dtype: object

    @nn.compact
    def __call__(self, x):
      k = self.kernel
      w = self.param('kernel', resnet.CONV_INIT, (k, k, x.shape[-1], self.features), jnp.float32)
      return fn(x.astype(self.dtype), w.astype(self.dtype), self.stride)

  return _patched(resnet, '_conv', lambda features, kernel, stride, dtype, name: FnConv(
      features, kernel, stride, dtype, name=name))


def _im2col_conv():
  """Explicit patches (pad + strided slices) times the kernel, so that autodiff's kernel
  gradient is one product over batch x pixels instead of XLA CPU's batch-minor convolution and
  its transposes."""
  return _conv_as(lambda x, w, s: _patches(x, w.shape[0], s) @ w.reshape(-1, w.shape[-1]))


def _patch_kernel_grad_conv():
  """lax.conv forward and input gradient, with the kernel gradient taken as one product of the
  input's patches and the output gradient (custom_vjp)."""

  def conv(x, w, s):
    p = w.shape[0] // 2
    return jax.lax.conv_general_dilated(x, w, (s, s), ((p, p), (p, p)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def conv_fn(x, w, s):
    return conv(x, w, s)

  def fwd(x, w, s):
    return conv(x, w, s), (x, w)

  def bwd(s, res, g):
    x, w = res
    _, vjp_x = jax.vjp(lambda t: conv(t, w, s), x)
    cols = _patches(x, w.shape[0], s)
    dw = jnp.einsum('bhwp,bhwo->po', cols, g).reshape(w.shape)
    return vjp_x(g)[0], dw

  conv_fn.defvjp(fwd, bwd)
  return _conv_as(conv_fn)


VARIANTS = {
    'no_ln_barrier': lambda config: _layer_norm(fast_variance=False, barrier=False),
    'fast_variance_ln': lambda config: _layer_norm(fast_variance=True, barrier=True),
    'fused_attention': lambda config: _fused_attention(),
    'bf16': lambda config: _patched(config.model, 'dtype', 'bfloat16'),
    'remat_dots': lambda config: _patched(config.model, 'remat', 'dots_saveable'),
    'flax_group_norm': lambda config: _flax_group_norm(),
    'im2col_conv': lambda config: _im2col_conv(),
    'patch_kernel_grad': lambda config: _patch_kernel_grad_conv(),
    'mlp_barrier_in': lambda config: _mlp_barrier('in'),
    'mlp_barrier_out': lambda config: _mlp_barrier('out'),
}


def make_config(size: str):
  if size in common.DEMO_VARIANTS:
    return common.demo_config(size)
  return common.our_config(size, common.SIZES[size]['batch'])


def timed_step(config, size: str):
  """A callable running one step of `config` on a fixed batch (state carried, donated): of
  SIZES[size] inputs, or for a demo variant, of its own pipeline."""
  if size in common.DEMO_VARIANTS:
    step, state, dev_batch, _ = common.demo_step(size, config)
  else:
    dev_batch = jax.device_put(common.host_batch(size, config.train.batch_size))
    step, state, _ = common.our_step(config)
  holder = {'state': state}

  def run():
    holder['state'], metrics = step(holder['state'], dev_batch)
    jax.block_until_ready(metrics['loss'])
  run()  # compile
  return run


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--size', default='small',
                 choices=sorted(common.SIZES) + list(common.DEMO_VARIANTS))
  p.add_argument('--variants', default=','.join(VARIANTS))
  p.add_argument('--reps', type=int, default=7)
  args = p.parse_args()
  batch = make_config(args.size).train.batch_size
  fns = {'baseline': timed_step(make_config(args.size), args.size)}
  for name in args.variants.split(','):
    if name not in VARIANTS:
      raise SystemExit(f'--variants: unknown {name!r}; known: {", ".join(VARIANTS)}')
    config = make_config(args.size)
    with VARIANTS[name](config):
      fns[name] = timed_step(config, args.size)
  load = common.wait_for_quiet()
  timings = common.interleaved(fns, reps=args.reps)
  base = timings['baseline']['median_s']
  rows = [dict(variant=n, examples_per_s=batch / t['median_s'], ratio=base / t['median_s'],
               step_ms=1e3 * t['median_s'], quiet=f'{t["n_quiet"]}/{len(t["samples"])}')
          for n, t in timings.items()]
  print(f'Train step variants, size {args.size}, batch {batch} (median of interleaved reps)')
  print(common.table(rows, list(rows[0])))
  print('wrote', common.write_json(f'step_variants_{args.size}', dict(
      size=args.size, batch=batch, timings=timings, load=load, table=rows,
      **{f'{r["variant"]}_ratio': r['ratio'] for r in rows})))


if __name__ == '__main__':
  main()
