"""Prepared (real) datasets on disk: write them once, read them as random-access sources.

A prepared dataset lives in `DATA_DIR/NAME/1.0.0/` as a TFDS dataset with array_record files
and the features of schema.py; `DATA_DIR/NAME/validation_report.json` sits next to it.
The input pipeline reads it only through `data_source` and `info`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from stbir_jax.data import schema

VERSION = '1.0.0'
REPORT_FILE = 'validation_report.json'


def resolve_data_dir(data_dir) -> Path:
  """'' means $TFDS_DATA_DIR, else ~/tensorflow_datasets (as configs/base.py says)."""
  if not data_dir:
    data_dir = os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')
  return Path(data_dir)


def dataset_dir(data_dir, name: str) -> Path:
  return resolve_data_dir(data_dir) / name / VERSION


def _builder(data_dir, name):
  path = dataset_dir(data_dir, name)
  if not (path / 'dataset_info.json').is_file():
    raise FileNotFoundError(
        f'No prepared dataset {name!r} in {path} (dataset_info.json missing). Create it with: '
        f'python -m stbir_jax.data.prepare --format={name} --src=SOURCE_DIR '
        f'--out={resolve_data_dir(data_dir)}   (formats: see docs/datasets.md)')
  return tfds.builder_from_directory(str(path))


def info(data_dir, name: str) -> dict:
  """dict(category_names=[...], resolution=R, splits={split: num_examples})."""
  b = _builder(data_dir, name)
  feats = b.info.features
  return dict(category_names=list(feats['category'].names),
              resolution=int(feats['image'].shape[0]),
              splits={s: int(v.num_examples) for s, v in b.info.splits.items()})


class PreparedSource:
  """Random access to one split: `len()` and `[i]` -> decoded numpy dict (schema keys).

  `sketches` is always uint8 (S, R, R, 1) (S may be 0) and `texts` a list of bytes. Pickles
  as its location only, so Grain worker processes reopen the files themselves.
  """

  def __init__(self, data_dir, name, split):
    self._args = (str(resolve_data_dir(data_dir)), name, split)
    self._source = None
    self._resolution = None
    self._open()

  def _open(self):
    data_dir, name, split = self._args
    b = _builder(data_dir, name)
    if split not in b.info.splits:
      raise ValueError(f'Dataset {name!r} in {dataset_dir(data_dir, name)} has no split '
                       f'{split!r}; valid splits: {", ".join(sorted(b.info.splits))}')
    self._resolution = int(b.info.features['image'].shape[0])
    self._source = b.as_data_source(split=split)

  def __getstate__(self):
    return {'_args': self._args}

  def __setstate__(self, state):
    self._args = state['_args']
    self._open()

  def __len__(self):
    return len(self._source)

  def _fix(self, record):
    r = self._resolution
    sk = record['sketches']
    if isinstance(sk, np.ndarray) and sk.ndim == 4:
      record['sketches'] = sk.astype(np.uint8)
    elif len(sk):
      record['sketches'] = np.stack([np.asarray(s, np.uint8) for s in sk])
    else:
      record['sketches'] = np.zeros((0, r, r, 1), np.uint8)
    record['texts'] = list(record['texts'])
    return record

  def __getitem__(self, index):
    return self._fix(self._source[index])

  def __getitems__(self, indices):
    return [self._fix(r) for r in self._source.__getitems__(indices)]

  def __repr__(self):
    data_dir, name, split = self._args
    return f'PreparedSource(data_dir={data_dir!r}, name={name!r}, split={split!r})'


def data_source(data_dir, name: str, split: str) -> PreparedSource:
  """The random-access source of `split` of the prepared dataset `name` under `data_dir`."""
  return PreparedSource(data_dir, name, split)


class _Builder(tfds.dataset_builders.AdhocBuilder, skip_registration=True):
  """AdhocBuilder that does not look for its source file.

  TFDS's `code_path` probes `importlib_resources`, which this environment lacks; the path only
  serves to find a checksums file, which prepared datasets do not have.
  """

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls):
    return None


def write(data_dir, name: str, resolution: int, category_names, splits, *, overwrite=False,
          report=None):
  """Writes {split: iterable of (key, example)} as DATA_DIR/NAME/1.0.0 (array_record), and
  `report(final path)` (a JSON-able dict, read once every example is written) as REPORT_FILE.

  The dataset is built in a hidden sibling folder, DATA_DIR/.NAME.incomplete-PID, and moved to
  DATA_DIR/NAME only once complete, so a build that fails (a bad source, a full disk, Ctrl-C)
  leaves an existing dataset and its report as they were, and never a half-written one.
  """
  root = resolve_data_dir(data_dir)
  final = root / name
  path = dataset_dir(root, name)
  if path.exists() and not overwrite:
    raise FileExistsError(f'{path} already exists; pass --overwrite to replace it')
  root.mkdir(parents=True, exist_ok=True)
  building = root / f'.{name}.incomplete-{os.getpid()}'
  shutil.rmtree(building, ignore_errors=True)
  try:
    builder = _Builder(
        name=name, version=VERSION, features=schema.features(resolution, category_names),
        split_datasets=splits, data_dir=str(building),
        description=f'{name} prepared by stbir_jax.data.prepare (see docs/datasets.md)')
    builder.download_and_prepare(file_format='array_record')
    if report is not None:
      (building / name / REPORT_FILE).write_text(json.dumps(report(path), indent=2))
    _swap_in(building / name, final)
  finally:
    shutil.rmtree(building, ignore_errors=True)
  return path


def _swap_in(new: Path, final: Path) -> None:
  """Replaces the folder `final` by `new` (same file system): the old one is renamed aside
  first and deleted only after the new one is in place."""
  old = final.parent / f'.{final.name}.replaced-{os.getpid()}'
  if final.exists():
    shutil.rmtree(old, ignore_errors=True)
    final.rename(old)
  try:
    new.rename(final)
  except BaseException:
    if old.exists() and not final.exists():
      old.rename(final)  # put the previous dataset back
    raise
  shutil.rmtree(old, ignore_errors=True)
