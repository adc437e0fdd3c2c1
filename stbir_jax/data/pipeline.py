"""The input pipeline (Grain): host batches of numpy arrays for training and evaluation.

It takes its part of the config, as big_vision's input pipeline does: `data` (config.data) and,
for training, the global batch size and seed (config.train.batch_size, config.train.seed); for
evaluation, the eval batch size (config.eval.batch_size); and the process index/count.

Data comes from TFDS dataset directories in `config.data.data_dir` ('' = $TFDS_DATA_DIR or
~/tensorflow_datasets), one per entry of `config.data.configs`:

  stbir_synth   DATA_DIR/stbir_synth/<config>/1.0.0, built here on demand (`ensure_built`)
  anything else DATA_DIR/<entry>/1.0.0, written by `python -m stbir_jax.data.prepare`

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
  instance/family int32 (B,)  globally unique: configuration k adds k * ID_STRIDE
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
config.eval.batch_size padded with `valid` False rows; with process_count > 1 each process
yields its rows of every batch, as in training. Evaluation raises on a bad record whatever the
policy: dropping a photo or a query would change the protocol every number is compared under.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import time
from typing import Iterator

import grain
import numpy as np
from absl import logging

from stbir_jax.data import schema
from stbir_jax.data import tokenizer as tokenizer_lib
from stbir_jax.data.names import REAL_DATASETS, SPLITS, SYNTH

PREPARED_VERSION = '1.0.0'
# instance and family ids of configuration k are offset by k * ID_STRIDE (int32 fits 127 of them).
ID_STRIDE = 1 << 24
_MASK64 = (1 << 64) - 1
BAD_RECORD_POLICIES = ('error', 'skip')
SKIPPED_KEY = 'skipped_records'   # per-row count of bad records skipped, in 'skip' batches only
MAX_SKIP_WARNINGS = 10            # skips logged per process; the metric counts all of them
# More bad records than this in a row is broken data, not a few corrupt files: raise.
MAX_CONSECUTIVE_BAD = 64


class DataError(ValueError):
  pass


# ------------------------------------------------------------------------------------ locations


def data_dir(data) -> str:
  d = data.data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
  return os.path.abspath(os.path.expanduser(d))


def _synthetic():
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module('stbir_jax.data.synth')


def _is_synth(data) -> bool:
  return data.name == SYNTH


def _synth_builder(data, dataset_config: str):
  synthetic = _synthetic()
  if dataset_config not in synthetic.CONFIGS:
    raise DataError(f'Unknown {SYNTH} configuration {dataset_config!r} (config.data.configs); '
                    f'valid configurations: {", ".join(synthetic.CONFIGS)}')
  spec = synthetic.SynthSpec.from_config(data)
  return _cached_builder(synthetic, dataset_config, spec, data_dir(data))


@functools.lru_cache(maxsize=64)
def _cached_builder(synthetic, dataset_config, spec, directory):
  # Cached: a builder per call would re-read dataset_info.json and log TFDS's "custom config".
  del synthetic  # part of the key only (tests swap the generator module)
  from stbir_jax.data import stbir_synth  # pylint: disable=g-import-not-at-top
  return stbir_synth.builder_for(dataset_config, spec, directory)


def dataset_path(data, dataset_config: str) -> str:
  """The TFDS dataset directory (holding dataset_info.json) of one configuration."""
  if _is_synth(data):
    return os.fspath(_synth_builder(data, dataset_config).data_dir)
  return os.path.join(data_dir(data), dataset_config, PREPARED_VERSION)


def _check_exists(data, dataset_config: str, path: str) -> None:
  if os.path.isfile(os.path.join(path, 'dataset_info.json')):
    return
  if _is_synth(data):
    hint = ''
    if os.path.basename(os.path.dirname(path)) == dataset_config:  # default generator sizes
      hint = (f' or `tfds build stbir_jax/data/stbir_synth.py --config={dataset_config} '
              f'--data_dir={data_dir(data)}`')
    raise DataError(f'{SYNTH}/{dataset_config} is not built in {path}; call '
                    f'stbir_jax.data.pipeline.ensure_built(config.data){hint}.')
  raise DataError(
      f'No prepared dataset {dataset_config!r} in {path} (dataset_info.json missing); '
      f'config.data.name={data.name!r} reads DATA_DIR/<entry of config.data.configs>/'
      f'{PREPARED_VERSION}. Create it with: python -m stbir_jax.data.prepare '
      f'--format={data.name} --src=SOURCE_DIR --name={dataset_config} '
      f'--out={data_dir(data)}')


# ------------------------------------------------------------------------------------ sources


class _Split:
  """Random access to the raw records of one split of one dataset directory.

  Records are read as bytes and parsed with TFDS's numpy parser; images are decoded on demand
  (a training example needs the photo and one of its sketches, not all of them). Pickles as its
  location, so Grain worker processes reopen the files themselves.
  """

  def __init__(self, label: str, path: str, split: str):
    self.label, self.path, self.split = label, path, split
    self._open()

  def _open(self):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder_from_directory(self.path)
    if self.split not in builder.info.splits:
      raise DataError(f'{self.label} has no split {self.split!r}; valid splits: '
                      f'{", ".join(sorted(builder.info.splits))}')
    self.features = builder.info.features
    self.resolution = int(self.features['image'].shape[0])
    self.category_names = list(self.features['category'].names)
    self._parser = self.features._example_parser_np  # pylint: disable=protected-access
    self._source = builder.as_data_source(
        self.split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def __getstate__(self):
    return dict(label=self.label, path=self.path, split=self.split)

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._open()

  def __len__(self) -> int:
    return len(self._source)

  def where(self, index: int) -> str:
    return f'{self.label} split {self.split!r} record {index}'

  def parse(self, index: int, raw=None) -> dict:
    """Record `index` with images still PNG bytes; errors name the record."""
    try:
      raw = self._source[index] if raw is None else raw
      return self._parser.parse_example(raw)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'{self.where(index)} failed to parse: {type(e).__name__}: {e}') from e

  def parse_many(self, indices) -> list:
    raws = self._source.__getitems__(list(indices))
    return [self.parse(i, r) for i, r in zip(indices, raws)]

  def scan(self) -> dict:
    """family, instance, #sketches, #texts of every record (int64 arrays), read once."""
    return _scan(self.path, self.split, self)


def _parse_chunk(source: _Split, indices) -> list:
  """Parsed records, or the DataError of each record that does not parse."""
  try:
    return source.parse_many(indices)
  except DataError:  # find which ones, one by one
    out = []
    for i in indices:
      try:
        out.append(source.parse(i))
      except DataError as e:
        out.append(e)
    return out


@functools.lru_cache(maxsize=64)
def _scan(path, split, source):
  del path, split  # the cache key
  n = len(source)
  out = {k: np.zeros(n, np.int64) for k in ('family', 'instance', 'num_sketches', 'num_texts')}
  # Records that do not parse: no family, no queries; readers decide (see _require_parsable).
  out['parsed'] = np.ones(n, bool)
  chunk = 1024
  for start in range(0, n, chunk):
    idx = range(start, min(n, start + chunk))
    for i, rec in zip(idx, _parse_chunk(source, idx)):
      if isinstance(rec, DataError):
        out['parsed'][i], out['family'][i] = False, schema.NO_FAMILY
        continue
      out['family'][i] = rec['family']
      out['instance'][i] = rec['instance']
      out['num_sketches'][i] = len(rec['sketches'])
      out['num_texts'][i] = len(rec['texts'])
  return out


def _data_source(data, dataset_config: str, split: str) -> _Split:
  """The records of one configuration and split; the only place that knows where data lives."""
  if split not in SPLITS:
    raise DataError(f'Unknown split {split!r}; valid splits: {", ".join(SPLITS)}')
  path = dataset_path(data, dataset_config)
  _check_exists(data, dataset_config, path)
  # Synthetic and prepared datasets alike: tfds.builder_from_directory(path).as_data_source.
  source = _cached_split(f'{data.name}/{dataset_config} at {path}', path, split)
  if source.resolution != data.resolution:
    raise DataError(f'{source.label} stores {source.resolution} px images but '
                    f'config.data.resolution={data.resolution}; set it to '
                    f'{source.resolution} or rebuild/re-prepare the data at that resolution.')
  return source


@functools.lru_cache(maxsize=64)
def _cached_split(label, path, split) -> _Split:
  return _Split(label, path, split)


# ------------------------------------------------------------------------------------ metadata


def _configs(data) -> list:
  names = list(data.configs)
  if not names:
    raise DataError('config.data.configs is empty; name at least one configuration.')
  if len(names) >= (1 << 31) // ID_STRIDE:
    raise DataError(f'At most {(1 << 31) // ID_STRIDE - 1} entries in config.data.configs.')
  if _is_synth(data):
    valid = tuple(_synthetic().CONFIGS)
    for name in names:
      if name not in valid:
        raise DataError(f'Unknown {SYNTH} configuration {name!r} in config.data.configs; valid '
                        f'configurations: {", ".join(valid)}')
  elif data.name not in REAL_DATASETS:
    raise DataError(f'Unknown dataset config.data.name={data.name!r}; valid names: '
                    f'{", ".join((SYNTH,) + REAL_DATASETS)}')
  return names


def _config_categories(data, dataset_config: str) -> list:
  if _is_synth(data):
    return list(_synthetic().CONFIGS[dataset_config])
  path = dataset_path(data, dataset_config)
  _check_exists(data, dataset_config, path)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return list(tfds.builder_from_directory(path).info.features['category'].names)


def category_names(data) -> list:
  """Global category list: the categories of every configuration of config.data.configs."""
  names = []
  for dataset_config in _configs(data):
    names += _config_categories(data, dataset_config)
  return names


@dataclasses.dataclass(frozen=True)
class _Offsets:
  category: int
  ids: int  # added to instance and family ids


def _offsets(data, dataset_config: str) -> _Offsets:
  names = _configs(data)
  if dataset_config not in names:
    raise DataError(f'Dataset configuration {dataset_config!r} is not in config.data.configs '
                    f'({", ".join(names)}).')
  k = names.index(dataset_config)
  category = sum(len(_config_categories(data, n)) for n in names[:k])
  return _Offsets(category=category, ids=k * ID_STRIDE)


def ensure_built(data) -> None:
  """Builds every missing stbir_synth configuration of config.data.configs (prints progress);
  for prepared datasets, checks that they exist and raises naming the directory otherwise.

  Multi-host on a shared filesystem: build once beforehand (one process, or
  `python -m stbir_jax.data.stbir_synth`); every process calling this on missing data would
  build its own copy.
  """
  for dataset_config in _configs(data):
    path = dataset_path(data, dataset_config)
    if os.path.isfile(os.path.join(path, 'dataset_info.json')):
      continue
    if not _is_synth(data):
      _check_exists(data, dataset_config, path)
    builder = _synth_builder(data, dataset_config)
    synthetic = _synthetic()
    spec = synthetic.SynthSpec.from_config(data)
    n = sum(synthetic.num_instances(dataset_config, s, spec) for s in synthetic.SPLITS)
    print(f'Building {SYNTH}/{builder.builder_config.name} ({n:,} photos) into {path} ...',
          file=sys.stderr, flush=True)
    start = time.time()
    builder.download_and_prepare()
    print(f'Built {SYNTH}/{builder.builder_config.name} in {time.time() - start:.1f}s.',
          file=sys.stderr, flush=True)


def bad_record_policy(data) -> str:
  policy = data.get('on_bad_record', 'error')
  if policy not in BAD_RECORD_POLICIES:
    raise DataError(f'config.data.on_bad_record={policy!r}; valid policies: '
                    f'{", ".join(BAD_RECORD_POLICIES)}.')
  return policy


def _require_parsable(source: _Split, meta: dict, hint: str = '') -> None:
  """Raises the parse error of the first record that does not parse (it names the record)."""
  bad = np.flatnonzero(~meta['parsed'])
  if len(bad):
    try:
      source.parse(int(bad[0]))
    except DataError as e:
      raise DataError(f'{e}{hint}') from e


def dataset_sizes(data, dataset_config: str, split: str) -> dict:
  """{'photos': gallery size, 'queries': number of eval queries} of one configuration/split."""
  source = _data_source(data, dataset_config, split)
  meta = source.scan()
  _require_parsable(source, meta)
  return {'photos': int(len(meta['instance'])),
          'queries': int(np.maximum(meta['num_sketches'], meta['num_texts']).sum())}


# ------------------------------------------------------------------------------------ decoding


def _decode_png(data: bytes, shape) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    im.load()
    # tobytes + frombuffer: ~25% less PIL overhead than np.asarray(im) on small images.
    array = np.frombuffer(im.tobytes(), np.uint8)
    if im.mode in ('L', 'RGB'):
      array = array.reshape(im.size[1], im.size[0], len(im.getbands()))
    else:
      raise DataError(f'PNG of mode {im.mode!r}; expected 8-bit L or RGB')
  if array.shape != tuple(shape) or array.dtype != np.uint8:
    raise DataError(f'image is {array.dtype} {array.shape}, expected uint8 {tuple(shape)}')
  return array


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _splitmix64(x: int) -> int:
  x = (x + 0x9E3779B97F4A7C15) & _MASK64
  x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
  x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
  return x ^ (x >> 31)


def _hash(*values: int) -> int:
  """A deterministic 64-bit hash of integers (per-element random choices, no RNG state)."""
  h = 0
  for v in values:
    h = _splitmix64(h ^ (int(v) & _MASK64))
  return h


def _decode_example(source: _Split, index: int, offsets: _Offsets, resolution: int,
                    sketch_choice: int, text_choice: int, with_image: bool = True) -> dict:
  """One example; sketch_choice/text_choice index the record's lists (mod len), -1 = none."""
  r = resolution
  rec = source.parse(index)
  try:
    image = _decode_png(rec['image'], (r, r, 3)) if with_image else None
    sketches, texts = rec['sketches'], rec['texts']
    has_sketch = len(sketches) > 0 and sketch_choice >= 0
    sketch = (_decode_png(sketches[sketch_choice % len(sketches)], (r, r, 1))[..., 0]
              if has_sketch else np.zeros((r, r), np.uint8))
    has_text = len(texts) > 0 and text_choice >= 0
    text = _text(texts[text_choice % len(texts)]) if has_text else ''
    if has_text and not text.strip():  # a text query of nothing: corrupt, not a missing text
      raise DataError(f'text {text_choice % len(texts)} is empty')
    instance, family = int(rec['instance']), int(rec['family'])
    if not 0 <= instance < ID_STRIDE or not -1 <= family < ID_STRIDE:
      raise DataError(f'instance {instance} / family {family} outside [0, {ID_STRIDE}) '
                      f'(family may be {schema.NO_FAMILY} for "none")')
    return dict(
        image=image, sketch=sketch, text=text,
        has_sketch=np.bool_(has_sketch), has_text=np.bool_(has_text),
        category=np.int32(int(rec['category']) + offsets.category),
        instance=np.int32(instance + offsets.ids),
        family=np.int32(family + offsets.ids if family != schema.NO_FAMILY else family))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'{source.where(index)} failed to decode: {type(e).__name__}: {e}') from e


class _Tokenize:
  """Batch map: the `text` strings -> text_ids/text_mask (zeros where has_text is False)."""

  def __init__(self, tokenizer_name: str, max_len: int):
    self.tokenizer_name, self.max_len = tokenizer_name, int(max_len)
    tokenizer_lib.get_tokenizer(tokenizer_name)  # load now: fail early, not in a worker

  def __call__(self, batch: dict) -> dict:
    batch = dict(batch)
    texts = [str(t) for t in batch.pop('text')]
    ids, mask = tokenizer_lib.get_tokenizer(self.tokenizer_name).encode(texts, self.max_len)
    keep = np.asarray(batch['has_text'], bool)[:, None]
    batch['text_ids'] = np.where(keep, ids, 0).astype(np.int32)
    batch['text_mask'] = np.where(keep, mask, 0).astype(np.int32)
    return batch


# ------------------------------------------------------------------------------------ training


def _family_groups(family: np.ndarray, config_index: np.ndarray) -> np.ndarray:
  """Dense family index per record: records sharing (configuration, family) share it; records
  without a family (-1) are each their own."""
  n = len(family)
  key = np.where(family == schema.NO_FAMILY, -1 - np.arange(n), family)
  pairs = np.stack([config_index, key], axis=1)
  _, dense = np.unique(pairs, axis=0, return_inverse=True)
  return dense.reshape(-1).astype(np.int64)


def epoch_order(family: np.ndarray, group_size: int, seed: int, epoch: int) -> np.ndarray:
  """The record order of one epoch: families' instances shuffled within the family, cut into
  groups of `group_size`, groups in random order. A pure function of (seed, epoch)."""
  n = len(family)
  rng = np.random.default_rng([seed % (1 << 63), epoch])
  within = np.lexsort((rng.random(n), family))  # by family, shuffled inside
  fam_sorted = family[within]
  first = np.searchsorted(fam_sorted, fam_sorted, side='left')
  rank = np.arange(n) - first
  new_group = np.ones(n, bool)
  new_group[1:] = (fam_sorted[1:] != fam_sorted[:-1]) | (rank[1:] % group_size == 0)
  group = np.cumsum(new_group) - 1
  group_rank = rng.permutation(group[-1] + 1 if n else 0)
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
    n = _skip_warnings
  if n <= MAX_SKIP_WARNINGS:
    logging.warning('Skipping a bad record (config.data.on_bad_record=skip): %s; train stream '
                    'element %d takes the next good record instead.%s', error, element,
                    ' Further skips are only counted (data/skipped_records).'
                    if n == MAX_SKIP_WARNINGS else '')


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
    sizes = [len(s) for s in sources]
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

  def global_index(self, j: int) -> int:
    b, row = divmod(int(j), self._local_batch)
    return b * self._global_batch + self._process_index * self._local_batch + row

  def _decode(self, i: int, h: int) -> dict:
    """The record of stream element i with the sketch/text choices of hash h."""
    epoch, pos = divmod(i, self._n)
    record = int(self._order(epoch)[pos])
    k = int(np.searchsorted(self._starts, record, side='right') - 1)
    return _decode_example(self._sources[k], record - int(self._starts[k]), self._offsets[k],
                           self._resolution, sketch_choice=h & 0xFFFFFFFF,
                           text_choice=h >> 32)

  def __getitem__(self, j):
    if isinstance(j, slice):
      return self.slice(j)
    i = self.global_index(j)
    h = _hash(self._seed, i)
    if not self._skip:
      try:
        return self._decode(i, h)
      except DataError as e:
        raise DataError(f'{e}{_SKIP_HINT}') from e
    for skipped in range(MAX_CONSECUTIVE_BAD + 1):
      try:
        example = self._decode(i + skipped, h)
      except DataError as e:
        _warn_skip(e, i)
        continue
      example[SKIPPED_KEY] = np.int32(skipped)
      return example
    raise DataError(f'Train stream elements {i}..{i + MAX_CONSECUTIVE_BAD} all hold bad records '
                    '(see the warnings above): the data is broken beyond skipping a few '
                    'records; rebuild or re-prepare it.')


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
  for k, name in enumerate(_configs(data)):
    source = _data_source(data, name, 'train')
    if not len(source):
      raise DataError(f'{source.label} split "train" is empty.')
    meta = source.scan()
    if policy == 'error':
      _require_parsable(source, meta, _SKIP_HINT)
    # else unparsable records stay in the order, each its own family, and are skipped there.
    sources.append(source)
    offsets.append(_offsets(data, name))
    families.append(meta['family'])
    config_ids.append(np.full(len(source), k))
  family = _family_groups(np.concatenate(families), np.concatenate(config_ids))
  elements = _TrainElements(sources, offsets, family, group, seed, int(data.resolution),
                            global_batch, global_batch // process_count, process_index,
                            on_bad_record=policy)
  return (elements.batch(global_batch // process_count, drop_remainder=True)
          .map(_Tokenize(data.tokenizer, data.max_text_len)))


def train_iterator(data, *, batch_size: int, seed: int, process_index: int = 0,
                   process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of process-local training batches; get_state/set_state resume exactly.
  Arguments as train_dataset's."""
  ds = train_dataset(data, batch_size=batch_size, seed=seed, process_index=process_index,
                     process_count=process_count)
  workers = int(data.num_workers)
  if workers > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside absl.app use defaults
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
    raise DataError(f'config.eval.batch_size={size} must be divisible by process_count='
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
    for i, row in enumerate(rows):
      arr[i] = row[key]
    out[key] = arr
  out['valid'] = np.arange(size) < len(rows)
  return out


def _padded_batches(items, make_row, data, batch_size, process_index, process_count,
                    tokenize: bool) -> Iterator[dict]:
  """Groups `items` into global eval batches, yields this process's rows (padded, `valid`)."""
  size, lo, hi = _eval_batch_rows(batch_size, process_index, process_count)
  tok = _Tokenize(data.tokenizer, data.max_text_len) if tokenize else None
  for start in range(0, len(items), size):
    mine = items[start + lo:start + hi]
    rows = [make_row(item) for item in mine]
    template = rows[0] if rows else make_row(items[0])
    batch = _stack(rows, template, hi - lo)
    yield tok(batch) if tok else batch


def eval_gallery(data, dataset_config: str, split: str, *, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Every photo of the split once: image, instance, category, family, valid (padded batches
  of the global `batch_size`, config.eval.batch_size; `data` is config.data).

  With process_count > 1, each process yields its rows [p*b, (p+1)*b) of every global batch
  (b = batch_size // process_count), as for training.
  """
  offsets = _offsets(data, dataset_config)
  source = _data_source(data, dataset_config, split)
  r = int(data.resolution)
  keys = ('image', 'instance', 'category', 'family')

  def row(index):
    ex = _decode_example(source, index, offsets, r, -1, -1)
    return {k: ex[k] for k in keys}

  return _padded_batches(list(range(len(source))), row, data, batch_size, process_index,
                         process_count, tokenize=False)


def eval_queries(data, dataset_config: str, split: str, *, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Every query once: query j of a photo is (sketch j, text j mod T) for j < max(S, T), with
  has_sketch False when j >= S and has_text False when T == 0.

  Fields sketch, text_ids, text_mask, has_sketch, has_text, instance (the target photo),
  category, family, query_index, valid; padded batches as eval_gallery's.
  """
  offsets = _offsets(data, dataset_config)
  source = _data_source(data, dataset_config, split)
  meta = source.scan()
  _require_parsable(source, meta)  # an unparsable record would silently lose its queries
  r = int(data.resolution)
  num = np.maximum(meta['num_sketches'], meta['num_texts'])
  items = [(int(i), j) for i in range(len(num)) for j in range(int(num[i]))]

  def row(item):
    index, j = item
    s, t = int(meta['num_sketches'][index]), int(meta['num_texts'][index])
    ex = _decode_example(source, index, offsets, r, j if j < s else -1, j % t if t else -1,
                         with_image=False)
    del ex['image']
    ex['query_index'] = np.int32(j)
    return ex

  return _padded_batches(items, row, data, batch_size, process_index, process_count,
                         tokenize=True)
