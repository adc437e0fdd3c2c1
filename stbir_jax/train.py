"""The training program: `train_and_evaluate(config, workdir)` is the whole run.

Mesh -> data -> state (eval_shape -> shardings -> jit(init)) or exact resume from a checkpoint ->
stages of jitted, donated train steps -> periodic metrics, checkpoints and evaluations -> the
final results table. Everything inside a step is a pure function of (state, batch): the
curriculum's bucket draws and degradations are keyed by (seed, step), so a resumed run repeats
the uninterrupted one bit for bit.
"""

import difflib
import importlib.util
import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import periodic_actions

from stbir_jax import checkpoint, convert, curriculum, evaluate, losses, paths, sharding, stages
from stbir_jax import degradations, query_modes
from stbir_jax.console import Console, metric_writer
from stbir_jax import config_checks as field_checks
from stbir_jax import run_config as recorded_config
from stbir_jax.data import pipeline
from stbir_jax.data.tokenizer import get_tokenizer
from stbir_jax.models.stbir import STBIR

NAN_POLICIES = ('stop', 'skip')
# Config sections whose change makes old checkpoints unusable in this workdir.
STRUCTURAL_KEYS = ('model', 'data')
# ... except these, which change how a run proceeds, not what it trains: e.g. a run stopped by a
# corrupt record resumes with data.on_bad_record='skip'; remat recomputes the same values.
RESUMABLE_KEYS = ('data.on_bad_record', 'model.remat')
LOGIT_KEYS = ('logit_scale', 'logit_bias')   # model outputs the losses read besides embeddings
# Keys a config may lack, read with a default (models/layers.option): not unknown where present.
OPTIONAL_KEYS = ('model.text.max_positions', 'model.text.projection_size')


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array                      # int32 scalar: next step to run
  params: dict                         # stages.PARAM_GROUPS -> pytrees
  opt_state: Any
  curriculum: curriculum.CurriculumState
  rng: jax.Array                       # uint32[2] base key; step keys are fold_in(rng, step)
  first_bad_step: jax.Array            # int32, -1 until a non-finite loss/grad is seen
  skipped_steps: jax.Array             # int32, updates skipped for non-finite values


ConfigError = field_checks.ConfigError


# ------------------------------------------------------------------------------------ config


def validate_config(config, num_processes: int = 1, data_parallel: int = 1) -> None:
  """Fails before any compute on combinations that cannot run, saying what to change."""
  check_known_keys(config, default_config(config))
  field_checks.check_fields(config)  # each field's own type and range
  batch = config.train.batch_size
  if batch % data_parallel:  # the mesh spans every process, so this is the global size
    raise ConfigError(f'train.batch_size={batch} is not divisible by the data-parallel size '
                      f'{data_parallel} (mesh data x fsdp); use a multiple of it.')
  if batch % num_processes:
    raise ConfigError(f'train.batch_size={batch} is not divisible by the {num_processes} '
                      'processes; use a multiple of it.')
  if config.data.family_group < 1 or batch % config.data.family_group:
    raise ConfigError(f'train.batch_size={batch} must be a multiple of data.family_group='
                      f'{config.data.family_group}.')
  if config.loss.kind not in losses.CONTRASTIVE_KINDS:
    raise ConfigError(f'loss.kind={config.loss.kind!r}; valid: '
                      f'{", ".join(losses.CONTRASTIVE_KINDS)}.')
  if config.train.nan_policy not in NAN_POLICIES:
    raise ConfigError(f'train.nan_policy={config.train.nan_policy!r}; valid: '
                      f'{", ".join(NAN_POLICIES)}.')
  _validate_grad_accum(batch, data_parallel, config.train.grad_accum_steps)
  for group, scale in config.optim.group_lr_scale.items():
    if group not in stages.PARAM_GROUPS or not scale >= 0:
      raise ConfigError(f'optim.group_lr_scale.{group}={scale!r}; expected a scale >= 0 for each '
                        f'parameter group ({", ".join(stages.PARAM_GROUPS)}).')
  names = [b.name for b in config.curriculum.buckets]
  if not names or names[0] != 'clean':
    raise ConfigError(f'curriculum.buckets must start with the "clean" bucket, got {names}.')
  for name in config.eval.robustness_buckets:
    if name not in names:
      raise ConfigError(f'eval.robustness_buckets names {name!r}; defined buckets: {names}.')
  for name in config.eval.evaluators:
    evaluate.get_evaluator(name)  # raises listing the valid names
  try:
    pipeline.bad_record_policy(config)
  except pipeline.DataError as e:
    raise ConfigError(str(e)) from e
  stages.build_stages(config)


def default_config(config):
  """The defaults of `config`'s variant (configs/base.py), or None for a config without a
  variant or where configs/base.py is not importable (the package installed without the repo)."""
  if 'variant' not in config:
    return None
  try:
    from configs import base  # pylint: disable=g-import-not-at-top
  except ImportError:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                        'base.py')
    if not os.path.exists(path):
      logging.warning('configs/base.py not found: unknown config keys are not checked.')
      return None
    spec = importlib.util.spec_from_file_location('stbir_configs_base', path)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
  return base.get_config(config.variant)


def check_known_keys(config, defaults, where: str = 'config') -> None:
  """Raises on a key that `defaults` lacks: a typo (train.checkpoint_evry) would otherwise be
  silently ignored while the real key keeps its default."""
  if defaults is None:
    return
  for key, value in config.items():
    path = f'{where}.{key}'
    if key not in defaults:
      if path.removeprefix('config.') in OPTIONAL_KEYS:
        continue
      close = difflib.get_close_matches(key, list(defaults.keys()), n=1)
      hint = f' Did you mean {where}.{close[0]}?' if close else ''
      raise ConfigError(f'Unknown config key {path}={value!r}: the defaults in configs/base.py '
                        f'have no such key, so it would be ignored.{hint}')
    known = defaults[key]
    if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(
        known, (dict, ml_collections.ConfigDict)):
      check_known_keys(value, known, path)
    elif isinstance(value, (list, tuple)) and known and all(
        isinstance(k, (dict, ml_collections.ConfigDict)) for k in known):
      # A list of records (stages, curriculum buckets): every item may use any of their keys.
      fields = ml_collections.ConfigDict({f: None for k in known for f in k})
      for i, item in enumerate(value):
        if isinstance(item, (dict, ml_collections.ConfigDict)):
          check_known_keys(item, fields, f'{path}[{i}]')


def _validate_grad_accum(batch: int, data_parallel: int, accum) -> None:
  if not isinstance(accum, int) or isinstance(accum, bool) or accum < 1:
    raise ConfigError(f'train.grad_accum_steps={accum!r}; expected an integer >= 1.')
  if batch % accum:
    raise ConfigError(f'train.batch_size={batch} is not divisible by train.grad_accum_steps='
                      f'{accum}; use a batch size that is a multiple of it.')
  per_device = batch // data_parallel
  if per_device % accum:
    # Micro-batch j takes rows j, j+k, j+2k, ... so that every device holds a share of every
    # micro-batch; with an uneven share some devices would idle while the others compute.
    raise ConfigError(f'train.batch_size={batch} over the data-parallel size {data_parallel} '
                      f'gives {per_device} rows per device, not divisible by '
                      f'train.grad_accum_steps={accum}; use a batch size that is a multiple of '
                      f'{data_parallel * accum}.')


def check_workdir_config(config, workdir, has_checkpoint: bool) -> None:
  """Refuses to resume checkpoints written under a different model or data config."""
  path = paths.resolve(workdir) / 'config.json'
  if has_checkpoint and path.exists():
    old = json.loads(path.read_text())
    new = json.loads(config.to_json_best_effort())
    diffs = []
    for section in STRUCTURAL_KEYS:
      flat = recorded_config.flatten
      a, b = flat(old.get(section, {})), flat(new.get(section, {}))
      diffs += [f'{section}.{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}'
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k) and f'{section}.{k}' not in RESUMABLE_KEYS]
    if diffs:
      raise ConfigError(
          f'{workdir} holds checkpoints of an incompatible config; differences:\n  '
          + '\n  '.join(diffs) + '\nUse a new --workdir, or the config the run was started with.')


# ------------------------------------------------------------------------------------ model/state


def make_model(config) -> STBIR:
  # The sigmoid loss learns a logit bias next to the scale (temperature/bias).
  bias = config.loss.init_logit_bias if config.loss.kind == 'sigmoid' else None
  return STBIR(config.model, init_temperature=config.loss.init_temperature, init_logit_bias=bias)


def dummy_batch(config, batch_size: int) -> dict:
  r, l = config.data.resolution, config.data.max_text_len
  return dict(
      image=jnp.zeros((batch_size, r, r, 3), jnp.uint8),
      sketch=jnp.zeros((batch_size, r, r), jnp.uint8),
      text_ids=jnp.zeros((batch_size, l), jnp.int32),
      text_mask=jnp.ones((batch_size, l), jnp.int32),
      has_sketch=jnp.ones((batch_size,), bool), has_text=jnp.ones((batch_size,), bool),
      category=jnp.zeros((batch_size,), jnp.int32),
      instance=jnp.arange(batch_size, dtype=jnp.int32),
      family=jnp.zeros((batch_size,), jnp.int32))


def model_variables(params) -> dict:
  return {'params': {k: params[k] for k in stages.MODEL_GROUPS}}


def make_optimizer(config) -> optax.GradientTransformation:
  """Clip -> Adam moments -> decoupled weight decay on kernels; the train step applies -lr."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return optax.chain(
      optax.clip_by_global_norm(config.optim.clip_norm),
      optax.scale_by_adam(b1=config.optim.b1, b2=config.optim.b2, eps=config.optim.eps),
      optax.add_decayed_weights(config.optim.weight_decay, mask=decay_mask))


def learning_rate(config, stage: stages.Stage, step):
  """Per-stage linear warmup then cosine decay, times the stage's lr_scale."""
  local = jnp.asarray(step - stage.start, jnp.float32)
  n = float(stage.num_steps)
  warm = float(max(1, min(config.optim.warmup_steps, stage.num_steps // 5)))
  progress = jnp.clip((local - warm) / max(n - warm, 1.0), 0.0, 1.0)
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  return config.optim.lr * stage.lr_scale * jnp.where(local < warm, (local + 1) / warm, cosine)


class Constants(flax.struct.PyTreeNode):
  """Host-computed arrays the step closes over (tokenised prompts, attribute word ids)."""
  prompt_ids: Any
  prompt_mask: Any
  attribute_ids: Any
  buckets: Any


def make_constants(config, category_names) -> Constants:
  tok = get_tokenizer(config.data.tokenizer)
  prompts = [config.category.prompt.format(name) for name in category_names]
  ids, mask = tok.encode(prompts, config.data.max_text_len)
  return Constants(jnp.asarray(ids), jnp.asarray(mask),
                   jnp.asarray(degradations.attribute_token_ids(config.data.tokenizer)),
                   degradations.buckets_from_config(config.curriculum.buckets))


def init_state(config, model, constants: Constants, key, pretrained=None) -> TrainState:
  """A fresh train state; `pretrained` ({group: params} from convert.load_pretrained) replaces
  the random towers it names before the category prototypes are encoded."""
  # Parameter initialisers compile several times faster on CPU with the rbg generator than with
  # threefry; the step keys stay threefry (fold_in(rng, step)).
  init_key = jax.random.wrap_key_data(jnp.concatenate([key, key]).astype(jnp.uint32), impl='rbg')
  params = dict(model.init(init_key, dummy_batch(config, 2))['params'])
  params = convert.merge_pretrained(params, pretrained or {})
  if config.category.enabled and config.category.learn_prototypes:
    # Category knowledge: prototypes start as the text tower's encodings of the category prompts.
    params['prototypes'] = model.apply({'params': params}, constants.prompt_ids,
                                       constants.prompt_mask, method=STBIR.encode_text)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=make_optimizer(config).init(params),
      curriculum=curriculum.init_state(len(config.curriculum.buckets)),
      rng=jax.random.PRNGKey(config.train.seed), first_bad_step=jnp.full((), -1, jnp.int32),
      skipped_steps=jnp.zeros((), jnp.int32))


# ------------------------------------------------------------------------------------ train step


def modality_dropout(key, batch, p: float):
  """Drops the sketch or (exclusively) the text of a query with probability p each."""
  u = jax.random.uniform(key, batch['has_sketch'].shape)
  drop_sketch = (u < p) & batch['has_text']
  drop_text = (u >= p) & (u < 2 * p) & batch['has_sketch']
  return dict(batch, has_sketch=batch['has_sketch'] & ~drop_sketch,
              has_text=batch['has_text'] & ~drop_text)


def _bucket_means(values, bucket_idx, num_buckets):
  sums = jax.ops.segment_sum(values, bucket_idx, num_buckets)
  counts = jax.ops.segment_sum(jnp.ones_like(values), bucket_idx, num_buckets)
  return sums / jnp.maximum(counts, 1.0), counts


def _split_micro(x, k: int):
  """(B, ...) -> (k, B/k, ...): micro-batch j holds rows j, j+k, j+2k, ... With the batch split
  over devices in contiguous blocks, every device then holds an equal share of each micro-batch."""
  return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)


def _merge_micro(x):
  """The inverse of _split_micro: (k, B/k, ...) -> (B, ...) in the original row order."""
  return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def make_value_and_grad(config, model, stage: stages.Stage, constants: Constants):
  """(params, batch) -> ((loss, (terms, per-example InfoNCE, logit scale)), grads) of a stage.

  With train.grad_accum_steps = k > 1 the gradient is computed the GradCache way (Gao et al.
  2021), because every loss compares each query with the whole global batch: (1) embed the k
  micro-batches without keeping activations; (2) the loss of the whole batch and its gradient
  w.r.t. the embeddings and the parameters it reads directly (temperature, prototypes); (3) per
  micro-batch, the forward again with a VJP against its embedding gradients, summed. The result
  is the unaccumulated gradient (up to float summation order) at the activation memory of one
  micro-batch, for ~1/3 more compute. Exact because every embedding row depends on its own inputs
  only (the towers use group/affine norms, no batch statistics).
  """
  frozen = tuple(g for g in stages.PARAM_GROUPS if g not in stage.train)
  single = 'single_modality' in stage.losses
  accum = int(config.train.grad_accum_steps)
  wl = config.loss

  def freeze(params):
    return {k: jax.lax.stop_gradient(v) if k in frozen else v for k, v in params.items()}

  def loss_terms(params, out, batch):
    """The stage's losses from the whole batch's model outputs (embeddings, logit scale)."""
    q, g, scale = out['query'], out['gallery'], out['logit_scale']
    logits = {k: out[k] for k in LOGIT_KEYS if k in out}
    weights = None
    if config.category.enabled:
      weights = losses.intra_category_weights(batch['category'], batch['instance'],
                                              config.category.hard_negative_weight)
    per_example = losses.per_example_contrastive(wl.kind, q, g, logits,
                                                 instance=batch['instance'],
                                                 negative_weights=weights)
    terms = {}
    if 'contrastive' in stage.losses:
      terms['contrastive'] = losses.contrastive(wl.kind, q, g, logits, instance=batch['instance'],
                                                negative_weights=weights)
    if 'single_modality' in stage.losses:
      # Each modality must retrieve on its own too: a direct signal for what the fused query
      # would otherwise learn only through the other (e.g. colour words before shapes match).
      terms['single_modality'] = 0.5 * sum(
          losses.contrastive(wl.kind, out[key], g, logits, instance=batch['instance'],
                             negative_weights=weights, valid=batch[has])
          for key, has in (('query_sketch', 'has_sketch'), ('query_text', 'has_text')))
    if 'triplet' in stage.losses:
      terms['triplet'] = losses.triplet_hard(q, g, wl.triplet_margin, instance=batch['instance'])
    if 'prototype' in stage.losses:
      if config.category.learn_prototypes:
        protos = params['prototypes']
      else:
        protos = model.apply(model_variables(params), constants.prompt_ids, constants.prompt_mask,
                             method=STBIR.encode_text)
      kw = dict(margin=config.category.margin, temperature=config.category.temperature)
      terms['prototype'] = 0.5 * (losses.prototype_loss(q, batch['category'], protos, **kw)
                                  + losses.prototype_loss(g, batch['category'], protos, **kw))
    total = sum(getattr(wl, name) * value for name, value in terms.items())
    return total, (terms, per_example, scale)

  def loss_fn(params, batch):
    params = freeze(params)
    out = model.apply(model_variables(params), batch, single_modality=single)
    return loss_terms(params, out, batch)

  if accum == 1:
    return jax.value_and_grad(loss_fn, has_aux=True)

  def embed(params, batch):
    """Per-row model outputs (query and gallery embeddings) of a micro-batch."""
    out = model.apply(model_variables(freeze(params)), batch, single_modality=single)
    return {k: v for k, v in out.items() if k not in LOGIT_KEYS}

  def head(params, emb, batch):
    params = freeze(params)
    logits = model.apply(model_variables(params), method=STBIR.logits)
    return loss_terms(params, dict(emb, **logits), batch)

  def value_and_grad(params, batch):
    micro = jax.tree.map(lambda x: _split_micro(x, accum), batch)
    # (1) A forward-only map: no activations are kept for a backward pass.
    emb = jax.tree.map(_merge_micro, jax.lax.map(lambda mb: embed(params, mb), micro))
    # (2) The loss of the whole batch, differentiated w.r.t. the embeddings (and the params it
    # reads directly).
    (loss, aux), (grads, emb_grads) = jax.value_and_grad(head, argnums=(0, 1), has_aux=True)(
        params, emb, batch)

    # (3) One micro-batch at a time: recompute its forward, pull its embedding gradients back.
    def backward(acc, xs):
      mb, cotangent = xs
      _, vjp = jax.vjp(lambda p: embed(p, mb), params)
      return jax.tree.map(jnp.add, acc, vjp(cotangent)[0]), None

    cotangents = jax.tree.map(lambda x: _split_micro(x, accum), emb_grads)
    grads, _ = jax.lax.scan(backward, grads, (micro, cotangents))
    return (loss, aux), grads

  return value_and_grad


def make_step_fn(config, model, stage: stages.Stage, constants: Constants, total_steps: int):
  """The pure train step of one stage: (state, batch) -> (state, metrics)."""
  optimizer = make_optimizer(config)
  frozen = tuple(g for g in stages.PARAM_GROUPS if g not in stage.train)
  bucket_names = degradations.bucket_names(config.curriculum.buckets)
  value_and_grad = make_value_and_grad(config, model, stage, constants)

  def step_fn(state: TrainState, batch):
    key = jax.random.fold_in(state.rng, state.step)
    k_bucket, k_degrade, k_drop = jax.random.split(key, 3)
    batch_size = batch['instance'].shape[0]
    probs = curriculum.bucket_probs(state.curriculum, state.step, total_steps,
                                    constants.buckets, config.curriculum)
    bucket_idx = curriculum.sample_buckets(k_bucket, probs, batch_size)
    batch = degradations.degrade(k_degrade, batch, bucket_idx, constants.buckets,
                                 attribute_ids=constants.attribute_ids)
    batch = modality_dropout(k_drop, batch, config.train.modality_dropout)
    batch = query_modes.apply_mode(batch, stage.query)

    (loss, (terms, per_example, scale)), grads = value_and_grad(state.params, batch)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    lr = learning_rate(config, stage, state.step)
    group_scale = config.optim.group_lr_scale
    updates = {k: jax.tree.map(jnp.zeros_like, u) if k in frozen else
               jax.tree.map(lambda x, s=float(group_scale[k]): -lr * s * x, u)
               for k, u in updates.items()}
    params = optax.apply_updates(state.params, updates)

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_curriculum = curriculum.update(state.curriculum, bucket_idx, per_example, probs,
                                       config.curriculum)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        curriculum=keep(new_curriculum, state.curriculum),
        first_bad_step=jnp.where(~finite & (state.first_bad_step < 0), state.step,
                                 state.first_bad_step),
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32))

    bucket_loss, bucket_count = _bucket_means(per_example, bucket_idx, len(bucket_names))
    metrics = dict(loss=loss, grad_norm=grad_norm, param_norm=optax.global_norm(params),
                   logit_scale=scale, lr=lr, finite=finite.astype(jnp.float32),
                   skipped_steps=new_state.skipped_steps.astype(jnp.float32),
                   **{f'loss/{k}': v for k, v in terms.items()})
    for i, name in enumerate(bucket_names):
      metrics[f'curriculum/weight/{name}'] = probs[i]
      metrics[f'curriculum/loss/{name}'] = bucket_loss[i]
      metrics[f'curriculum/count/{name}'] = bucket_count[i]
    return new_state, metrics

  return step_fn


def abstract_state(config, model, constants: Constants, mesh):
  """(abstract train state whose leaves carry their shardings, the shardings): shapes only,
  nothing computed or loaded. A fresh start initialises into it, a resume restores into it and
  stbir_jax.aot compiles against it (a mesh of TPU devices described by a topology)."""
  abstract = jax.eval_shape(lambda key: init_state(config, model, constants, key),
                            jax.random.PRNGKey(config.train.seed))
  state_shardings = sharding.state_shardings(mesh, abstract)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_shardings)
  return abstract, state_shardings


def jit_step(config, model, stage: stages.Stage, constants: Constants, total_steps: int, mesh,
             state_shardings):
  """A stage's train step, jitted with the run's shardings; the state is donated."""
  return jax.jit(make_step_fn(config, model, stage, constants, total_steps),
                 in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))


# ------------------------------------------------------------------------------------ the loop


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps (save, then exit cleanly)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and exiting.')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _SkippedRecords:
  """Bad records the input pipeline skipped (config.data.on_bad_record='skip'), all processes
  together, since this process started: a resumed run counts from its restart."""

  def __init__(self):
    self.local = 0

  def pop(self, batch: dict) -> dict:
    """Counts and removes the pipeline's per-row skip counts (not a model input)."""
    if pipeline.SKIPPED_KEY in batch:
      batch = dict(batch)
      self.local += int(np.sum(batch.pop(pipeline.SKIPPED_KEY)))
    return batch

  def total(self) -> int:
    """Collective with several processes: every process calls it at the same steps."""
    if jax.process_count() == 1:
      return self.local
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return int(np.sum(multihost_utils.process_allgather(np.int64(self.local))))


def resolve_pretrained(config) -> None:
  """Fetches (or finds offline) every pretrained tower of config.model.*.init and checks that it
  fits its tower, so that a missing network fails before the run writes anything."""
  for group in convert.GROUPS:
    cfg = config.model[group]
    if 'init' in cfg and cfg.init:
      convert.core.check_tower_config(cfg, cfg.init, convert.GROUPS[group],
                                      f'config.model.{group}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, *,
                       allow_config_change: bool = False, verbose: bool = False) -> dict:
  """Trains (resuming from `workdir` when it holds a checkpoint), evaluates, returns results.

  `workdir` is a local directory or a URL (gs://BUCKET/run) that every process can reach.
  Everything the run needs (a valid config, its tokenizer and pretrained weights, the dataset)
  is resolved before the workdir is written to, so a failing start changes nothing there. A
  resume with a changed config is refused unless `allow_config_change` (stbir_jax/run_config.py).
  The console shows progress and evaluation lines (stbir_jax/console.py); `verbose` also logs
  every metric each log_every steps. TensorBoard gets every metric either way."""
  workdir = paths.resolve(workdir)
  recorded_config.check_is_directory(workdir)
  mesh = sharding.make_mesh(config.mesh)
  validate_config(config, jax.process_count(), sharding.data_parallel_size(mesh))
  stage_list = stages.build_stages(config)
  total_steps = int(config.train.num_steps)
  is_main = jax.process_index() == 0

  resuming = recorded_config.has_checkpoints(workdir)
  check_workdir_config(config, workdir, resuming)
  config_changes = recorded_config.check_resume(config, workdir, allow_config_change)
  get_tokenizer(config.data.tokenizer)
  if not resuming:  # pretrained towers are read only on a fresh start
    resolve_pretrained(config)
  pipeline.ensure_built(config)
  category_names = pipeline.category_names(config)

  workdir.mkdir(parents=True, exist_ok=True)
  if is_main and not (resuming and (workdir / recorded_config.CONFIG_FILE).exists()):
    recorded_config.record_start(config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  constants = make_constants(config, category_names)
  model = make_model(config)
  train_iter = pipeline.train_iterator(config, process_index=jax.process_index(),
                                       process_count=jax.process_count())

  init_fn = lambda key, pretrained=None: init_state(config, model, constants, key, pretrained)
  key = jax.random.PRNGKey(config.train.seed)
  abstract, state_shardings = abstract_state(config, model, constants, mesh)
  start, state = ckpt.restore(abstract, train_iter)
  if state is None:
    # Pretrained towers (config.model.*.init) are read only on a fresh start, never on resume.
    pretrained = convert.load_pretrained(config, abstract.params)
    state = jax.jit(init_fn, out_shardings=state_shardings)(key, pretrained)
    start = 0
    logging.info('Initialised a new run in %s.', workdir)
  else:
    logging.info('Resumed %s at step %d.', workdir, start)
    if config_changes and is_main:
      recorded_config.record_change(config, workdir, start, config_changes)
      logging.warning('Resumed with a changed config at step %d: %s (recorded in %s/).', start,
                      ', '.join(config_changes), recorded_config.HISTORY)

  writer = metric_writer(workdir, is_main, verbose)
  out = Console(total_steps, start, len(stage_list), enabled=is_main)
  out.start(workdir, jax.device_count(), jax.devices()[0].platform)
  writer.write_hparams({k: str(v) for k, v in recorded_config.flatten(json.loads(
      config.to_json_best_effort())).items()})
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  evaluators = [evaluate.get_evaluator(name)(config, model, mesh=mesh)
                for name in config.eval.evaluators]
  step_fns = {}
  skipped = _SkippedRecords() if pipeline.bad_record_policy(config) == 'skip' else None

  def compiled_step(stage):
    if stage.index not in step_fns:
      step_fns[stage.index] = jit_step(config, model, stage, constants, total_steps, mesh,
                                       state_shardings)
    return step_fns[stage.index]

  def run_evaluators(step):
    results, began = {}, time.monotonic()
    for ev in evaluators:
      with report.timed(f'eval/{type(ev).__name__}'):
        results.update(ev.run(model_variables(state.params)))
    writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()
                                if np.ndim(v) == 0})
    out.evaluation(step, results, time.monotonic() - began)
    return results

  results, stage = {}, None
  # On an exception, an in-flight async save finishes before the error ends the process.
  with ckpt.closed_on_error(), _Preemption() as preemption:
    for step in range(start, total_steps):
      if stage is None or step >= stage.end:
        stage = stages.stage_at(stage_list, step)
        logging.info('Stage %d/%d %r: steps [%d, %d), training %s with %s, %s queries.',
                     stage.index + 1, len(stage_list), stage.name, stage.start, stage.end,
                     ', '.join(stage.train), ', '.join(stage.losses), stage.query)
        writer.write_scalars(step, {'stage': stage.index})
        out.stage(stage)
      local_batch = next(train_iter)
      if skipped is not None:
        local_batch = skipped.pop(local_batch)
      batch = sharding.global_batch(mesh, local_batch)
      state, metrics = compiled_step(stage)(state, batch)
      done = step + 1
      report(done)
      if done % config.train.log_every == 0 or done == total_steps:
        _check_finite(config, state, ckpt)
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if skipped is not None:
          scalars['data/skipped_records'] = float(skipped.total())
        writer.write_scalars(done, scalars)
        out.progress(done, stage, scalars['loss'])
      boundary = done == stage.end
      if done % config.train.checkpoint_every == 0 or boundary or preemption.requested:
        _check_finite(config, state, ckpt)
        ckpt.save(done, state, train_iter)
      if preemption.requested:
        ckpt.close()
        writer.flush()
        logging.warning('Saved step %d after SIGTERM; rerun the same command to resume.', done)
        return {}
      if done % config.eval.every_steps == 0 and done != total_steps:
        run_evaluators(done)

    results = run_evaluators(total_steps)
  ckpt.close()
  writer.flush()
  if is_main:
    evaluate.write_results(results, workdir)
    print(evaluate.results_table(results), flush=True)
  return results


def _check_finite(config, state: TrainState, ckpt) -> None:
  bad = int(jax.device_get(state.first_bad_step))
  if bad >= 0 and config.train.nan_policy == 'stop':
    ckpt.wait()
    steps = ckpt.all_steps()
    kept = f'the last checkpoint (step {steps[-1]}) is intact' if steps else 'no checkpoint exists'
    raise FloatingPointError(
        f'Non-finite loss or gradient at step {bad}; that update was skipped and {kept}. '
        'Lower optim.lr, check the data, or set train.nan_policy="skip".')
