"""The towers run on each chip's share of the batch under fsdp, not on the whole global batch:
the compiled 8-device train step (fake CPU devices) holds no text-tower or ViT activation with
the global batch as its leading dimension, and does without sharding.constrain_to_batch."""

import os
import subprocess
import sys
import textwrap

import pytest

import _xla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
  import re
  import jax
  from configs import base
  import _tiny
  from stbir_jax import aot, evaluate, sharding, stages, train_step
  from stbir_jax.models import stbir

  assert jax.device_count() == 8, jax.devices()
  # 1-layer ViT towers (hidden 64, 17 tokens at 32 px) whose kernels are sharded too, like the
  # full config's ViT-B kernels (each over FSDP_MIN_SIZE there).
  config = _tiny.vit_towers(base.get_config('smoke'), hidden=64)
  sharding.FSDP_MIN_SIZE = 1024
  config.mesh.update(data=1, fsdp=8, model=1)   # the word embeddings (30522 x 16) are sharded
  config.train.batch_size = 16
  config.model.text.mlp_dim = 48                # a width nothing else in the model has
  length = config.data.max_text_len
  model = stbir.STBIR.from_config(config)
  constants = aot.shape_constants(config, 1)
  mesh = sharding.make_mesh(config.mesh)
  state, shardings = train_step.abstract_state(config, model, constants, mesh)
  batch = jax.eval_shape(lambda: stbir.dummy_batch(config, 16))
  batch_sharding = sharding.batch_sharding(mesh)
  batch = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch_sharding), batch)
  stage = stages.build_stages(config)[-1]

  def mlp_batches():
    """The leading dimensions of the text tower's MLP activations and of the ViT's token
    activations (width 64) in a chip's program: the train step's, and the evaluator's query
    encoder's (the sketch ViT and the text tower)."""
    step = train_step.jit_step(config, model, stage, constants, 6, mesh, shardings)
    hlo = step.lower(state, batch).compile().as_text()
    evaluator = evaluate.make_evaluator('retrieval', config, model, data_fns={}, mesh=mesh)
    query = {k: batch[k] for k in evaluate.QUERY_KEYS}
    variables = stbir.model_variables(state.params)
    hlo += evaluator._encode_query.lower(variables, query).compile().as_text()
    return {tower: sorted({int(b) for b in re.findall(rf'f32\\[(\\d+),{shape}\\]', hlo)})
            for tower, shape in (('text', f'{length},48'), ('vit', '17,64'))}

  for tower, batches in mlp_batches().items():
    print('constrained', tower, batches)
  sharding.constrain_to_batch = lambda x: x
  for tower, batches in mlp_batches().items():
    print('unconstrained', tower, batches)
''')


@pytest.mark.slow   # two compiles of the 8-device step: ~2 minutes on 2 cores
def test_the_towers_run_on_each_devices_share_of_the_batch_under_fsdp():
  env = dict(os.environ, XLA_FLAGS=_xla.flags(8),
             JAX_PLATFORMS='cpu', PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, 'tests')]))
  proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  lines = {tuple(line.split(' ', 2)[:2]): line.split(' ', 2)[2]
           for line in proc.stdout.splitlines() if ' [' in line}
  # 16 examples over 8 devices: 2 a device. Without the constraints every device computes the
  # text tower's MLP for all 16, and the ViT's layers on all 16 with a slice of their kernels.
  assert lines[('constrained', 'text')] == '[2]', proc.stdout
  assert lines[('constrained', 'vit')] == '[2]', proc.stdout
  assert '16' in lines[('unconstrained', 'text')], proc.stdout
  assert '16' in lines[('unconstrained', 'vit')], proc.stdout
