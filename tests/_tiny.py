"""A tiny trainable STBIR model shared by tests (step, gradient accumulation, web demo).

configs/base.py:smoke with 1-layer ViT towers and one joint stage: it compiles in seconds on a
CPU and overfits a handful of examples to Acc@1 = 1 in `num_steps` (80) steps.
"""

import functools

import jax
import numpy as np

from configs import base
from stbir_jax import sharding, stages, train_step
from stbir_jax.models import stbir


def vit_towers(config, hidden=16):
  """`config` with 1-layer ViT sketch and photo towers instead of the smoke ResNet-18s, whose
  train step lowers to twice the HLO (1.73 against 0.93 MB) and takes minutes to compile: for
  tests that need an image tower, not a ResNet."""
  for tower in (config.model.sketch, config.model.photo):
    tower.update(dict(kind='vit', patch_size=8, hidden=hidden, layers=1, heads=2,
                      mlp_dim=4 * hidden))
  return config


def calibrated_split_config(data_dir, num_steps: int = 4, checkpoint_every: int = 4):
  """The smoke config with ViT towers and a split query calibrated after training, evaluated at
  its last step: the runs calibrate_test and soup_test train."""
  config = vit_towers(base.get_config('smoke'))
  config.data.data_dir = str(data_dir)
  config.model.fusion.kind = 'concat'
  config.model.fusion.photo_towers = 2
  config.model.fusion.calibrate = True
  config.train.num_steps = num_steps
  config.train.checkpoint_every = checkpoint_every
  config.evals.retrieval.every_steps = num_steps
  return config


def tiny_config(losses=('contrastive', 'triplet')):
  config = vit_towers(base.get_config('smoke'), hidden=32)
  config.model.embed_dim = 32
  config.curriculum.kind = 'none'
  config.train.modality_dropout = 0.0
  config.train.num_steps = 80
  config.optim.lr = 3e-3
  config.optim.warmup_steps = 5
  config.stages = [stages.joint_stage(stages.PARAM_GROUPS, losses)]
  return config


def random_batch(config):
  """8 random examples (noise photos, scattered stroke pixels, random token ids)."""
  rng = np.random.default_rng(0)
  b, r, text_len = 8, config.data.resolution, config.data.max_text_len
  return dict(
      image=rng.integers(0, 256, (b, r, r, 3), dtype=np.uint8),
      sketch=((rng.random((b, r, r)) < 0.2) * rng.integers(1, 9, (b, r, r))).astype(np.uint8),
      text_ids=rng.integers(1000, 3000, (b, text_len)).astype(np.int32),
      text_mask=np.ones((b, text_len), np.int32), has_sketch=np.ones(b, bool),
      has_text=np.ones(b, bool), category=np.zeros(b, np.int32),
      instance=np.arange(b, dtype=np.int32), family=np.zeros(b, np.int32))


def setup(losses=('contrastive', 'triplet')):
  """-> (config, model, fresh train state, jitted train step), built once per set of losses."""
  return _setup(tuple(losses))  # one cache key, however the losses are passed


@functools.cache
def _setup(losses):
  config = tiny_config(losses)
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, ['thing'])
  mesh = sharding.make_mesh(config.mesh)
  state = train_step.create_sharded_state(config, mesh, model, constants)
  # Not donated: the cached state starts every fit.
  step = jax.jit(train_step.make_step_fn(config, model, stages.build_stages(config)[0], constants,
                                         config.train.num_steps))
  return config, model, state, step


def fit(batch, losses=('contrastive', 'triplet')):
  """Trains the tiny model on one fixed batch for its num_steps.

  -> (config, model, final train state, [loss of every step]).
  """
  config, model, state, step = setup(losses)
  history = []
  for _ in range(config.train.num_steps):
    state, m = step(state, batch)
    history.append(float(m['loss']))
  return config, model, state, history
