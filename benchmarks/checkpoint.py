"""Checkpoint cost at the demo config: save time, and what saving does to the step time.

  .venv/bin/python benchmarks/checkpoint.py [--saves 5] [--every 10] [--rounds 4]

The real pieces of a training run: configs/base.py:demo, its Grain pipeline, the jitted,
donated train step and stbir_jax.checkpoint.Checkpointer (async orbax save of the train state
and the Grain iterator, plus the state's checksums).

1. Save: `blocking` is the time Checkpointer.save holds the training thread (checksums, copy of
   the arrays off the device, orbax bookkeeping); `total` is until the background write has
   finished (wait_until_finished). Each save starts with no other save in flight.
2. Step time: blocks of --every steps without a save, alternating with blocks that save at
   their first step and then wait for that save to finish at their end (so the whole write,
   overlapped or not, is charged to its block). Alternating (and alternating which goes first)
   makes contention from other jobs on the machine hit both alike; medians over --rounds.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import time

import jax

import common


def _uptime() -> str:
  return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def _dir_bytes(path) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def setup(config, workdir):
  from stbir_jax import checkpoint, sharding, stages, train_step  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(config.mesh)
  pipeline.ensure_built(config.data)
  constants = train_step.make_constants(config, pipeline.category_names(config.data))
  model = stbir.STBIR.from_config(config)
  abstract, shardings = train_step.abstract_state(config, model, constants, mesh)
  state = train_step.create_sharded_state(config, mesh, model, constants, abstract=abstract)
  stage = stages.build_stages(config)[0]
  step_fn = train_step.jit_step(config, model, stage, constants, config.train.num_steps, mesh,
                                shardings)
  train_iter = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                       seed=config.train.seed)
  shutil.rmtree(workdir, ignore_errors=True)
  ckpt = checkpoint.Checkpointer(workdir, keep=3)

  def one_step(state):
    batch = sharding.global_batch(mesh, next(train_iter))
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics['loss'])
    return state

  return state, one_step, ckpt, train_iter


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--config', default='demo')
  parser.add_argument('--saves', type=int, default=5)
  parser.add_argument('--every', type=int, default=10, help='steps per block (save every N)')
  parser.add_argument('--rounds', type=int, default=4)
  parser.add_argument('--workdir', default='/tmp/bench_checkpoint')
  args = parser.parse_args()
  from configs import base  # pylint: disable=g-import-not-at-top
  from stbir_jax import checkpoint  # pylint: disable=g-import-not-at-top
  config = base.get_config(args.config)
  uptime_start = _uptime()
  print(uptime_start, flush=True)

  state, one_step, ckpt, train_iter = setup(config, args.workdir)
  t = time.perf_counter()
  state = one_step(state)
  compile_s = time.perf_counter() - t
  state = one_step(state)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  n_state = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  print(f'compiled in {compile_s:.1f}s; {n_params:,} params; train state {n_state / 2**20:.1f} MiB',
        flush=True)

  saved = [0]

  def save():
    saved[0] += 1
    t = time.perf_counter()
    ckpt.save(saved[0], state, train_iter)
    blocking = time.perf_counter() - t
    ckpt.wait()
    return blocking, time.perf_counter() - t

  # 1. Save times, each on its own; the checksums alone for reference.
  checkpoint.fingerprint(state)  # compile
  fingerprint_s = []
  for _ in range(args.saves):
    t = time.perf_counter()
    checkpoint.fingerprint(state)
    fingerprint_s.append(time.perf_counter() - t)
  saves = []
  for _ in range(args.saves):
    state = one_step(state)
    saves.append(save())
  size = _dir_bytes(os.path.join(args.workdir, 'checkpoints', str(saved[0])))

  # 2. Step time with and without a save in the block, interleaved.
  def block(with_save):
    nonlocal state
    t = time.perf_counter()
    if with_save:
      saved[0] += 1
      ckpt.save(saved[0], state, train_iter)
    for _ in range(args.every):
      state = one_step(state)
    if with_save:
      ckpt.wait()
    return (time.perf_counter() - t) / args.every

  block(False)
  per_step = {False: [], True: []}
  for r in range(args.rounds):
    for with_save in ((False, True) if r % 2 == 0 else (True, False)):
      per_step[with_save].append(block(with_save))
  ckpt.close()

  blocking = [b for b, _ in saves]
  total = [t for _, t in saves]
  plain, saving = statistics.median(per_step[False]), statistics.median(per_step[True])
  rows_save = [dict(what='save, blocking (training thread)', median_s=statistics.median(blocking),
                    min_s=min(blocking), max_s=max(blocking)),
               dict(what='save, until written (async total)', median_s=statistics.median(total),
                    min_s=min(total), max_s=max(total)),
               dict(what='of which checksums (blocking)', median_s=statistics.median(fingerprint_s),
                    min_s=min(fingerprint_s), max_s=max(fingerprint_s))]
  rows_step = [dict(block=f'{args.every} steps, no save', median_step_s=plain,
                    samples=' '.join(f'{x:.3f}' for x in per_step[False])),
               dict(block=f'{args.every} steps, one save', median_step_s=saving,
                    samples=' '.join(f'{x:.3f}' for x in per_step[True]))]
  overhead = saving / plain - 1.0
  uptime_end = _uptime()
  print()
  print(f'config {args.config}: {n_params:,} params, train state {n_state / 2**20:.1f} MiB, '
        f'checkpoint on disk {size / 2**20:.1f} MiB; {args.saves} saves, {args.rounds} rounds')
  print(common.table(rows_save, ['what', 'median_s', 'min_s', 'max_s']))
  print()
  print(common.table(rows_step, ['block', 'median_step_s', 'samples']))
  print(f'\nsaving every {args.every} steps: {100 * overhead:+.1f}% step time '
        f'({(saving - plain) * args.every:.3f}s a save)')
  print(f'load: start "{uptime_start}"\n      end   "{uptime_end}"')
  path = common.write_json(f'checkpoint_every{args.every}', dict(
      config=args.config, params=n_params, state_bytes=n_state, checkpoint_bytes=size,
      compile_s=compile_s, save_blocking_s=blocking, save_total_s=total,
      checksums_s=fingerprint_s, every=args.every, rounds=args.rounds,
      step_s_no_save=per_step[False], step_s_with_save=per_step[True], overhead=overhead,
      uptime_start=uptime_start, uptime_end=uptime_end))
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
