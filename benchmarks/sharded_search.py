"""What a mesh-sharded gallery costs per row, from XLA, and what that means per accelerator chip.

  python benchmarks/sharded_search.py [--dim 512] [--queries 256] [--rows 262144]

Compiles stbir_jax.search.sharded's search (one device, `--rows` gallery rows, a batch of
`--queries`, k = 10), reads XLA's cost analysis (FLOPs, bytes accessed), and divides by the rows.
Then, on paper, for chips with their published HBM size, bandwidth and dense matmul peak: the
rows one chip holds (80% of HBM for the gallery, float32 and bfloat16 rows), and the time one
query batch takes over a full chip: max(FLOPs / peak, bytes / bandwidth), i.e. at the roofline
(real kernels reach perhaps 50-80% of it). A gallery sharded over C chips holds C times the
rows in the same time per batch, plus one all-gather of C x Q x k candidates (negligible).
"""

import argparse
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import common
from stbir_jax import sharding
from stbir_jax.search import sharded as sharded_search

# name: (HBM GiB, HBM TB/s, float32 TFLOP/s, bfloat16 TFLOP/s) -- vendors' data sheets.
CHIPS = {
    'TPU v5e': (16, 0.819, None, 197),
    'TPU v5p': (95, 2.765, None, 459),
    'TPU v6e (Trillium)': (32, 1.640, None, 918),
    'NVIDIA A100 80GB': (80, 2.039, 19.5, 312),
    'NVIDIA H100 SXM': (80, 3.35, 67, 989),
    'NVIDIA H200': (141, 4.8, 67, 989),
}
GALLERY_SHARE = 0.8


def search_mesh(topology):
  """One CPU device, or the devices of a named TPU topology (compiled ahead of time, no TPU)."""
  if not topology:
    return sharded_search.default_mesh()
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  devices = topologies.get_topology_desc(platform='tpu', topology_name=topology).devices
  return jax.sharding.Mesh(np.array(devices).reshape(len(devices), 1, 1), sharding.AXES)


def cost(mesh, rows, dim, queries, dtype):
  """XLA's (FLOPs, bytes accessed, temp bytes) of one device's search over `rows` rows: one
  chunk, so the scan runs once (cost analysis counts a loop body once)."""
  total = rows * mesh.devices.size
  fn = sharded_search._search_fn(mesh, 10, rows, total)  # pylint: disable=protected-access
  q = jax.ShapeDtypeStruct((queries, dim), dtype, sharding=NamedSharding(mesh, P()))
  g = jax.ShapeDtypeStruct((total, dim), dtype,
                           sharding=NamedSharding(mesh, P(sharded_search.ROW_AXES)))
  compiled = fn.lower(q, g).compile()
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  temp_bytes = compiled.memory_analysis().temp_size_in_bytes
  return analysis['flops'], analysis['bytes accessed'], temp_bytes


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--dim', type=int, default=512)
  p.add_argument('--queries', type=int, default=256)
  p.add_argument('--rows', type=int, default=1 << 16, help='rows a device (= one chunk)')
  p.add_argument('--tpu', default='', help='a TPU topology to compile for, e.g. v5e:2x2')
  p.add_argument('--dtypes', default='float32,bfloat16')
  args = p.parse_args()
  mesh = search_mesh(args.tpu)
  measured = {}
  for name in args.dtypes.split(','):
    flops, nbytes, temp = cost(mesh, args.rows, args.dim, args.queries, jax.numpy.dtype(name))
    measured[name] = {'flops_per_row': flops / args.rows, 'bytes_per_row': nbytes / args.rows,
                      'temp_mb': temp / 2**20}
    print(name, measured[name], flush=True)
  where = f'TPU {args.tpu} (AOT)' if args.tpu else 'CPU'
  print(f'XLA cost per gallery row ({where}, {mesh.devices.size} devices, {args.rows} rows x '
        f'{args.dim} a device, {args.queries} queries, k=10):')
  print(common.table([{'dtype': k, **v} for k, v in measured.items()],
                     ['dtype', 'flops_per_row', 'bytes_per_row', 'temp_mb']))
  rows = []
  for chip, (hbm_gib, tb_s, f32_tflops, bf16_tflops) in CHIPS.items():
    for dtype, peak in (('float32', f32_tflops), ('bfloat16', bf16_tflops)):
      if peak is None or dtype not in measured:   # TPUs: bf16 rows (f32 has no peak listed)
        continue
      m = measured[dtype]
      per_chip = int(GALLERY_SHARE * hbm_gib * 2**30 / (args.dim * (4 if dtype == 'float32'
                                                                     else 2)))
      compute_s = m['flops_per_row'] * per_chip / (peak * 1e12)
      memory_s = m['bytes_per_row'] * per_chip / (tb_s * 1e12)
      rows.append({'chip': chip, 'dtype': dtype, 'rows_per_chip_M': per_chip / 1e6,
                   'ms_per_batch': 1e3 * max(compute_s, memory_s),
                   'bound': 'compute' if compute_s > memory_s else 'memory',
                   'compute_ms': 1e3 * compute_s, 'memory_ms': 1e3 * memory_s})
  print(f'On paper: a full chip, {args.queries} queries a batch, {args.dim}-d rows, '
        f'{GALLERY_SHARE:.0%} of HBM for the gallery')
  print(common.table(rows, list(rows[0])))
  name = 'sharded_search_cost' + ('_' + args.tpu.replace(':', '_') if args.tpu else '')
  print('wrote', common.write_json(name, {'measured': measured, 'paper': rows,
                                          'args': vars(args), 'chips': CHIPS}))


if __name__ == '__main__':
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  main()
