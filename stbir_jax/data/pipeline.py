"""The input pipeline (Grain): host batches of numpy arrays for training and evaluation.

It takes its part of the config, as big_vision's input pipeline does: `data` (config.data) and,
for training, the global batch size and seed (config.train.batch_size, config.train.seed); for
evaluation, the eval batch size (config.evals.<name>.batch_size); and the process index/count.

Data comes from the TFDS dataset directories of `config.data.configs` (datasets.py: where they
live, `ensure_built`, `category_names`, the records); examples.py decodes a record into a row.

Training (`train_iterator`) is a random-access grain.MapDataset, so its iterator state is one
integer and resumes exactly: element i of the stream is a pure function of (seed, i).
Epochs are FAMILY-GROUPED for hard negatives: every epoch shuffles the instances inside each
family, cuts each family into groups of `config.data.family_group` and orders the groups at
random; with the default sizes (families of 16, groups of 16, batches a multiple of 16) a batch
holds whole families. Per element, one of the instance's sketches and one of its texts are
picked from (seed, i). Multi-host: process p gets rows [p*B/P, (p+1)*B/P) of every global
batch, so P processes together see exactly the 1-process stream.

Batch fields (B = config.train.batch_size // process_count, R = resolution, L = max_text_len):

  image uint8 (B,R,R,3)   sketch uint8 (B,R,R) stroke-order map   text_ids/text_mask int32 (B,L)
  has_sketch/has_text bool (B,)  (False, with zeros, when the record has no sketch/text)
  category int32 (B,)  index into `category_names(config.data)` (all configurations, in order)
  instance/family int32 (B,)  globally unique: configuration k adds k * datasets.ID_STRIDE
                              (a family of -1, "no family", stays -1)

A batch may straddle two epochs when the train split size is not a multiple of the batch.
config.data.num_workers > 0 computes batches in Grain worker processes (same stream; the
iterator state then has Grain's multi-worker layout, so resume with the same num_workers).

Bad records (unparsable, an undecodable or wrong-sized image, an empty text) follow
config.data.on_bad_record: 'error' (default) raises naming the record; 'skip' gives the stream
element the next good record of the stream instead (with the element's own sketch/text choices,
so the stream stays a pure function of (seed, i) and resume stays exact), logs the first
MAX_SKIP_WARNINGS skips naming the record, and adds SKIPPED_KEY to every batch: int32 (B,), the
bad records each row skipped (train.py logs their sum as data/skipped_records).

Evaluation (`eval_gallery`, `eval_queries`) walks a split once, in stored order, in batches of
config.evals.<name>.batch_size padded with `valid` False rows; with process_count > 1 each process
yields its rows of every batch, as in training. Evaluation raises on a bad record whatever the
policy: dropping a photo or a query would change the protocol every number is compared under.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import grain
import numpy as np
from absl import logging

from stbir_jax.data import datasets, examples, schema

# The input pipeline's API beside its readers: train.py, config_checks, aot, the CLI and the
# benchmarks call pipeline.ensure_built / category_names and catch pipeline.DataError; they are
# defined in datasets.py.
from stbir_jax.data.datasets import DataError, category_names, ensure_built  # noqa: F401

BAD_RECORD_POLICIES = ('error', 'skip')
SKIPPED_KEY = 'skipped_records'   # per-row count of bad records skipped, in 'skip' batches only
MAX_SKIP_WARNINGS = 10            # skips logged per process; the metric counts all of them
# More bad records than this in a row is broken data, not a few corrupt files: raise.
MAX_CONSECUTIVE_BAD = 64


def bad_record_policy(data) -> str:
  policy = data.get('on_bad_record', 'error')
  if policy not in BAD_RECORD_POLICIES:
    raise DataError(f'config.data.on_bad_record={policy!r}; valid policies: '
                    f'{", ".join(BAD_RECORD_POLICIES)}.')
  return policy


# ------------------------------------------------------------------------------------ training


def _family_groups(family: np.ndarray, config_index: np.ndarray) -> np.ndarray:
  """Dense family index per record: records sharing (configuration, family) share it; records
  without a family (-1) are each their own."""
  key = np.where(family == schema.NO_FAMILY, -1 - np.arange(len(family)), family)
  pairs = np.stack([config_index, key], axis=1)
  _, dense = np.unique(pairs, axis=0, return_inverse=True)
  return dense.reshape(-1).astype(np.int64)


def epoch_order(family: np.ndarray, group_size: int, seed: int, epoch: int) -> np.ndarray:
  """The record order of one epoch: families' instances shuffled within the family, cut into
  groups of `group_size`, groups in random order. A pure function of (seed, epoch)."""
  records = len(family)
  rng = np.random.default_rng([seed % (1 << 63), epoch])
  within = np.lexsort((rng.random(records), family))  # by family, shuffled inside
  fam_sorted = family[within]
  first = np.searchsorted(fam_sorted, fam_sorted, side='left')
  rank = np.arange(records) - first
  new_group = np.ones(records, bool)
  new_group[1:] = (fam_sorted[1:] != fam_sorted[:-1]) | (rank[1:] % group_size == 0)
  group = np.cumsum(new_group) - 1
  group_rank = rng.permutation(group[-1] + 1 if records else 0)
  return within[np.argsort(group_rank[group], kind='stable')]


_SKIP_HINT = (" (config.data.on_bad_record='skip' trains on without such records, counting "
              'them in data/skipped_records)')
_warnings_lock = threading.Lock()
_skip_warnings = 0


def _warn_skip(error: DataError, element: int) -> None:
  """Logs the first MAX_SKIP_WARNINGS skips of this process (each names its record)."""
  global _skip_warnings
  with _warnings_lock:
    _skip_warnings += 1
    warned = _skip_warnings
  if warned <= MAX_SKIP_WARNINGS:
    logging.warning('Skipping a bad record (config.data.on_bad_record=skip): %s; train stream '
                    'element %d takes the next good record instead.%s', error, element,
                    ' Further skips are only counted (data/skipped_records).'
                    if warned == MAX_SKIP_WARNINGS else '')


class _TrainElements(grain.MapDataset):
  """Process-local element j -> decoded example of global stream element i.

  Global element i (row i % B of global batch i // B) is record epoch_order(epoch)[pos] with
  (epoch, pos) = divmod(i, N); its sketch/text choices hash (seed, i). Infinite. With
  on_bad_record='skip', a bad record at element i is replaced by the record of element i + 1
  (or i + 2, ...: the next good one), still with element i's choices.
  """

  def __init__(self, sources, offsets, family, group_size, seed, resolution,
               global_batch, local_batch, process_index, on_bad_record='error'):
    super().__init__()
    self._sources, self._offsets = sources, offsets
    sizes = [len(source) for source in sources]
    self._starts = np.cumsum([0] + sizes)
    self._family = family
    self._n = int(self._starts[-1])
    self._group_size, self._seed, self._resolution = group_size, seed, resolution
    self._global_batch, self._local_batch = global_batch, local_batch
    self._process_index = process_index
    self._skip = on_bad_record == 'skip'
    self._lock = threading.Lock()
    self._orders = {}

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_lock'], state['_orders'] = None, {}
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f'StbirTrainElements(records={self._n}, group={self._group_size})'

  def _order(self, epoch: int) -> np.ndarray:
    with self._lock:
      order = self._orders.get(epoch)
      if order is None:
        order = epoch_order(self._family, self._group_size, self._seed, epoch)
        # Prefetch threads may straddle an epoch boundary; two epochs are enough.
        self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
        self._orders[epoch] = order
      return order

  def global_index(self, local_index: int) -> int:
    batch, row = divmod(int(local_index), self._local_batch)
    return batch * self._global_batch + self._process_index * self._local_batch + row

  def _decode(self, element: int, choices: int) -> dict:
    """The record of stream element `element` with the sketch/text choices of hash `choices`."""
    epoch, pos = divmod(element, self._n)
    record = int(self._order(epoch)[pos])
    config = int(np.searchsorted(self._starts, record, side='right') - 1)
    return examples.decode_example(self._sources[config], record - int(self._starts[config]),
                                   self._offsets[config], self._resolution,
                                   sketch_choice=choices & 0xFFFFFFFF, text_choice=choices >> 32)

  def __getitem__(self, local_index):
    if isinstance(local_index, slice):
      return self.slice(local_index)
    element = self.global_index(local_index)
    choices = examples.element_hash(self._seed, element)
    if not self._skip:
      try:
        return self._decode(element, choices)
      except DataError as e:
        raise DataError(f'{e}{_SKIP_HINT}') from e
    for skipped in range(MAX_CONSECUTIVE_BAD + 1):
      try:
        example = self._decode(element + skipped, choices)
      except DataError as e:
        _warn_skip(e, element)
        continue
      example[SKIPPED_KEY] = np.int32(skipped)
      return example
    raise DataError(f'Train stream elements {element}..{element + MAX_CONSECUTIVE_BAD} all hold '
                    'bad records (see the warnings above): the data is broken beyond skipping a '
                    'few records; rebuild or re-prepare it.')


def train_dataset(data, *, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """The infinite MapDataset of process-local training batches (see the module docstring):
  `data` is config.data, `batch_size` the global batch (config.train.batch_size), `seed` the
  stream's seed (config.train.seed)."""
  global_batch = int(batch_size)
  if process_count < 1 or not 0 <= process_index < process_count:
    raise DataError(f'process_index={process_index} must be in [0, process_count={process_count})')
  if global_batch % process_count:
    raise DataError(f'config.train.batch_size={global_batch} is not divisible by '
                    f'{process_count} processes.')
  group = int(data.family_group)
  if group < 1:
    raise DataError(f'config.data.family_group={group} must be >= 1.')
  policy = bad_record_policy(data)
  seed = int(seed)
  sources, offsets, families, config_ids = [], [], [], []
  for config, name in enumerate(datasets.dataset_configs(data)):
    source = datasets.data_source(data, name, 'train')
    if not len(source):
      raise DataError(f'{source.label} split "train" is empty.')
    meta = source.scan()
    if policy == 'error':
      datasets.require_parsable(source, meta, _SKIP_HINT)
    # else unparsable records stay in the order, each its own family, and are skipped there.
    sources.append(source)
    offsets.append(datasets.config_offsets(data, name))
    families.append(meta['family'])
    config_ids.append(np.full(len(source), config))
  family = _family_groups(np.concatenate(families), np.concatenate(config_ids))
  elements = _TrainElements(sources, offsets, family, group, seed, int(data.resolution),
                            global_batch, global_batch // process_count, process_index,
                            on_bad_record=policy)
  return (elements.batch(global_batch // process_count, drop_remainder=True)
          .map(examples.Tokenize(data.tokenizer, data.max_text_len)))


def train_iterator(data, *, batch_size: int, seed: int, process_index: int = 0,
                   process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of process-local training batches; get_state/set_state resume exactly.
  Arguments as train_dataset's."""
  ds = train_dataset(data, batch_size=batch_size, seed=seed, process_index=process_index,
                     process_count=process_count)
  workers = int(data.num_workers)
  if workers > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    # Grain's workers read absl flags; outside absl.app use the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    # Each worker process computes whole batches; Grain interleaves them back in order.
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                           per_worker_buffer_size=2))
  else:
    # Threads decode whole batches ahead (PNG decoding releases the GIL).
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8))
  return iter(it_ds)


# ------------------------------------------------------------------------------------ evaluation


def _eval_batch_rows(batch_size: int, process_index: int, process_count: int):
  size = int(batch_size)
  if process_count < 1 or not 0 <= process_index < process_count or size % process_count:
    raise DataError(f'config.evals.<name>.batch_size={size} must be divisible by process_count='
                    f'{process_count} and 0 <= process_index={process_index} < it.')
  local = size // process_count
  return size, process_index * local, (process_index + 1) * local


def _stack(rows: list, template: dict, size: int) -> dict:
  """Stacks example dicts into a batch of `size` rows, padding with zeros and valid=False."""
  out = {}
  for key, value in template.items():
    if isinstance(value, str):
      out[key] = np.asarray([row[key] for row in rows] + [''] * (size - len(rows)), object)
      continue
    value = np.asarray(value)
    arr = np.zeros((size,) + value.shape, value.dtype)
    for position, row in enumerate(rows):
      arr[position] = row[key]
    out[key] = arr
  out['valid'] = np.arange(size) < len(rows)
  return out


def _padded_batches(items, make_row, data, batch_size, process_index, process_count,
                    tokenize: bool) -> Iterator[dict]:
  """Groups `items` into global eval batches, yields this process's rows (padded, `valid`)."""
  size, lo, hi = _eval_batch_rows(batch_size, process_index, process_count)
  tokenizer = examples.Tokenize(data.tokenizer, data.max_text_len) if tokenize else None
  for start in range(0, len(items), size):
    mine = items[start + lo:start + hi]
    rows = [make_row(item) for item in mine]
    template = rows[0] if rows else make_row(items[0])
    batch = _stack(rows, template, hi - lo)
    yield tokenizer(batch) if tokenizer else batch


def eval_gallery(data, dataset_config: str, split: str, *, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Every photo of the split once: image, instance, category, family, valid (padded batches
  of the global `batch_size`, config.evals.<name>.batch_size; `data` is config.data).

  With process_count > 1, each process yields its rows [p*b, (p+1)*b) of every global batch
  (b = batch_size // process_count), as for training.
  """
  offsets = datasets.config_offsets(data, dataset_config)
  source = datasets.data_source(data, dataset_config, split)
  resolution = int(data.resolution)
  keys = ('image', 'instance', 'category', 'family')

  def row(index):
    example = examples.decode_example(source, index, offsets, resolution, -1, -1)
    return {key: example[key] for key in keys}

  return _padded_batches(list(range(len(source))), row, data, batch_size, process_index,
                         process_count, tokenize=False)


def eval_queries(data, dataset_config: str, split: str, *, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Every query once: query j of a photo is (sketch j, text j mod T) for j < max(S, T), with
  has_sketch False when j >= S and has_text False when T == 0.

  Fields sketch, text_ids, text_mask, has_sketch, has_text, instance (the target photo),
  category, family, query_index, valid; padded batches as eval_gallery's.
  """
  offsets = datasets.config_offsets(data, dataset_config)
  source = datasets.data_source(data, dataset_config, split)
  meta = source.scan()
  datasets.require_parsable(source, meta)  # an unparsable record would silently lose its queries
  resolution = int(data.resolution)
  queries = np.maximum(meta['num_sketches'], meta['num_texts'])
  items = [(int(index), query) for index in range(len(queries))
           for query in range(int(queries[index]))]

  def row(item):
    index, query = item
    sketches, texts = int(meta['num_sketches'][index]), int(meta['num_texts'][index])
    example = examples.decode_example(
        source, index, offsets, resolution, query if query < sketches else -1,
        query % texts if texts else -1, with_image=False)
    del example['image']
    example['query_index'] = np.int32(query)
    return example

  return _padded_batches(items, row, data, batch_size, process_index, process_count,
                         tokenize=True)
