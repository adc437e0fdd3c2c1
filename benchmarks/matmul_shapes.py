"""The transformer layer's own products, alone: XLA (jnp.dot under jit) against torch.mm,
interleaved, at each benchmark size's shapes, as GFLOP/s and as a fraction of the measured
2048^3 jnp.dot peak.

  python benchmarks/matmul_shapes.py [--sizes small,vits16] [--reps 15]

Per layer: the q, k, v and output projections (hidden x hidden), fc1 (hidden x mlp) and fc2
(mlp x hidden), each forward (x @ W), input gradient (dy @ W.T) and weight gradient (x.T @ dy),
at rows = batch x image tokens (the vision towers: most of the step's FLOPs). `layer_bound` is
the FLOP-weighted rate of all 18 products: the MFU a step of nothing but these products would
reach, i.e. the most our step's MFU can be while its products run at their rates alone.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import common

SAMPLE_S = 0.05


def layer_products(size: str) -> list:
  """(name, m, k, n) of one vision layer's 18 products (forward, input and weight gradients)."""
  s = common.SIZES[size]
  rows = s['batch'] * ((s['image'] // s['patch']) ** 2 + 1)
  h, mlp = s['hidden'], s['mlp']
  out = []
  for name, fan_in, fan_out, count in (('qkvo', h, h, 4), ('fc1', h, mlp, 1), ('fc2', mlp, h, 1)):
    for _ in range(count):
      out += [(f'{name} x@W', rows, fan_in, fan_out), (f'{name} dy@W.T', rows, fan_out, fan_in),
              (f'{name} x.T@dy', fan_in, rows, fan_out)]
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--sizes', default='small,vits16')
  p.add_argument('--reps', type=int, default=15)
  args = p.parse_args()
  torch = common._torch()  # pylint: disable=protected-access
  peak = common.peak_matmul_flops()
  dot = jax.jit(jnp.dot)
  results, rows = [], []
  load = common.wait_for_quiet()
  for size in args.sizes.split(','):
    shapes = {}
    for name, m, k, n in layer_products(size):
      key = (m, k, n)
      if key in shapes:
        shapes[key]['count'] += 1
        continue
      rng = np.random.default_rng(0)
      a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
      ja, jb = jax.device_put(a), jax.device_put(b)
      ta, tb = torch.from_numpy(a), torch.from_numpy(b)
      flops = 2.0 * m * k * n
      # Whole samples of SAMPLE_S: the foreign-CPU check reads /proc/stat in 10 ms ticks.
      inner = max(1, int(SAMPLE_S * peak['best_flops_per_s'] / flops))

      def xla(ja=ja, jb=jb, inner=inner):
        for _ in range(inner):
          out = dot(ja, jb)
        out.block_until_ready()

      def peer(ta=ta, tb=tb, inner=inner):
        for _ in range(inner):
          torch.mm(ta, tb)

      timings = common.interleaved({'xla': xla, 'torch': peer}, reps=args.reps)
      for t in timings.values():
        t['median_s'] /= inner
      shapes[key] = dict(size=size, product=name.split()[0], m=m, k=k, n=n, count=1, flops=flops,
                         inner=inner,
                         xla_gflop_s=flops / timings['xla']['median_s'] / 1e9,
                         torch_gflop_s=flops / timings['torch']['median_s'] / 1e9,
                         timings=timings)
    entries = list(shapes.values())
    total = sum(e['flops'] * e['count'] for e in entries)
    bound = {side: total / sum(e['flops'] * e['count'] / (e[f'{side}_gflop_s'] * 1e9)
                               for e in entries) / peak['best_flops_per_s']
             for side in ('xla', 'torch')}
    results.append(dict(size=size, shapes=entries, layer_bound_xla=bound['xla'],
                        layer_bound_torch=bound['torch']))
    for e in entries:
      rows.append(dict(size=size, m=e['m'], k=e['k'], n=e['n'], count=e['count'],
                       xla_gflop_s=e['xla_gflop_s'], torch_gflop_s=e['torch_gflop_s'],
                       xla_over_torch=e['xla_gflop_s'] / e['torch_gflop_s'],
                       xla_of_peak=e['xla_gflop_s'] * 1e9 / peak['best_flops_per_s'],
                       quiet=common.quiet_samples(e['timings'])))
  print(f'The layer\'s products alone (median of {args.reps} interleaved reps; peak '
        f'{peak["best_flops_per_s"] / 1e9:.0f} GFLOP/s)')
  print(common.table(rows, list(rows[0])))
  for r in results:
    print(f'[{r["size"]}] layer_bound (FLOP-weighted rate / peak): XLA {r["layer_bound_xla"]:.2f}, '
          f'torch {r["layer_bound_torch"]:.2f}')
  print('wrote', common.write_json('matmul_shapes', dict(peak_matmul=peak, load=load,
                                                         results=results, table=rows)))


if __name__ == '__main__':
  main()
