"""One train step and the state it advances: `make_step_fn(config, model, stage, constants,
total_steps)` is the pure function (state, batch) -> (state, metrics) the loop jits per stage.

  TrainState             step, params by group, optimiser and curriculum state, rng, NaN record
  create_sharded_state   a fresh state laid out on the mesh (eval_shape -> shardings -> jit(init))
  abstract_state         its shapes and shardings only: what a resume restores into and what
                         stbir_jax.aot compiles against
  jit_step               a stage's step, jitted with the run's shardings, the state donated

Inside a step: curriculum bucket draws and degradations keyed by (seed, step), modality dropout,
the stage's query mode, its losses (gradient accumulation in grad_accum.py), the optimiser with
the stage's frozen groups and lr, and the skip of a non-finite update.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from stbir_jax import (
  convert,
  curriculum,
  degradations,
  grad_accum,
  losses,
  query_modes,
  sharding,
  stages,
)
from stbir_jax.data.tokenizer import get_tokenizer
from stbir_jax.models import aligner, stbir

LOGIT_KEYS = ('logit_scale', 'logit_bias')   # model outputs the losses read besides embeddings


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array                      # int32 scalar: next step to run
  params: dict                         # stages.PARAM_GROUPS -> pytrees
  opt_state: Any
  curriculum: curriculum.CurriculumState
  rng: jax.Array                       # uint32[2] base key; step keys are fold_in(rng, step)
  first_bad_step: jax.Array            # int32, -1 until a non-finite loss/grad is seen
  skipped_steps: jax.Array             # int32, updates skipped for non-finite values


def make_optimizer(config) -> optax.GradientTransformation:
  """Clip -> Adam moments -> decoupled weight decay on kernels; the train step applies -lr."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return optax.chain(
      optax.clip_by_global_norm(config.optim.clip_norm),
      optax.scale_by_adam(b1=config.optim.b1, b2=config.optim.b2, eps=config.optim.eps),
      optax.add_decayed_weights(config.optim.weight_decay, mask=decay_mask))


def learning_rate(config, stage: stages.Stage, step):
  """Linear warmup then cosine decay, times the stage's lr_scale: over each stage on its own
  (config.optim.schedule 'stage': a stage starts at a fresh warmup), or once over the whole
  run ('run': a later stage continues where the schedule is, without a restart; on the demo
  split model both gave the same accuracy: docs/results.md)."""
  start, n = stage.start, stage.num_steps
  if config.optim.schedule == 'run':
    start, n = 0, int(config.train.num_steps)
  local = jnp.asarray(step - start, jnp.float32)
  warm = float(max(1, min(config.optim.warmup_steps, n // 5)))
  n = float(n)
  progress = jnp.clip((local - warm) / max(n - warm, 1.0), 0.0, 1.0)
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
  return config.optim.lr * stage.lr_scale * jnp.where(local < warm, (local + 1) / warm, cosine)


def entering_groups(config, stage: stages.Stage) -> tuple[str, ...]:
  """With config.optim.schedule 'run', the groups `stage` trains that no earlier stage did: they
  warm up at the stage's start (entry_warmup) while the others continue the run's schedule. A
  tower trained from scratch that starts at the schedule's peak learns nothing (a text tower
  entering at step 600 of 3,000 stayed at chance: docs/results.md)."""
  if config.optim.schedule != 'run' or stage.index == 0:
    return ()
  earlier = {g for s in stages.build_stages(config)[:stage.index] for g in s.train}
  return tuple(g for g in stage.train if g not in earlier)


def entry_warmup(config, stage: stages.Stage, step):
  """Linear warmup from the stage's start over min(warmup_steps, a fifth of the stage)."""
  warm = float(max(1, min(config.optim.warmup_steps, stage.num_steps // 5)))
  return jnp.clip(jnp.asarray(step - stage.start + 1, jnp.float32) / warm, 0.0, 1.0)


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
  params = dict(model.init(init_key, stbir.dummy_batch(config, 2))['params'])
  params = convert.merge_pretrained(params, pretrained or {})
  if config.category.enabled and config.category.learn_prototypes:
    # Category knowledge: prototypes start as the text tower's encodings of the category prompts.
    params['prototypes'] = model.apply({'params': params}, constants.prompt_ids,
                                       constants.prompt_mask, method=stbir.STBIR.encode_text)
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


def uses_consistency(config, stage: stages.Stage) -> bool:
  """Whether the stage trains the consistency term: its weight is set and its queries hold a
  sketch (a degraded sketch is pulled towards the same sketch drawn clean)."""
  return float(config.loss.consistency) > 0 and 'sketch' in stage.query.split('+')


# The fields of a query: what the clean pairs keep from before the degradations.
# With train.pair_shift_after_align also 'sketch_shift', the move its sketch makes after the
# aligner.
QUERY_FIELDS = ('sketch', 'text_ids', 'text_mask', 'has_sketch', 'has_text')


def uses_clean_pairs(config) -> bool:
  """Whether each query is also scored as drawn, before the curriculum and the modality dropout
  degrade it (loss.clean_pairs)."""
  return float(config.loss.clean_pairs) > 0


def uses_clean_queries(config) -> bool:
  """Whether the step also encodes each query as drawn: for the clean pairs or as the teacher
  of the distillation (loss.distill)."""
  return uses_clean_pairs(config) or float(config.loss.distill) > 0


def uses_align_jitter(config) -> bool:
  """Whether the sketch aligner also regresses on the warp that undoes each training sketch's
  jitter (loss.align_jitter; models/aligner.py)."""
  return float(config.loss.align_jitter) > 0


def structure_ids(instance, config):
  """STBIR-Synth instance ids -> the id of their structure (family, structural variant): the
  generator numbers a family's instances structure by structure, appearance_variants each
  (data/synth/generator.py), so appearance twins share instance // appearance_variants."""
  return instance // int(config.data.synth.appearance_variants)


def make_value_and_grad(config, model, stage: stages.Stage, constants: Constants):
  """(params, batch) -> ((loss, (terms, per-example InfoNCE, logit scale)), grads) of a stage;
  with train.grad_accum_steps = k > 1, over k micro-batches the GradCache way (grad_accum.py).
  """
  frozen = tuple(g for g in stages.PARAM_GROUPS if g not in stage.train)
  wl = config.loss
  consistent = uses_consistency(config, stage)
  paired = uses_clean_pairs(config)
  encodes_clean = uses_clean_queries(config)
  aligns = uses_align_jitter(config)
  single = 'single_modality' in stage.losses or consistent
  accum = int(config.train.grad_accum_steps)

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

    def query_terms(queries, has, learns):
      """The stage's contrastive and single-modality terms of one set of queries: `queries`
      holds 'query' (and, with single-modality outputs, 'query_sketch' / 'query_text'), `has`
      the (B,) flags 'has_sketch' / 'has_text'."""
      terms = {}
      if 'contrastive' in stage.losses:
        terms['contrastive'] = losses.contrastive(
            wl.kind, queries['query'], g, logits, instance=batch['instance'],
            negative_weights=weights, gallery_learns=learns)
      if 'single_modality' in stage.losses:
        sketch_instance = (structure_ids(batch['instance'], config) if wl.sketch_structure_only
                           else batch['instance'])
        # Each modality must retrieve on its own too: a direct signal for what the fused query
        # would otherwise learn only through the other (e.g. colour words before shapes match).
        terms['single_modality'] = 0.5 * sum(
            losses.contrastive(wl.kind, queries[key], g, logits, instance=same,
                               negative_weights=weights, valid=has[flag], gallery_learns=learns)
            for key, flag, same in (('query_sketch', 'has_sketch', sketch_instance),
                                    ('query_text', 'has_text', batch['instance'])))
      return terms

    terms = query_terms(out, batch, batch['query_clean'] if wl.gallery_from_clean_queries
                        else None)
    if paired:
      terms['clean_pairs'] = sum(getattr(wl, name) * value for name, value in
                                 query_terms(out['clean'], batch['clean'], None).items())
    if wl.distill:
      terms['distill'] = losses.distill(q, out['clean']['query'], g, scale,
                                        temperature=wl.distill_temperature)
    if 'triplet' in stage.losses:
      terms['triplet'] = losses.TRIPLET_MINING[wl.triplet_mining](
          q, g, wl.triplet_margin, instance=batch['instance'],
          anchors=batch['query_clean'] if wl.triplet_queries == 'clean' else None)
    if 'prototype' in stage.losses:
      if config.category.learn_prototypes:
        protos = params['prototypes']
      else:
        protos = model.apply(stbir.model_variables(params), constants.prompt_ids,
                             constants.prompt_mask, method=stbir.STBIR.encode_text)
      kw = {'margin': config.category.margin, 'temperature': config.category.temperature}
      terms['prototype'] = 0.5 * (losses.prototype_loss(q, batch['category'], protos, **kw)
                                  + losses.prototype_loss(g, batch['category'], protos, **kw))
    if consistent:
      terms['consistency'] = losses.consistency(out['query_sketch'], out['query_sketch_clean'],
                                                valid=batch['sketch_degraded'])
    if aligns:
      terms['align_jitter'] = losses.warp_regression(out['sketch_warp'], batch['jitter_undo'],
                                                     aligner.WARP_UNITS, valid=batch['has_sketch'])
    total = sum(getattr(wl, name) * value for name, value in terms.items())
    return total, (terms, per_example, scale)

  def forward(params, batch):
    """The model's outputs; with the consistency term also the clean sketch's sketch-only query,
    a fixed target (no gradient reaches the towers through it); with clean pairs or the
    distillation also the queries as drawn ('clean': 'query'[, 'query_sketch', 'query_text']),
    which the pairs train like the others and the distillation holds fixed."""
    if aligns:   # the warp each query's sketch went through, as the aligner sowed it
      out, state = model.apply(stbir.model_variables(params), batch, single_modality=single,
                               mutable=['intermediates'])
      out['sketch_warp'] = state['intermediates']['sketch']['warp'][0]
    else:
      out = model.apply(stbir.model_variables(params), batch, single_modality=single)
    if encodes_clean:
      queries = model.apply(stbir.model_variables(params),
                            *(batch['clean'][k] for k in QUERY_FIELDS), single,
                            batch['clean'].get('sketch_shift'),
                            method=stbir.STBIR.encode_queries)
      names = ('query', 'query_sketch', 'query_text')[:len(queries)]
      out['clean'] = dict(zip(names, queries, strict=True))
    if consistent:
      out['query_sketch_clean'] = jax.lax.stop_gradient(model.apply(
          stbir.model_variables(params), batch['sketch_clean'], batch['text_ids'],
          batch['text_mask'], batch['has_sketch'], jnp.zeros_like(batch['has_text']), False,
          batch.get('sketch_shift'), method=stbir.STBIR.encode_queries)[0])
    return out

  def loss_fn(params, batch):
    params = freeze(params)
    return loss_terms(params, forward(params, batch), batch)

  if accum == 1:
    return jax.value_and_grad(loss_fn, has_aux=True)

  def embed(params, batch):
    """Per-row model outputs (query and gallery embeddings) of a micro-batch."""
    out = forward(freeze(params), batch)
    return {k: v for k, v in out.items() if k not in LOGIT_KEYS}

  def head(params, emb, batch):
    params = freeze(params)
    logits = model.apply(stbir.model_variables(params), method=stbir.STBIR.logits)
    return loss_terms(params, dict(emb, **logits), batch)

  return grad_accum.value_and_grad(embed, head, accum)


def make_step_fn(config, model, stage: stages.Stage, constants: Constants, total_steps: int):
  """The pure train step of one stage: (state, batch) -> (state, metrics)."""
  optimizer = make_optimizer(config)
  frozen = tuple(g for g in stages.PARAM_GROUPS if g not in stage.train)
  bucket_names = degradations.bucket_names(config.curriculum.buckets)
  value_and_grad = make_value_and_grad(config, model, stage, constants)
  entering = entering_groups(config, stage)

  def step_fn(state: TrainState, batch):
    key = jax.random.fold_in(state.rng, state.step)
    k_bucket, k_degrade, k_drop = jax.random.split(key, 3)
    batch_size = batch['instance'].shape[0]
    probs = curriculum.bucket_probs(state.curriculum, state.step, total_steps,
                                    constants.buckets, config.curriculum)
    bucket_idx = curriculum.sample_buckets(k_bucket, probs, batch_size)
    if config.train.pair_shift:   # its own key: other draws stay those of runs without it
      batch = degradations.shift_pairs(jax.random.fold_in(key, 7), batch, config.train.pair_shift,
                                       sketch_later=config.train.pair_shift_after_align)
    if config.train.pair_warp:
      batch = degradations.warp_pairs(jax.random.fold_in(key, 8), batch, config.train.pair_warp)
    undegraded = batch
    aligns = uses_align_jitter(config)
    degraded = degradations.degrade(k_degrade, batch, bucket_idx, constants.buckets,
                                    attribute_ids=constants.attribute_ids, with_undo=aligns)
    batch = dict(degraded[0], jitter_undo=degraded[1]) if aligns else degraded
    drawn = batch
    batch = modality_dropout(k_drop, drawn, config.train.modality_dropout)
    if config.loss.triplet_queries == 'clean' or config.loss.gallery_from_clean_queries:
      batch['query_clean'] = (
          jnp.asarray(degradations.clean_buckets(constants.buckets))[bucket_idx]
          & (batch['has_sketch'] == drawn['has_sketch']) & (batch['has_text'] == drawn['has_text']))
    batch = query_modes.apply_mode(batch, stage.query)
    if uses_clean_queries(config):
      clean = {k: undegraded[k] for k in QUERY_FIELDS + ('sketch_shift',) if k in undegraded}
      batch['clean'] = query_modes.apply_mode(clean, stage.query)
    if uses_consistency(config, stage):
      batch['sketch_clean'] = undegraded['sketch']
      batch['sketch_degraded'] = batch['has_sketch'] & jnp.any(
          batch['sketch'] != undegraded['sketch'], axis=tuple(range(1, batch['sketch'].ndim)))

    (loss, (terms, per_example, scale)), grads = value_and_grad(state.params, batch)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    lr = learning_rate(config, stage, state.step)
    warm = entry_warmup(config, stage, state.step)
    group_lr = {k: lr * float(config.optim.group_lr_scale[k]) * (warm if k in entering else 1.0)
                for k in updates}
    updates = {k: jax.tree.map(jnp.zeros_like, u) if k in frozen else
               jax.tree.map(lambda x, r=group_lr[k]: -r * x, u)
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


def create_sharded_state(config, mesh, model, constants: Constants, *, abstract=None,
                         pretrained=None) -> TrainState:
  """A fresh train state laid out on `mesh`: eval_shape -> shardings -> jit(init) with those
  out_shardings, so no parameter is materialised whole on one device before it is sharded.

  `abstract`: abstract_state's tree, when the caller has it already (a run that tried to
  restore first); `pretrained`: as init_state takes it.
  """
  if abstract is None:
    abstract, _ = abstract_state(config, model, constants, mesh)
  state_shardings = jax.tree.map(lambda a: a.sharding, abstract)
  init = lambda key, pretrained: init_state(config, model, constants, key, pretrained)
  return jax.jit(init, out_shardings=state_shardings)(jax.random.PRNGKey(config.train.seed),
                                                      pretrained)


def jit_step(config, model, stage: stages.Stage, constants: Constants, total_steps: int, mesh,
             state_shardings):
  """A stage's train step, jitted with the run's shardings; the state is donated. Traced under
  the mesh, so that the model's sharding constraints (sharding.constrain_to_batch) apply."""
  step_fn = make_step_fn(config, model, stage, constants, total_steps)
  return jax.jit(sharding.traced_under(mesh, step_fn),
                 in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=(0,))
