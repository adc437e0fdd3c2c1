"""Host-side input rate at the full run's 224 px: Grain train_iterator examples per CPU-second.

  python benchmarks/host_feed.py [--data_dir /tmp/host_feed_data] [--batches 20]

The full config's pipeline (stbir_jax.data.pipeline.train_iterator: read array_record, decode the
PNG photo and stroke map, tokenise, shuffle, batch) on a small STBIR-Synth build at 224 px
(the smoke variant's families, data.resolution=224). Reports wall examples/s and examples per
CPU-second of this process (all its threads): on a shared machine the CPU-second figure is the
one that transfers, since it does not count time the process waited for a core. Multiply it by a
TPU VM's host cores for what one host can feed (docs/scaling.md).
"""

import argparse
import os
import time

from configs import base
from stbir_jax.data import pipeline


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--data_dir', default='/tmp/host_feed_data')
  p.add_argument('--batches', type=int, default=20)
  p.add_argument('--batch_size', type=int, default=64)
  args = p.parse_args()
  config = base.get_config('smoke')
  config.data.resolution = 224
  config.data.data_dir = args.data_dir
  config.data.synth.update(
      {'train_families': 8, 'structural_variants': 4, 'appearance_variants': 4})
  config.train.batch_size = args.batch_size
  config.data.family_group = 16
  config.data.tokenizer = 'bert_uncased'
  pipeline.ensure_built(config.data)
  it = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                               seed=config.train.seed)
  for _ in range(3):  # warm-up: threads started, first records read
    batch = next(it)
  assert batch['image'].shape[1:] == (224, 224, 3), batch['image'].shape
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(args.batches):
    next(it)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  n = args.batches * args.batch_size
  print(f'{n} examples at 224 px: {n / wall:.0f} examples/s wall, {n / cpu:.0f} examples per '
        f'CPU-second (this process, all threads); load average {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
