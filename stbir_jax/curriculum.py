"""STBIR module 1, Robustness Enhancement, second half: the curriculum over query-quality
buckets (the buckets and their degradations are stbir_jax/degradations.py).

`CurriculumState`, `competence`, `admitted`, `bucket_probs`, `sample_buckets`, `update`: a
competence schedule (Platanios et al. 2019, sqrt) admits harder buckets over time; 'self_paced'
then weights admitted buckets by their running loss. All pure JAX, called inside the jitted
train step, so nothing here raises: `check_config` checks config.curriculum when the config is
validated (stbir_jax/config_checks.py), and the numeric fields have their rules there.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stbir_jax import degradations
from stbir_jax.degradations import CurriculumError

KINDS = ('none', 'uniform', 'competence', 'self_paced')


def check_config(config) -> None:
  """Raises CurriculumError when config.curriculum (`config`) names an unknown kind or holds a
  bucket table the degradations cannot apply."""
  if config.kind not in KINDS:
    raise CurriculumError(f'config.curriculum.kind={config.kind!r}; valid: {", ".join(KINDS)}.')
  degradations.check_buckets(config.buckets)


def check_admits_a_bucket(config, total_steps: int) -> None:
  """Raises CurriculumError when a 'competence' or 'self_paced' curriculum (`config`) would
  admit no degraded bucket within the run's total_steps: it would train on clean queries only,
  silently (every non-clean level equal makes each level / max level 1, out of reach while
  competence_steps is longer than the run). Computed in numpy: config checks run before JAX
  starts."""
  if config.kind not in ('competence', 'self_paced') or len(config.buckets) < 2:
    return
  last = max(total_steps - 1, 0)
  if admitted(last, total_steps, config.buckets, config, xp=np)[1:].any():
    return
  levels = degradations.buckets_from_config(config.buckets).level
  raise CurriculumError(
      f'config.curriculum admits no degraded bucket in {total_steps} steps: its competence '
      f'reaches {float(competence(last, total_steps, config, xp=np)):.3g} (competence_start='
      f'{config.competence_start}, competence_steps='
      f'{config.competence_steps or total_steps // 2}), and its easiest bucket needs level / '
      f'max level = {float(np.min(_level_fractions(levels, np)[1:])):.3g} (levels '
      f'{[int(v) if v == int(v) else float(v) for v in levels]}). Give the buckets to train '
      f'lower levels than the ones held out, shorten curriculum.competence_steps, or set '
      f'curriculum.kind="none" to train on clean queries only.')


class CurriculumState(NamedTuple):
  weights: Any    # float32 (NB,): the bucket probabilities used at the last step
  ema_loss: Any   # float32 (NB,): running mean loss per bucket (valid where seen > 0)
  seen: Any       # float32 (NB,): examples drawn from each bucket so far


def init_state(num_buckets: int) -> CurriculumState:
  weights = jnp.zeros((num_buckets,), jnp.float32).at[0].set(1.0)
  return CurriculumState(weights=weights, ema_loss=jnp.zeros((num_buckets,), jnp.float32),
                         seen=jnp.zeros((num_buckets,), jnp.float32))


def competence(step, total_steps, config, xp=jnp):
  """sqrt competence (Platanios et al. 2019): c0 at step 0, 1 after competence_steps.

  c(t) = min(1, sqrt(t (1 - c0^2) / T + c0^2)), T = competence_steps or total_steps // 2.
  xp: jnp in the step, np where a config is checked (before JAX starts).
  """
  c0 = float(config.competence_start)
  span = config.competence_steps or xp.asarray(total_steps) // 2
  span = xp.asarray(span, xp.float32)
  t = xp.asarray(step, xp.float32)
  c = xp.sqrt(t * (1.0 - c0 ** 2) / xp.maximum(span, 1.0) + c0 ** 2)
  return xp.where(span > 0, xp.minimum(c, 1.0), 1.0).astype(xp.float32)


def _level_fractions(level, xp):
  """Each bucket's level / the highest level (at least 1)."""
  level = xp.asarray(level, xp.float32)
  return level / xp.maximum(xp.max(level), 1.0)


def admitted(step, total_steps, buckets, config, xp=jnp):
  """(NB,) bool: level / max_level <= competence; bucket 0 ('clean') always."""
  fractions = _level_fractions(degradations.buckets_from_config(buckets).level, xp)
  ok = fractions <= competence(step, total_steps, config, xp) + 1e-6
  return ok | (xp.arange(ok.shape[0]) == 0)


def bucket_probs(state: CurriculumState, step, total_steps, buckets, config):
  """(NB,) float32 bucket probabilities for this step, by config.kind.

  Every kind but 'none' keeps a share `clean_share` of the queries clean and spreads the rest,
  p = clean_share * [bucket == clean] + (1 - clean_share) * w, by its rule w:

  'uniform':    w = 1 / NB for every bucket.
  'competence': w uniform over the admitted buckets.
  'self_paced': over admitted buckets, s = softmax(ema_loss / temperature); a bucket not seen
                yet counts with the highest EMA of the admitted seen ones (so a newly admitted
                bucket gets tried at once); then w = max(s, min_weight) on admitted buckets,
                renormalised.

  Clean queries are the task and degraded ones the robustness curriculum: without the clean
  share, loss-following weights drift to the bucket whose loss cannot fall (a severe query has
  lost the words and strokes that identify its photo) and clean accuracy pays for it
  (docs/results.md).
  """
  kind = config.kind
  nb = len(degradations.buckets_from_config(buckets).level)
  clean = jnp.zeros((nb,), jnp.float32).at[0].set(1.0)
  if kind == 'none':
    return clean
  share = float(config.clean_share)
  w = _rule_probs(kind, state, step, total_steps, buckets, config, nb)
  return (share * clean + (1.0 - share) * w).astype(jnp.float32)


def _rule_probs(kind, state, step, total_steps, buckets, config, nb):
  """The kind's own weights w (see bucket_probs), before the clean share."""
  if kind == 'uniform':
    return jnp.full((nb,), 1.0 / nb, jnp.float32)
  adm = admitted(step, total_steps, buckets, config)
  if kind == 'competence':
    w = adm.astype(jnp.float32)
    return w / jnp.sum(w)
  ema = jnp.asarray(state.ema_loss, jnp.float32)
  seen = jnp.asarray(state.seen) > 0
  known = adm & seen
  best = jnp.max(jnp.where(known, ema, -jnp.inf))
  ema = jnp.where(seen, ema, jnp.where(jnp.any(known), best, 0.0))
  logits = jnp.where(adm, ema / config.temperature, -jnp.inf)
  s = jax.nn.softmax(logits)
  w = jnp.where(adm, jnp.maximum(s, float(config.min_weight)), 0.0)
  return (w / jnp.sum(w)).astype(jnp.float32)


def sample_buckets(key, probs, batch_size: int):
  """(B,) int32 bucket ids drawn i.i.d. from probs."""
  logits = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-30)), -jnp.inf)
  return jax.random.categorical(key, logits, shape=(batch_size,)).astype(jnp.int32)


def update(state: CurriculumState, bucket_idx, per_example_loss, probs, config
           ) -> CurriculumState:
  """EMA of each bucket's mean loss this step (first sighting initialises; unseen keep theirs)."""
  nb = state.ema_loss.shape[0]
  loss = jax.lax.stop_gradient(jnp.asarray(per_example_loss, jnp.float32))
  sums = jax.ops.segment_sum(loss, bucket_idx, nb)
  counts = jax.ops.segment_sum(jnp.ones_like(loss), bucket_idx, nb)
  mean = sums / jnp.maximum(counts, 1.0)
  decay = float(config.ema)
  ema = jnp.where(state.seen > 0, decay * state.ema_loss + (1.0 - decay) * mean, mean)
  ema = jnp.where(counts > 0, ema, state.ema_loss)
  return CurriculumState(weights=jnp.asarray(probs, jnp.float32), ema_loss=ema,
                         seen=state.seen + counts)
