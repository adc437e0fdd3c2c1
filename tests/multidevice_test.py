"""One train step on 8 fake CPU devices equals the 1-device step, with and without gradient
accumulation: the loss and every gradient leaf to 1e-5 (of the global norm), and the updated
params to 1e-5 (with an Adam epsilon that makes the update Lipschitz in the gradient; see the
script)."""

import os
import subprocess
import sys
import textwrap

import pytest

import _xla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
  import jax, numpy as np
  from configs import base
  from stbir_jax import config_checks, sharding, stages, train_step
  from stbir_jax.models import stbir

  assert jax.device_count() == 8, jax.devices()
  FSDP = __FSDP__
  config = base.get_config('smoke')
  config.mesh.fsdp = FSDP
  # Small ViT image towers: the smoke ResNets triple the compile time and test nothing more here.
  vit = dict(kind='vit', patch_size=8, hidden=16, layers=1, heads=2, mlp_dim=32)
  config.model.sketch.update(vit)
  config.model.photo.update(vit)
  config.model.embed_dim = 32
  # Adam's first update is lr * g / (|g| + eps) per element, whose derivative in g is at most
  # 1 / eps: with the default eps = 1e-8 a gradient of 1e-9 that another reduction order turns
  # into -1e-9 flips a whole step of lr. Gradient clipping before it is Lipschitz too (factor
  # <= 2 clip_norm / |G| for relative changes), so gradients equal to 1e-5 |G| give params equal
  # to lr * 2e-5 * clip_norm / eps = 1e-6 here (lr = 5e-4 at this step, clip_norm = 1).
  config.optim.eps = 1e-2
  rng = np.random.default_rng(0)
  b, r, l = 16, config.data.resolution, config.data.max_text_len
  config.train.batch_size = b
  batch = dict(
      image=rng.integers(0, 256, (b, r, r, 3), dtype=np.uint8),
      sketch=(rng.random((b, r, r)) < 0.1).astype(np.uint8)
      * rng.integers(1, 9, (b, r, r), dtype=np.uint8),
      text_ids=rng.integers(1000, 2000, (b, l)).astype(np.int32),
      text_mask=(np.arange(l)[None] < rng.integers(3, l, (b, 1))).astype(np.int32),
      has_sketch=np.ones(b, bool), has_text=np.ones(b, bool),
      category=rng.integers(0, 4, b).astype(np.int32), instance=np.arange(b, dtype=np.int32),
      family=np.repeat(np.arange(4), 4).astype(np.int32))
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, ['sneaker', 'boot', 'high heel', 'loafer'])
  stage = stages.build_stages(config)[-1]  # text integration: every tower and every loss

  def one_step(devices, accum):
    config.train.grad_accum_steps = accum
    mesh = sharding.make_mesh(config.mesh if len(devices) > 1 else dict(data=1, fsdp=1, model=1),
                              devices)
    config_checks.validate_config(config, 1, sharding.data_parallel_size(mesh))
    abstract, shard = train_step.abstract_state(config, model, constants, mesh)
    state = train_step.create_sharded_state(config, mesh, model, constants, abstract=abstract)
    state = state.replace(step=jax.device_put(np.int32(stage.start), shard.step))
    global_batch = sharding.global_batch(mesh, batch)
    grad_fn = jax.jit(train_step.make_value_and_grad(config, model, stage, constants),
                      in_shardings=(shard.params, sharding.batch_sharding(mesh)))
    (_, _), grads = grad_fn(state.params, global_batch)
    before = jax.device_get(state.params)
    step = jax.jit(train_step.make_step_fn(config, model, stage, constants, 6),
                   in_shardings=(shard, sharding.batch_sharding(mesh)),
                   out_shardings=(shard, sharding.replicated(mesh)))
    new, metrics = step(state, global_batch)
    return dict(before=before, grads=jax.device_get(grads), params=jax.device_get(new.params),
                loss=float(metrics['loss']), lr=float(metrics['lr']), shard=shard, new=new)

  def max_diff(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b)))

  ref = one_step(jax.devices()[:1], 1)
  norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(ref['grads']))))
  moved = max_diff(ref['before'], ref['params'])
  print('grad norm', norm, 'lr', ref['lr'], 'largest param move', moved)
  assert norm > 0.1 and moved > 0.1 * ref['lr']  # a real step, so equal params mean something
  for accum in (1, 2):
    got = one_step(jax.devices(), accum)
    print(f'8 devices, grad_accum_steps={accum}: loss', ref['loss'], got['loss'],
          'max grad diff / |G|', max_diff(ref['grads'], got['grads']) / norm,
          'max param diff', max_diff(ref['params'], got['params']))
    assert abs(ref['loss'] - got['loss']) <= 1e-5, (ref['loss'], got['loss'])
    for path, g1, g8 in zip(jax.tree_util.tree_leaves_with_path(ref['grads']),
                            jax.tree.leaves(ref['grads']), jax.tree.leaves(got['grads'])):
      assert np.max(np.abs(g1 - g8)) <= 1e-5 * norm, (jax.tree_util.keystr(path[0]), accum)
    assert max_diff(ref['params'], got['params']) <= 1e-5, accum
    if FSDP > 1:
      specs = [s.spec for s in jax.tree.leaves(got['shard'].params)]
      assert any('fsdp' in str(s) for s in specs), specs
      big = [x for x in jax.tree.leaves(got['new'].params) if x.size >= sharding.FSDP_MIN_SIZE]
      assert big and all(len(x.sharding.device_set) == 8 for x in big)
  print('OK')
''')


def _run(fsdp):
  env = dict(os.environ, XLA_FLAGS=_xla.flags(8),
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, '-c', SCRIPT.replace('__FSDP__', str(fsdp))], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  assert 'OK' in proc.stdout
  print(proc.stdout)


def test_data_parallel_step_matches_single_device():
  _run(fsdp=1)


@pytest.mark.slow
def test_fsdp_step_matches_single_device():
  _run(fsdp=2)
