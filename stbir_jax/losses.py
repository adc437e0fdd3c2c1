"""Training losses: pure jnp functions of global-batch arrays (jit- and sharding-friendly).

Conventions shared by every loss:
  q, g        (B, D) query and gallery embeddings, unit norm; row i of q matches row i of g.
  instance    optional (B,) int photo id. Off-diagonal pairs with the same id are the same photo
              seen twice in one batch, so they are neither positives nor negatives: masked out.
  valid       optional (B,) bool; False rows are padding: they are no query, no negative, and do
              not count in the mean.
  anchors     (triplet losses) optional (B,) bool; False rows are no anchor (not in the mean) but
              their photos stay negatives for the others.
  gallery_learns
              (contrastive losses) optional (B,) bool over the queries; a False query's pairs
              send no gradient to the gallery (g), only to itself: it learns to find photos
              embedded for the others without moving them. Values are unchanged.
Losses compute in float32 whatever the embedding dtype (bfloat16 logits lose the ranking).
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def _negatives_mask(batch_size: int, instance: Array | None, valid: Array | None) -> Array:
  """(B, B) bool: True where column j is a negative for row i."""
  mask = ~jnp.eye(batch_size, dtype=bool)
  if instance is not None:
    mask &= instance[:, None] != instance[None, :]
  if valid is not None:
    mask &= valid[None, :]
  return mask


def _masked_mean(values: Array, valid: Array | None) -> Array:
  if valid is None:
    return jnp.mean(values)
  w = valid.astype(values.dtype)
  return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1.0)


def pair_scores(q: Array, g: Array, gallery_learns: Array | None = None) -> Array:
  """(B, B) float32 <q_i, g_j>. With `gallery_learns` (B,) bool, row i's scores pass gradient to
  g only where gallery_learns[i]; their values and their gradient to q are the same either way:
  <q_i, g_j> = <q_i, sg(g_j)> + m_i <sg(q_i), g_j - sg(g_j)>, whose second term is 0 in value."""
  q = q.astype(jnp.float32)
  g = g.astype(jnp.float32)
  if gallery_learns is None:
    return q @ g.T
  fixed = jax.lax.stop_gradient(g)
  learns = jnp.where(gallery_learns[:, None], jax.lax.stop_gradient(q), 0.0)
  return q @ fixed.T + learns @ (g - fixed).T


def per_example_info_nce(q: Array, g: Array, logit_scale, *, instance: Array | None = None,
                         negative_weights: Array | None = None,
                         valid: Array | None = None,
                         gallery_learns: Array | None = None) -> Array:
  """Query->gallery InfoNCE per query, (B,); 0 for padded rows.

  loss_i = -s*<q_i, g_i> + log( exp(s*<q_i, g_i>) + sum_{j in neg(i)} w_ij * exp(s*<q_i, g_j>) )

  with s = `logit_scale` (the multiplier, i.e. 1/temperature, not its log) and w_ij the
  `negative_weights` (default 1). The positive itself is never re-weighted.
  """
  return _info_nce_rows(pair_scores(q, g, gallery_learns), logit_scale, instance=instance,
                        negative_weights=negative_weights, valid=valid)


def _info_nce_rows(scores: Array, logit_scale, *, instance, negative_weights, valid) -> Array:
  """per_example_info_nce from the (B, B) scores <q_i, g_j>: row i is query i."""
  batch_size = scores.shape[0]
  logits = jnp.asarray(logit_scale, jnp.float32) * scores
  negatives = _negatives_mask(batch_size, instance, valid)
  if negative_weights is not None:
    logits = logits + jnp.where(negatives, jnp.log(negative_weights.astype(jnp.float32)), 0.0)
  keep = negatives | jnp.eye(batch_size, dtype=bool)
  # -inf (not a large constant) so masked entries contribute exactly 0; the diagonal is always
  # kept, so no row is all -inf and neither value nor gradient can be NaN.
  lse = jax.nn.logsumexp(jnp.where(keep, logits, -jnp.inf), axis=1)
  loss = lse - jnp.diagonal(logits)
  if valid is not None:
    loss = jnp.where(valid, loss, 0.0)
  return loss


def info_nce(q: Array, g: Array, logit_scale, *, instance: Array | None = None,
             negative_weights: Array | None = None, valid: Array | None = None,
             gallery_learns: Array | None = None) -> Array:
  """Symmetric InfoNCE: mean of the query->gallery and gallery->query losses (scalar)."""
  scores = pair_scores(q, g, gallery_learns)
  q2g = _info_nce_rows(scores, logit_scale, instance=instance,
                       negative_weights=negative_weights, valid=valid)
  # gallery->query is the same loss with the roles swapped; w_ij weighs the pair (q_i, g_j), so
  # gallery item j sees it transposed.
  g2q = _info_nce_rows(
      scores.T, logit_scale, instance=instance,
      negative_weights=None if negative_weights is None else negative_weights.T, valid=valid)
  return 0.5 * (_masked_mean(q2g, valid) + _masked_mean(g2q, valid))


def per_example_sigmoid(q: Array, g: Array, logit_scale, logit_bias, *,
                        instance: Array | None = None,
                        negative_weights: Array | None = None,
                        valid: Array | None = None,
                        gallery_learns: Array | None = None) -> Array:
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023) per query, (B,); 0 for padded rows.

  loss_i = -log sig(z_ii) - sum_{j in neg(i)} w_ij * log sig(-z_ij),  z_ij = s*<q_i, g_j> + b

  with s = `logit_scale` (the multiplier) and b = `logit_bias` (learnable; SigLIP starts it at
  -10 so that the many negatives do not dominate the first steps), w_ij the `negative_weights`
  (default 1). Each pair is an independent binary decision: no normalisation over the batch.
  """
  batch_size = q.shape[0]
  logits = (jnp.asarray(logit_scale, jnp.float32) * pair_scores(q, g, gallery_learns)
            + jnp.asarray(logit_bias, jnp.float32))
  negatives = _negatives_mask(batch_size, instance, valid)
  weights = negatives.astype(jnp.float32)
  if negative_weights is not None:
    weights = weights * negative_weights.astype(jnp.float32)
  loss = (-jax.nn.log_sigmoid(jnp.diagonal(logits))
          - jnp.sum(weights * jax.nn.log_sigmoid(-logits), axis=1))
  if valid is not None:
    loss = jnp.where(valid, loss, 0.0)
  return loss


def sigmoid(q: Array, g: Array, logit_scale, logit_bias, *, instance: Array | None = None,
            negative_weights: Array | None = None, valid: Array | None = None,
            gallery_learns: Array | None = None) -> Array:
  """SigLIP's sigmoid loss (scalar): the per-query losses' mean over valid queries, i.e. the sum
  over all (query, gallery) pairs divided by the batch size, as in the paper. Symmetric by
  construction: every pair is counted once, from the query side."""
  return _masked_mean(per_example_sigmoid(q, g, logit_scale, logit_bias, instance=instance,
                                          negative_weights=negative_weights, valid=valid,
                                          gallery_learns=gallery_learns), valid)


CONTRASTIVE_KINDS = ('info_nce', 'sigmoid')   # config.loss.kind


def contrastive(kind: str, q: Array, g: Array, logits: dict, **kw) -> Array:
  """The contrastive loss `kind` (config.loss.kind) from the model's logits dict
  ({'logit_scale'[, 'logit_bias']}, STBIR.logits); kw: instance, negative_weights, valid,
  gallery_learns."""
  if kind == 'info_nce':
    return info_nce(q, g, logits['logit_scale'], **kw)
  if kind == 'sigmoid':
    return sigmoid(q, g, logits['logit_scale'], logits['logit_bias'], **kw)
  raise ValueError(f'config.loss.kind={kind!r}; valid: {", ".join(CONTRASTIVE_KINDS)}')


def per_example_contrastive(kind: str, q: Array, g: Array, logits: dict, **kw) -> Array:
  """Query->gallery loss per query (B,) of `kind`: the curriculum's difficulty signal."""
  if kind == 'info_nce':
    return per_example_info_nce(q, g, logits['logit_scale'], **kw)
  if kind == 'sigmoid':
    return per_example_sigmoid(q, g, logits['logit_scale'], logits['logit_bias'], **kw)
  raise ValueError(f'config.loss.kind={kind!r}; valid: {", ".join(CONTRASTIVE_KINDS)}')


def _anchor_rows(valid: Array | None, anchors: Array | None) -> Array | None:
  if anchors is None:
    return valid
  return anchors if valid is None else valid & anchors


def triplet_hard(q: Array, g: Array, margin, *, instance: Array | None = None,
                 valid: Array | None = None, anchors: Array | None = None) -> Array:
  """Batch-hard triplet loss, query as anchor (scalar).

  loss_i = max(0, margin - <q_i, g_i> + max_{j in neg(i)} <q_i, g_j>); a query without any
  negative in the batch contributes 0. Mean over valid queries.
  """
  q = q.astype(jnp.float32)
  g = g.astype(jnp.float32)
  sim = q @ g.T
  negatives = _negatives_mask(q.shape[0], instance, valid)
  hardest = jnp.max(jnp.where(negatives, sim, -jnp.inf), axis=1)
  hinge = jnp.maximum(margin - jnp.diagonal(sim) + hardest, 0.0)  # -inf hardest -> 0
  return _masked_mean(hinge, _anchor_rows(valid, anchors))


def triplet_all(q: Array, g: Array, margin, *, instance: Array | None = None,
                valid: Array | None = None, anchors: Array | None = None) -> Array:
  """Batch-all triplet loss, query as anchor (scalar): every in-batch negative is a triplet.

  loss_i = mean_{j in neg(i)} max(0, margin - <q_i, g_i> + <q_i, g_j>); a query without any
  negative contributes 0. Mean over valid queries. In expectation this is the loss of one
  triplet with a random negative per anchor (Triplet-SN's sampling); unlike batch-hard it does
  not collapse when trained from scratch (docs/results.md, "Baselines").
  """
  q = q.astype(jnp.float32)
  g = g.astype(jnp.float32)
  sim = q @ g.T
  negatives = _negatives_mask(q.shape[0], instance, valid)
  hinge = jnp.maximum(margin - jnp.diagonal(sim)[:, None] + sim, 0.0)
  count = jnp.sum(negatives, axis=1)
  per_query = jnp.sum(jnp.where(negatives, hinge, 0.0), axis=1) / jnp.maximum(count, 1)
  return _masked_mean(per_query, _anchor_rows(valid, anchors))


# config.loss.triplet_mining -> the triplet loss it names.
TRIPLET_MINING = {'hard': triplet_hard, 'all': triplet_all}
# config.loss.triplet_queries: which queries anchor the triplet term. 'clean' keeps only queries
# the curriculum and modality dropout left as drawn (train_step.py), since a degraded query's
# hardest negative is often a twin it cannot tell apart. Measured, it is not what makes the
# curriculum and the triplet term cost accuracy together (docs/results.md, "Each STBIR module
# added back to the recipe").
TRIPLET_QUERIES = ('all', 'clean')


def _unit(x: Array) -> Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def consistency(q: Array, target: Array, valid: Array | None = None) -> Array:
  """Mean over `valid` rows of 1 - cos(q_i, target_i): pulls each row of q towards its own target
  (held fixed by the caller: a stop-gradient teacher, e.g. the clean query of a degraded one)."""
  return _masked_mean(1.0 - jnp.sum(_unit(q) * _unit(target), axis=-1), valid)


def warp_regression(warp: Array, target: Array, scale, valid: Array | None = None) -> Array:
  """Mean over `valid` rows of sum_k ((warp_k - target_k) / scale_k)^2: a predicted warp
  (B, K) regressed on the one it should have been, each parameter in its own unit `scale` (K,)."""
  err = (warp.astype(jnp.float32) - target) / jnp.asarray(scale, jnp.float32)
  return _masked_mean(jnp.sum(err * err, axis=-1), valid)


def distill(q: Array, teacher: Array, g: Array, logit_scale, *, temperature=1.0) -> Array:
  """Hinton et al.'s distillation over the batch's gallery (scalar): mean over rows of
  T^2 KL(p_i || r_i), where p_i = softmax_j(s <teacher_i, g_j> / T) is held fixed (no gradient
  reaches the teacher or g through it) and r_i = softmax_j(s <q_i, g_j> / T), s = `logit_scale`
  (the multiplier), T = `temperature`. A degraded query learns which photos its clean
  self ranks near the top, not only which one is right; T^2 keeps the gradient's size as T
  softens both (Hinton et al. 2015)."""
  s = jnp.asarray(logit_scale, jnp.float32) / temperature
  log_target = jax.nn.log_softmax(jax.lax.stop_gradient(s * pair_scores(teacher, g)), axis=1)
  student = jax.nn.log_softmax(s * pair_scores(q, g), axis=1)
  kl = jnp.sum(jnp.exp(log_target) * (log_target - student), axis=1)
  return temperature ** 2 * jnp.mean(kl)


def intra_category_weights(category: Array, instance: Array, hard_negative_weight) -> Array:
  """(B, B) negative weights: `hard_negative_weight` for same category and different instance.

  The STBIR category-knowledge module: fine-grained twins (same category, different photo) are
  the negatives retrieval confuses, so they are pushed apart harder; every other pair weighs 1.
  """
  twins = (category[:, None] == category[None, :]) & (instance[:, None] != instance[None, :])
  return jnp.where(twins, jnp.asarray(hard_negative_weight, jnp.float32), 1.0)


def prototype_loss(emb: Array, category: Array, prototypes: Array, *, margin, temperature,
                   valid: Array | None = None) -> Array:
  """CosFace-style category loss (scalar): pulls embeddings to their category prototype.

  logits_ic = (cos(emb_i, p_c) - margin * [c == category_i]) / temperature, cross-entropy with
  target category_i, mean over valid rows. Both sides are L2-normalised here (a no-op for the
  unit-norm embeddings the model emits; prototypes may be raw learned vectors or text features).
  """
  emb = emb.astype(jnp.float32)
  protos = prototypes.astype(jnp.float32)
  emb, protos = _unit(emb), _unit(protos)
  onehot = jax.nn.one_hot(category, protos.shape[0], dtype=jnp.float32)
  logits = (emb @ protos.T - margin * onehot) / temperature
  nll = -jnp.sum(onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  return _masked_mean(nll, valid)
