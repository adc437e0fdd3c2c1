"""The datasets config.data names: where they live, what they hold, their records.

Data comes from TFDS dataset directories in `config.data.data_dir` ('' = $TFDS_DATA_DIR or
~/tensorflow_datasets), one per entry of `config.data.configs`:

  stbir_synth   DATA_DIR/stbir_synth/<config>/1.0.0, built here on demand (`ensure_built`)
  anything else DATA_DIR/<entry>/1.0.0, written by `python -m stbir_jax.data.prepare`

This module owns those locations (`dataset_path`, `ensure_built`), the configurations and their
global vocabulary (`category_names`: every configuration's categories, in order; `Offsets`:
configuration k adds k * ID_STRIDE to its instance and family ids), and random access to the raw
records of one split (`data_source` -> `Split`, with its `scan` of ids and query counts). The
input pipeline (pipeline.py) reads through it; examples.py decodes the records.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time

import numpy as np

from stbir_jax.data import schema
from stbir_jax.data.names import REAL_DATASETS, SPLITS, SYNTH

PREPARED_VERSION = '1.0.0'
# instance and family ids of configuration k are offset by k * ID_STRIDE (int32 fits 127 of them).
ID_STRIDE = 1 << 24


class DataError(ValueError):
  pass


# ------------------------------------------------------------------------------------ locations


def data_dir(data) -> str:
  directory = data.data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
  return os.path.abspath(os.path.expanduser(directory))


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


class Split:
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
    return [self.parse(index, raw) for index, raw in zip(indices, raws, strict=True)]

  def scan(self) -> dict:
    """family, instance, #sketches, #texts of every record (int64 arrays), read once."""
    return _scan(self.path, self.split, self)


def _parse_chunk(source: Split, indices) -> list:
  """Parsed records, or the DataError of each record that does not parse."""
  try:
    return source.parse_many(indices)
  except DataError:  # find which ones, one by one
    out = []
    for index in indices:
      try:
        out.append(source.parse(index))
      except DataError as e:
        out.append(e)
    return out


@functools.lru_cache(maxsize=64)
def _scan(path, split, source):
  del path, split  # the cache key
  records = len(source)
  out = {key: np.zeros(records, np.int64)
         for key in ('family', 'instance', 'num_sketches', 'num_texts')}
  # Records that do not parse: no family, no queries; readers decide (see require_parsable).
  out['parsed'] = np.ones(records, bool)
  chunk = 1024
  for start in range(0, records, chunk):
    indices = range(start, min(records, start + chunk))
    for index, record in zip(indices, _parse_chunk(source, indices), strict=True):
      if isinstance(record, DataError):
        out['parsed'][index], out['family'][index] = False, schema.NO_FAMILY
        continue
      out['family'][index] = record['family']
      out['instance'][index] = record['instance']
      out['num_sketches'][index] = len(record['sketches'])
      out['num_texts'][index] = len(record['texts'])
  return out


def data_source(data, dataset_config: str, split: str) -> Split:
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
def _cached_split(label, path, split) -> Split:
  return Split(label, path, split)


# ------------------------------------------------------------------------------------ metadata


def dataset_configs(data) -> list:
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
  for dataset_config in dataset_configs(data):
    names += _config_categories(data, dataset_config)
  return names


@dataclasses.dataclass(frozen=True)
class Offsets:
  category: int
  ids: int  # added to instance and family ids


def config_offsets(data, dataset_config: str) -> Offsets:
  names = dataset_configs(data)
  if dataset_config not in names:
    raise DataError(f'Dataset configuration {dataset_config!r} is not in config.data.configs '
                    f'({", ".join(names)}).')
  position = names.index(dataset_config)
  category = sum(len(_config_categories(data, name)) for name in names[:position])
  return Offsets(category=category, ids=position * ID_STRIDE)


def ensure_built(data) -> None:
  """Builds every missing stbir_synth configuration of config.data.configs (prints progress);
  for prepared datasets, checks that they exist and raises naming the directory otherwise.

  Multi-host on a shared filesystem: build once beforehand (one process, or
  `python -m stbir_jax.data.stbir_synth`); every process calling this on missing data would
  build its own copy.
  """
  for dataset_config in dataset_configs(data):
    path = dataset_path(data, dataset_config)
    if os.path.isfile(os.path.join(path, 'dataset_info.json')):
      continue
    if not _is_synth(data):
      _check_exists(data, dataset_config, path)
    builder = _synth_builder(data, dataset_config)
    synthetic = _synthetic()
    spec = synthetic.SynthSpec.from_config(data)
    photos = sum(synthetic.num_instances(dataset_config, split, spec)
                 for split in synthetic.SPLITS)
    print(f'Building {SYNTH}/{builder.builder_config.name} ({photos:,} photos) into {path} ...',
          file=sys.stderr, flush=True)
    start = time.time()
    builder.download_and_prepare()
    print(f'Built {SYNTH}/{builder.builder_config.name} in {time.time() - start:.1f}s.',
          file=sys.stderr, flush=True)


def require_parsable(source: Split, meta: dict, hint: str = '') -> None:
  """Raises the parse error of the first record that does not parse (it names the record)."""
  bad = np.flatnonzero(~meta['parsed'])
  if len(bad):
    try:
      source.parse(int(bad[0]))
    except DataError as e:
      raise DataError(f'{e}{hint}') from e


def dataset_sizes(data, dataset_config: str, split: str) -> dict:
  """{'photos': gallery size, 'queries': number of eval queries} of one configuration/split."""
  source = data_source(data, dataset_config, split)
  meta = source.scan()
  require_parsable(source, meta)
  return {'photos': int(len(meta['instance'])),
          'queries': int(np.maximum(meta['num_sketches'], meta['num_texts']).sum())}
