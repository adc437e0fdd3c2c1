"""Input pipeline examples/s (Grain train_iterator, demo config) vs the demo train step's demand.

  /work/venv/bin/python benchmarks/pipeline.py [--quick] [--data_dir /tmp/bench_data]

(a) pipeline alone: batches/s of stbir_jax.data.pipeline.train_iterator after a warm-up;
(b) step alone: the real demo train step (make_step_fn, stage 'text_integration', the most
    expensive: all towers, all losses, curriculum degradations) on one fixed device batch;
(c) both: the train loop's pattern, next(iterator) -> device_put -> step, as train.py runs it.
The pipeline leads by (a)/(b); (c)/(b) near 1 says it is not the bottleneck in practice, where
its threads share the same 2 cores with the step.
"""

import argparse
import time

import jax

import common
from configs import base
from stbir_jax import stages, train_step
from stbir_jax.data import pipeline
from stbir_jax.models import stbir


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--quick', action='store_true')
  p.add_argument('--data_dir', default='/tmp/bench_data')
  args = p.parse_args()
  n = 10 if args.quick else 25
  config = base.get_config('demo')
  config.data.data_dir = args.data_dir
  pipeline.ensure_built(config.data)
  batch_size = config.train.batch_size
  load = common.wait_for_quiet()

  it = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                               seed=config.train.seed)
  for _ in range(3):
    next(it)
  t = time.perf_counter()
  for _ in range(n):
    host = next(it)
  pipe_s = (time.perf_counter() - t) / n

  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, pipeline.category_names(config.data))
  stage = stages.build_stages(config)[-1]
  state = jax.jit(lambda k: train_step.init_state(config, model, constants, k))(
      jax.random.PRNGKey(0))
  step = jax.jit(train_step.make_step_fn(config, model, stage, constants, config.train.num_steps),
                 donate_argnums=(0,))
  dev = jax.device_put(host)
  state, m = step(state, dev)
  jax.block_until_ready(m['loss'])
  t = time.perf_counter()
  for _ in range(n):
    state, m = step(state, dev)
    jax.block_until_ready(m['loss'])   # train.py syncs only at log time; this is conservative
  step_s = (time.perf_counter() - t) / n

  t = time.perf_counter()
  for _ in range(n):
    state, m = step(state, jax.device_put(next(it)))
  jax.block_until_ready(m['loss'])
  both_s = (time.perf_counter() - t) / n

  r = dict(batch=batch_size, batches=n, load=load,
           pipeline_examples_per_s=batch_size / pipe_s, step_examples_per_s=batch_size / step_s,
           loop_examples_per_s=batch_size / both_s, num_workers=int(config.data.num_workers))
  r['pipeline_lead'] = r['pipeline_examples_per_s'] / r['step_examples_per_s']
  r['loop_over_step'] = r['loop_examples_per_s'] / r['step_examples_per_s']
  rows = [dict(what='Grain train_iterator alone', examples_per_s=r['pipeline_examples_per_s']),
          dict(what='demo train step alone (demand)', examples_per_s=r['step_examples_per_s']),
          dict(what='train loop (iterator + step)', examples_per_s=r['loop_examples_per_s'])]
  print(f'Input pipeline, demo config (batch {batch_size}, {n} batches each)')
  print(common.table(rows, ['what', 'examples_per_s']))
  print(f'pipeline lead = {r["pipeline_lead"]:.2f}x; loop/step = {r["loop_over_step"]:.2f}')
  print('wrote', common.write_json('pipeline', dict(result=r, table=rows)))


if __name__ == '__main__':
  main()
