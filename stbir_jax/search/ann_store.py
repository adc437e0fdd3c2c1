"""Approximate nearest-neighbour indexes on disk: built, resumed and loaded for searching.

The backends themselves, their parameters, search and recall tuning are in ann.py.

On disk, next to the embeddings (INDEX is a `python -m stbir_jax.search index` folder):

  INDEX/ann/<backend>/meta.json     backend, params, the chunks it holds [[number, rows]...],
                                    rows, recall estimate; written last (commits the index)
  INDEX/ann/<backend>/index.faiss   FAISS backends
  INDEX/ann/<backend>/scann/        ScaNN's serialised searcher

Building is resumable like the chunks: the FAISS indexes are trained once (on a sample of the
rows there are at that time) and then grow by `add_rows` rows at a time, each step committed;
a rerun after new photos were indexed adds only the new rows. A stored index whose chunks are
no longer a prefix of the index's (a chunk redone) is rebuilt. ScaNN has no committed partial
state: it is rebuilt whenever the rows changed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from stbir_jax.search import ann


def ann_dir(index_dir, backend: str) -> Path:
  return Path(index_dir) / 'ann' / backend


def read_meta(index_dir, backend: str) -> dict | None:
  path = ann_dir(index_dir, backend) / 'meta.json'
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise ann.AnnError(f'{path}: corrupt ({e}); delete {path.parent} to rebuild it') from None


def _write_json(path: Path, data: dict) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(json.dumps(data, indent=2))
  os.replace(tmp, path)


def _write_faiss(index, path: Path) -> None:
  faiss = ann.faiss_module()
  tmp = path.with_name(path.name + '.tmp')
  faiss.write_index(index, str(tmp))
  os.replace(tmp, path)


def _resumable(old, folder: Path, backend: str, chunks: list, overrides: dict | None) -> bool:
  """A stored FAISS index can grow: its chunks are a prefix of the index's, and no build
  parameter was asked to change."""
  if old is None or backend == 'scann' or not (folder / 'index.faiss').is_file():
    return False
  if old['chunks'] != chunks[:len(old['chunks'])]:
    return False
  return all(old['params'].get(key) == int(value) for key, value in (overrides or {}).items()
             if key not in ann.SEARCH_PARAMS)


def build(index_dir, backend: str, embeddings: np.ndarray, chunks: list, *,
          overrides: dict | None = None, add_rows: int = 1 << 18, progress=print) -> dict:
  """Builds or resumes INDEX/ann/<backend> over `embeddings`, the rows of `chunks`
  ([[number, rows], ...] in row order); returns its meta (with the recall estimate). An IVF-PQ
  index whose default codes stay short of the target is rebuilt with larger ones
  (ann.larger_code); meta['tried'] keeps each rejected m with the recall it reached."""
  meta = _build_once(index_dir, backend, embeddings, chunks, overrides, add_rows, progress)
  while (m := ann.larger_code(backend, embeddings.shape[1], meta['params'],
                              meta['recall']['recall'], overrides)) is not None:
    tried = [*meta.get('tried', []), {'m': meta['params']['m'],
                                      'recall': meta['recall']['recall']}]
    if progress:
      progress(f'{backend}: m={meta["params"]["m"]} bytes a row reach recall@10 '
               f'{meta["recall"]["recall"]:.3f} at best (target {ann.TUNE_RECALL}); '
               f'rebuilding with m={m}')
    meta = _build_once(index_dir, backend, embeddings, chunks, {**(overrides or {}), 'm': m},
                       add_rows, progress)
    meta['tried'] = tried
    _write_json(ann_dir(index_dir, backend) / 'meta.json', meta)
  return meta


def _build_once(index_dir, backend, embeddings, chunks, overrides, add_rows, progress) -> dict:
  n, d = embeddings.shape
  if n == 0:
    raise ann.AnnError(f'{index_dir}: no embeddings to build a {backend} index over')
  chunks = [[int(a), int(b)] for a, b in chunks]
  if sum(rows for _, rows in chunks) != n:
    raise ann.AnnError(f'{index_dir}: the chunks hold {sum(r for _, r in chunks)} rows, the '
                       f'embeddings {n}')
  folder = ann_dir(index_dir, backend)
  old = read_meta(index_dir, backend)
  start = time.perf_counter()
  if _resumable(old, folder, backend, chunks, overrides):
    # Build parameters stay those the index was trained with (nlist from the rows back then).
    params = ann.params_for(backend, n, d, {**old['params'], **(overrides or {})})
    if old['chunks'] == chunks and params == old['params']:
      return old
    key = old.get('tuned')
    if key and key not in (overrides or {}):
      params[key] = 0   # tuned for fewer rows: tune again
    index = ann.faiss_module().read_index(str(folder / 'index.faiss'))
    covered, meta = len(old['chunks']), old
  else:
    params = ann.params_for(backend, n, d, overrides)
    if (old is not None and old['chunks'] == chunks and old['params'] == params
        and (folder / 'scann').is_dir()):
      return old   # an up-to-date ScaNN index
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if backend == 'scann':   # built whole: no partial state to commit
      searcher = ann.build_scann(embeddings, params)
      return _commit(folder, backend, searcher, embeddings, params, chunks, None,
                     build_s=time.perf_counter() - start)
    index = ann.new_index(backend, ann.training_sample(embeddings, params), params)
    covered, meta = 0, None
  bounds = np.cumsum([0] + [rows for _, rows in chunks])
  if covered == len(chunks):   # new search parameters only: re-measure the recall
    return _commit(folder, backend, index, embeddings, params, chunks, meta)
  while covered < len(chunks):
    # Whole chunks, about add_rows rows at a time, each block committed: a rerun resumes there.
    stop = covered + 1
    while stop < len(chunks) and bounds[stop + 1] - bounds[covered] <= add_rows:
      stop += 1
    index.add(np.ascontiguousarray(embeddings[bounds[covered]:bounds[stop]], np.float32))
    covered = stop
    meta = _commit(folder, backend, index, embeddings[:bounds[covered]], params,
                   chunks[:covered], meta, build_s=time.perf_counter() - start,
                   measure=covered == len(chunks))
    start = time.perf_counter()
    if progress:
      progress(f'{backend}: {bounds[covered]}/{n} rows')
  return meta


def _commit(folder, backend, index, embeddings, params, chunks, old, *, build_s=0.0,
            measure=True) -> dict:
  """Writes the index, then its meta (which commits it); measures recall when asked."""
  ann.set_search_params(backend, index, params)
  if backend == 'scann':
    tmp = folder / 'scann.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    index.serialize(str(tmp), relative_path=True)   # the folder is renamed after
    shutil.rmtree(folder / 'scann', ignore_errors=True)
    os.replace(tmp, folder / 'scann')
  else:
    _write_faiss(index, folder / 'index.faiss')
  key = ann.TUNED[backend]
  tuned = key if params[key] == 0 else None
  if not measure:
    recall = (old or {}).get('recall')
  elif params[key] == 0:
    params, recall = ann.tune(backend, index, embeddings, params)
  else:
    recall = ann.estimate_recall(backend, index, embeddings, params)
  ann.set_search_params(backend, index, params)
  meta = {'backend': backend, 'params': params, 'chunks': chunks, 'rows': len(embeddings),
          'dim': int(embeddings.shape[1]), 'recall': recall, 'tuned': tuned,
          'build_s': round(float(build_s) + (old or {}).get('build_s', 0.0), 3),
          'tried': (old or {}).get('tried', [])}
  _write_json(folder / 'meta.json', meta)
  return meta


class AnnIndex:
  """A stored ANN index, loaded for searching: `search(queries, k, embeddings, exact)`."""

  def __init__(self, index_dir, backend: str, *, rows: int | None = None,
               overrides: dict | None = None):
    if backend not in ann.BACKENDS:
      raise ann.AnnError(f'ANN backend {backend!r}; valid: {", ".join(ann.BACKENDS)}')
    meta = read_meta(index_dir, backend)
    folder = ann_dir(index_dir, backend)
    if meta is None:
      raise ann.AnnError(f'{folder}: no {backend} index; build it with `python -m '
                         f'stbir_jax.search index ... --out={index_dir} --backend={backend}`')
    if rows is not None and meta['rows'] != rows:
      raise ann.AnnError(f'{folder} holds {meta["rows"]} rows but the index has {rows}; '
                         f'rerun `python -m stbir_jax.search index ... --backend={backend}` to '
                         'update it')
    unknown = set(overrides or {}) - ann.SEARCH_PARAMS
    if unknown:
      valid = ', '.join(sorted(ann.SEARCH_PARAMS & set(meta['params'])))
      raise ann.AnnError(f'--ann_params {sorted(unknown)}: only search parameters can change '
                         f'at query time ({valid})')
    self.backend, self.meta = backend, meta
    self.params = dict(meta['params'], **(overrides or {}))
    if backend == 'scann':
      self.index = ann.scann_ops().load_searcher(str(folder / 'scann'))
    else:
      self.index = ann.faiss_module().read_index(str(folder / 'index.faiss'))
    ann.set_search_params(backend, self.index, self.params)
    # Recall was measured with the stored parameters; other ones are not what it says.
    self.recall = meta.get('recall') if self.params == meta['params'] else None

  def search(self, queries, k: int, embeddings=None, exact: bool = False):
    return ann.search(self.backend, self.index, queries, k, self.params, embeddings=embeddings,
                  exact=exact)

  def describe(self) -> str:
    return describe_meta(dict(self.meta, params=self.params, recall=self.recall))


# What to change when tuning the search parameter alone cannot reach the target.
SHORT_OF_TARGET = {
    'ivf_flat': 'rebuild with fewer lists (--ann_params="nlist=...")',
    # Reached only where m was set by hand or d/2 bytes a row did not suffice: a build with the
    # default m grows it first (ann.larger_code).
    'ivf_pq': 're-rank deeper than the tuning tried (--ann_params="candidates=...") or, where '
              'm was set by hand, rebuild with more bytes a row (--ann_params="m=..."; without '
              'it the build tries up to d/2)',
    'hnsw': 'rebuild with more links (--ann_params="M=64,ef_construction=128")',
    'scann': 're-order more candidates (--ann_params="reorder=1000")',
}


def describe_meta(meta: dict) -> str:
  """'ivf_flat (nlist 316, nprobe 16): recall@10 0.981, measured on ...' for people."""
  shown = ', '.join(f'{key} {value}' for key, value in meta['params'].items())
  recall = meta.get('recall')
  if recall:
    text = (f'{meta["backend"]} ({shown}): recall@{recall["k"]} {recall["recall"]:.3f}, '
            f'measured on {recall["queries"]} indexed photos as queries (new queries miss up to '
            'about twice as many)')
    if meta.get('tuned') and recall['recall'] < ann.TUNE_RECALL:
      text += (f'; below the {ann.TUNE_RECALL} the tuning aims at even at its largest '
               f'{meta["tuned"]}: {SHORT_OF_TARGET[meta["backend"]]}')
    if meta.get('tried'):
      text += '; rebuilt with larger codes, as ' + ', '.join(
          f'm={t["m"]} reached {t["recall"]:.3f}' for t in meta['tried'])
    return text
  return f'{meta["backend"]} ({shown}): recall not measured for these parameters'
