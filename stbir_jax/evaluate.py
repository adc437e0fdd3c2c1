r"""Evaluators, one for each section of `config.evals` (big_vision's `config.evals.<name>`).

Training runs each one every `config.evals.<name>.every_steps` steps and at the end. A saved
checkpoint can be evaluated again, e.g. on the validation split (where hyper-parameters are
chosen):

  python -m stbir_jax.evaluate --workdir=workdirs/demo --split=validation [--step=N]

which prints the tables and writes WORKDIR/results_<split>_step<N>.{json,md}, leaving the run's
own results.json alone. A run with no evaluators: --config.evals='{}'.

FG-SBIR protocol: every query of a dataset configuration's `split` against its whole gallery
(section field gallery_scope='all'), or against the photos of its own category ('category': the
fine-grained Sketchy protocol); the rank of the true photo gives Acc@1/5/10 and mAP
(stbir_jax/metrics.py), per query mode (section field `modes`):

  'sketch'       the query's text is hidden (has_text forced False)
  'text'         the query's sketch is hidden (has_sketch forced False)
  'sketch+text'  the query as given

  retrieval    keys '<config>/<mode>/<metric>', e.g. 'shoes/sketch+text/acc@1'
  robustness   queries degraded by the curriculum buckets its section names (`buckets`), with
               keys fixed by config.curriculum.eval_seed so runs are comparable:
               '<config>/<bucket>/<mode>/acc@1' and '.../mAP'
  degradations robustness's keys for its buckets whole and for each degradation of a bucket on
               its own, '<bucket>.<field>' (e.g. 'moderate.jitter'), and for the bucket with
               all but that one, '<bucket>.no_<field>': which part of a bucket costs what,
               and what undoing it would win back. On a saved run:
                 python -m stbir_jax.evaluate --workdir=W --split=validation \
                     --evaluators=degradations

An evaluator takes its own config section, the model and the data it reads, as big_vision's
do: `Evaluator(section, model, data, mesh=None)`, where `section = evaluate.section(config,
name)` is config.evals.<name> plus the run-wide fields the evaluator names in `shared_fields`
(datasets; robustness also eval_seed, and its buckets resolved to their curriculum sections),
`data = EvalData(config)` gives the batches of a dataset split and the degradation of a bucket
(stbir_jax/eval_sections.py), and `run(variables)` takes what `model.apply` takes
({'params': ...}) and returns a flat dict of floats; `every_steps` says when the training loop
runs it. A new evaluator writes `run` (or subclasses RetrievalEvaluator), names its section's
fields with their defaults (`section_defaults`, also entered in eval_sections.SECTION_DEFAULTS,
which configs are built from without importing jax) and rules (`section_rules`), and is
registered in EVALUATORS; `--config.evals.<name>` sections then configure it.
"""

import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from stbir_jax import config_rules, degradations, eval_report, metrics, sharding
from stbir_jax.data.names import SPLITS
from stbir_jax.eval_sections import (
  SECTION_DEFAULTS,
  EvalData,
  EvaluatorError,
  add_section,
  check_section,
  config_section,
  evaluator_section,
)
from stbir_jax.models.stbir import STBIR
from stbir_jax.query_modes import MODES, apply_mode

QUERY_KEYS = ('sketch', 'text_ids', 'text_mask', 'has_sketch', 'has_text')
SCOPES = ('all', 'category')


def _has_inputs_of(meta: dict, mode: str) -> np.ndarray:
  """(B,) bool: the query, as stored (before any degradation), has what `mode` reads. A photo
  with more texts than sketches gives text-only queries: they are no 'sketch' queries."""
  has_sketch, has_text = meta['has_sketch'].astype(bool), meta['has_text'].astype(bool)
  return {'sketch': has_sketch, 'text': has_text, 'sketch+text': has_sketch & has_text}[mode]


def _pad_to(batch: dict, size: int) -> dict:
  """Pads a short (last) batch with invalid rows so the jitted encoders never recompile."""
  n = batch['valid'].shape[0]
  if n == size:
    return batch
  if n > size:
    raise EvaluatorError(f'Eval batch of {n} rows after a first batch of {size}; the pipeline '
                         'must yield a fixed padded batch size.')
  return {k: np.concatenate([np.asarray(v), np.zeros((size - n,) + np.shape(v)[1:],
                                                     np.asarray(v).dtype)])
          for k, v in batch.items()}


def _fixed_size(batches: Iterator[dict]) -> Iterator[dict]:
  size = None
  for batch in batches:
    batch = {k: np.asarray(v) for k, v in batch.items()}
    size = batch['valid'].shape[0] if size is None else size
    yield _pad_to(batch, size)


class RetrievalEvaluator:
  """Acc@1/5/10, mAP, mean/median rank per dataset configuration and query mode."""

  name = 'retrieval'
  # Its section of the config (config.evals.retrieval): every field, at its default...
  section_defaults = SECTION_DEFAULTS['retrieval']
  # ... and the rule each value is checked by (check_sections, before a run starts).
  section_rules = dict(every_steps=config_rules.POSITIVE, batch_size=config_rules.POSITIVE,
                       split=config_rules.choice(*SPLITS),
                       modes=config_rules.names(*MODES),
                       gallery_scope=config_rules.choice(*SCOPES))
  # Run-wide fields its section is given too (eval_sections.SHARED): the dataset configurations.
  shared_fields = ('datasets',)
  # mode -> the mode its queries are encoded in; they are still the queries that have the inputs
  # of `mode`. Late fusion (compare.py) encodes the sketch+text queries sketch-only with one model
  # and text-only with another.
  encode_as: dict = {}

  def __init__(self, section, model, data: EvalData, mesh=None):
    self.section = section
    self.model = model
    self.data = data
    self.mesh = mesh
    self.every_steps = int(section.every_steps)
    self.modes = tuple(section.modes)
    self.scope = section.gallery_scope
    self.batch_size = int(section.batch_size)
    # Compiled once; batches have one fixed padded shape (see _fixed_size). Traced under the
    # mesh: each device encodes its share of the batch (sharding.constrain_to_batch).
    self._encode_gallery = jax.jit(sharding.traced_under(
        mesh, lambda v, image: model.apply(v, image, method='encode_gallery')))
    self._encode_query = jax.jit(sharding.traced_under(mesh, lambda v, b: model.apply(
        v, b['sketch'], b['text_ids'], b['text_mask'], b['has_sketch'], b['has_text'],
        method='encode_query')))

  # ------------------------------------------------------------------ hooks for subclasses

  def query_variants(self) -> list[tuple[str, Callable | None]]:
    """(prefix, transform(batch_number, batch) -> batch or None) per query variant."""
    return [('', None)]

  def variant_modes(self, prefix: str) -> tuple:
    """The modes a query variant is ranked in."""
    del prefix
    return self.modes

  def metric_keys(self, m: dict) -> dict:
    return {k: v for k, v in m.items()}

  # ------------------------------------------------------------------ the protocol

  def _to_device(self, batch: dict) -> dict:
    if self.mesh is None:
      return batch
    return sharding.global_batch(self.mesh, batch)

  def _fetch(self, x) -> np.ndarray:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  def _process_rows(self) -> dict:
    """Which rows of every eval batch this process reads (kwargs of the data fns).

    With a mesh over several processes each process reads only its share and `global_batch`
    assembles the global batch; reading every row would put each one in it process_count
    times. Without a mesh (or with one process) every row: the pipeline's defaults, so data
    fns taking (config, dataset, split) only keep working.
    """
    if self.mesh is None or jax.process_count() == 1:
      return {}
    return dict(process_index=jax.process_index(), process_count=jax.process_count())

  def _host_meta(self, batch: dict, keys) -> dict:
    """Host metadata in the same (global) row order as the fetched embeddings."""
    meta = {k: batch[k] for k in keys}
    if self.mesh is not None and jax.process_count() > 1:
      # The same path as the embeddings (process-local rows -> global array -> gather), so the
      # row order agrees whatever order the mesh puts the processes' devices in.
      meta = {k: self._fetch(v) for k, v in self._to_device(meta).items()}
    return meta

  def gallery(self, variables, dataset: str, split: str):
    """Gallery embeddings (N, D), instance ids (N,) and categories (N,), padded rows dropped."""
    embs, instances, categories = [], [], []
    batches = self.data.gallery(dataset, split, self.batch_size, **self._process_rows())
    for batch in _fixed_size(batches):
      image = self._to_device({'image': batch['image']})['image']
      emb = self._fetch(self._encode_gallery(variables, image))
      meta = self._host_meta(batch, ('valid', 'instance', 'category'))
      keep = meta['valid'].astype(bool)
      embs.append(emb[keep])
      instances.append(meta['instance'][keep])
      categories.append(meta['category'][keep])
    if not embs or sum(len(i) for i in instances) == 0:
      raise EvaluatorError(f'[{self.name}] {dataset}/{split}: the gallery is empty.')
    instances = np.concatenate(instances)
    uniq, counts = np.unique(instances, return_counts=True)
    if np.any(counts > 1):
      raise EvaluatorError(f'[{self.name}] {dataset}/{split}: gallery photos appear more than '
                           f'once (instances {uniq[counts > 1][:10].tolist()}); each photo must '
                           'be in the gallery exactly once.')
    return np.concatenate(embs).astype(np.float32), instances, np.concatenate(categories)

  def query_embeddings(self, variables, dataset: str, split: str) -> dict:
    """{(prefix, mode): (embeddings (Q, D), target instance (Q,))} for every variant x mode."""
    variants = self.query_variants()
    out = {(p, m): ([], []) for p, _ in variants for m in self.variant_modes(p)}
    batches = self.data.queries(dataset, split, self.batch_size, **self._process_rows())
    for batch_number, batch in enumerate(_fixed_size(batches)):
      meta = self._host_meta(batch, ('valid', 'instance', 'has_sketch', 'has_text'))
      valid = meta['valid'].astype(bool)
      # Numeric fields only (a pipeline may add strings); degradations may read any of them.
      device_batch = self._to_device({k: v for k, v in batch.items() if v.dtype.kind in 'biuf'})
      for prefix, transform in variants:
        variant = device_batch if transform is None else transform(batch_number, device_batch)
        for mode in self.variant_modes(prefix):
          query = apply_mode(variant, self.encode_as.get(mode, mode))
          emb = self._fetch(self._encode_query(variables, {k: query[k] for k in QUERY_KEYS}))
          keep = valid & _has_inputs_of(meta, mode)
          out[prefix, mode][0].append(emb[keep])
          out[prefix, mode][1].append(meta['instance'][keep])
    result = {}
    for key, (embs, targets) in out.items():
      if not embs or sum(len(t) for t in targets) == 0:
        raise EvaluatorError(
            f'[{self.name}] {dataset}/{split}: no query has the inputs of mode {key[1]!r}; '
            f'remove it from config.evals.{self.name}.modes (e.g. a dataset without texts: '
            f"--config.evals.{self.name}.modes='(\"sketch\",)').")
      result[key] = (np.concatenate(embs).astype(np.float32), np.concatenate(targets))
    return result

  def run(self, variables) -> dict:
    results = {}
    split = self.section.split
    for dataset in self.section.datasets:
      start = time.time()
      gallery, gallery_instance, gallery_category = self.gallery(variables, dataset, split)
      row_of = {int(inst): row for row, inst in enumerate(gallery_instance)}
      queries = self.query_embeddings(variables, dataset, split)
      for (prefix, mode), (q, target_instance) in queries.items():
        missing = [int(t) for t in target_instance if int(t) not in row_of]
        if missing:
          raise EvaluatorError(f'[{self.name}] {dataset}/{split}: queries target photos that '
                               f'are not in the gallery (instances {sorted(set(missing))[:10]}).')
        target = np.asarray([row_of[int(t)] for t in target_instance], np.int32)
        r = self._ranks(q, gallery, target, gallery_category)
        for name, value in self.metric_keys(metrics.retrieval_metrics(r)).items():
          results['/'.join(x for x in (dataset, prefix, mode, name) if x)] = value
      logging.info('[%s] %s/%s: %d gallery photos, %d queries x %d variants in %.1fs.',
                   self.name, dataset, split, len(gallery_instance), len(next(iter(
                       queries.values()))[1]), len(queries), time.time() - start)
    return results


  def _ranks(self, queries, gallery, target, gallery_category) -> np.ndarray:
    return ranks_in_scope(queries, gallery, target, gallery_category, self.scope)


def ranks_in_scope(queries, gallery, target, gallery_category, scope: str) -> np.ndarray:
  """Rank of each query's target row among the whole gallery (scope 'all') or among its
  category's photos ('category'; the category of a query is that of its target photo)."""
  if scope == 'all':
    return np.asarray(metrics.ranks_from_embeddings(queries, gallery, target))
  ranks = np.zeros(len(target), np.int64)
  query_category = gallery_category[target]
  for category in np.unique(query_category):
    rows = np.flatnonzero(gallery_category == category)
    local = np.full(len(gallery_category), -1, np.int32)
    local[rows] = np.arange(len(rows))
    qs = np.flatnonzero(query_category == category)
    ranks[qs] = np.asarray(metrics.ranks_from_embeddings(queries[qs], gallery[rows],
                                                         local[target[qs]]))
  return ranks


class RobustnessEvaluator(RetrievalEvaluator):
  """Acc@1 and mAP of queries degraded by each bucket of its section's `buckets`."""

  name = 'robustness'
  section_defaults = SECTION_DEFAULTS['robustness']
  section_rules = dict(RetrievalEvaluator.section_rules, buckets=config_rules.names())
  shared_fields = ('datasets', 'eval_seed')  # keys fixed by the seed: runs are comparable

  def __init__(self, section, model, data: EvalData, mesh=None):
    super().__init__(section, model, data, mesh)
    self.buckets = {str(b.name): b for b in section.buckets}
    self._extra_buckets = ()   # buckets beyond the curriculum's (DegradationEvaluator)
    self._degrade = {}

  def _degrade_fn(self, bucket: str):
    if bucket not in self._degrade:
      self._degrade[bucket] = jax.jit(
          lambda key, batch: self.data.degrade(key, batch, bucket, self._extra_buckets))
    return self._degrade[bucket]

  def variant_modes(self, prefix: str) -> tuple:
    """A bucket that removes the sketch has no sketch-only queries (they would be empty), nor
    one that removes the text text-only ones; its sketch+text queries are what is left."""
    bucket = self.buckets[prefix]
    gone = {'sketch'} if bucket.missing_sketch else set()
    gone |= {'text'} if bucket.missing_text else set()
    return tuple(m for m in self.modes if m not in gone)

  def query_variants(self):
    base = jax.random.PRNGKey(self.section.eval_seed)

    def transform(bucket):
      # The key depends only on (eval_seed, batch number): every bucket of every run sees the
      # same random draws for the same queries.
      return lambda b, batch: self._degrade_fn(bucket)(jax.random.fold_in(base, b), batch)

    return [(name, transform(name)) for name in self.buckets]

  def metric_keys(self, m: dict) -> dict:
    return {'acc@1': m['acc@1'], 'mAP': m['mAP']}


class DegradationEvaluator(RobustnessEvaluator):
  """What each degradation of a bucket costs: every bucket of its section whole, followed by each
  degradation it applies on its own at the bucket's value, the others clean, as the variant
  '<bucket>.<field>' (degradations.single_degradations: e.g. moderate.jitter), then the bucket
  with all but that one, '<bucket>.no_<field>' (degradations.all_but_one_degradation: what
  undoing it would win back). The keys are robustness's, so its 'moderate' row is robustness's
  'moderate' to the last digit."""

  name = 'degradations'
  section_defaults = SECTION_DEFAULTS['degradations']

  def __init__(self, section, model, data: EvalData, mesh=None):
    super().__init__(section, model, data, mesh)
    whole, self.buckets, extra = self.buckets, {}, []
    for name, bucket in whole.items():
      self.buckets[name] = bucket
      for _, variant in (degradations.single_degradations(bucket)
                         + degradations.all_but_one_degradation(bucket)):
        variant = ml_collections.ConfigDict(variant)
        self.buckets[variant.name] = variant
        extra.append(variant)
    self._extra_buckets = tuple(extra)


EVALUATORS = {'retrieval': RetrievalEvaluator, 'robustness': RobustnessEvaluator,
              'degradations': DegradationEvaluator}


def get_evaluator(name: str):
  """The evaluator class registered as `name`."""
  if name not in EVALUATORS:
    raise EvaluatorError(f'Unknown evaluator {name!r} (config.evals.{name}); valid evaluators: '
                         f'{", ".join(sorted(EVALUATORS))}.')
  return EVALUATORS[name]


def section(config, name: str) -> ml_collections.ConfigDict:
  """The section evaluator `name` is built with: config.evals.<name> (config_section, checked by
  its rules) and the run-wide fields it shares (eval_sections.evaluator_section)."""
  own, evaluator = config_section(config, name), get_evaluator(name)
  check_section(name, own, evaluator)
  return evaluator_section(config, own, evaluator)


def check_sections(config) -> None:
  """Raises EvaluatorError on the first section of config.evals that names no evaluator (listing
  the valid ones), or has a key or value its evaluator refuses."""
  for name in config.evals:
    section(config, name)  # its own keys and rules, then e.g. buckets the curriculum lacks


def make_evaluator(name: str, config, model, data_fns: dict | None = None, mesh=None):
  """Evaluator `name` on its section of `config`, reading EvalData(config, data_fns)."""
  return get_evaluator(name)(section(config, name), model, EvalData(config, data_fns), mesh)


def make_evaluators(config, model, data_fns: dict | None = None, mesh=None) -> list:
  """The run's evaluators: one per section of config.evals, in name order (ConfigDict's); an
  unknown name fails first."""
  sections = [(name, section(config, name)) for name in config.evals]
  data = EvalData(config, data_fns)
  return [get_evaluator(name)(s, model, data, mesh) for name, s in sections]


# ------------------------------------------------------------------------------ a saved run


def evaluate_run(workdir, split=None, step=None, evaluators=None) -> tuple[int, dict]:
  """Evaluates checkpoint `step` (default: the latest) of the run in `workdir` on `split`
  (default: each evaluator's own) with `evaluators` (default: the run's; one the run had no
  section for gets config_section's); writes WORKDIR/results_<split>_step<step>.{json,md}
  (<split> the first evaluator's) and returns (step, results)."""
  from stbir_jax import run_config  # pylint: disable=g-import-not-at-top
  run, config = run_config.load_run(workdir)
  names = list(evaluators) if evaluators else list(config.evals)
  for name in names:
    add_section(config, name)  # an unknown name fails here, before the checkpoint is read
    config.evals[name].split = split or config.evals[name].split
  sections = {name: section(config, name) for name in names}
  step, params = run_config.latest_params(run, step)
  model = STBIR.from_config(config)
  data = EvalData(config)
  results = {}
  for name, own in sections.items():
    results.update(get_evaluator(name)(own, model, data).run({'params': params}))
  shown_split = split or next((s.split for s in sections.values()), 'test')
  eval_report.write_results(results, run, f'results_{shown_split}_step{step}')
  return step, results


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  step, results = evaluate_run(f.workdir, f.split, f.step, f.evaluators)
  print(f'{f.workdir}, step {step}:\n{eval_report.results_table(results)}', flush=True)


if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Training run directory (a local path or gs:// URL).')
  flags.DEFINE_string('split', None, "Split to evaluate, e.g. 'validation'; default: each "
                      "evaluator's config.evals.<name>.split.")
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
  flags.DEFINE_list('evaluators', None, "Evaluators by name; default: the run's "
                    '(the sections of config.evals).')
  flags.mark_flag_as_required('workdir')
  app.run(main)
