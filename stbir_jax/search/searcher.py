"""The searcher: an index plus the exported model that built it. `Searcher.search(sketch, text,
k)` encodes the query and ranks the gallery with the exact top-k (stbir_jax/retrieval.py: JAX or
FAISS) or an approximate index (stbir_jax/search/ann_store.py), by its
`backend`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from stbir_jax import exported, query_modes, retrieval
from stbir_jax.search import ann, ann_store
from stbir_jax.search.index import Index, load_index
from stbir_jax.search.inputs import SearchError, check_fit, check_k, check_text, sketch_map

# 'auto': whatever the query gives; or one of the query modes, forced.
MODES = ('auto',) + query_modes.MODES
# Exact top-k (stbir_jax.retrieval) or an approximate index built by `index --backend=...`.
BACKENDS = retrieval.BACKENDS + ann.BACKENDS


@dataclasses.dataclass
class Result:
  rank: int
  path: str
  score: float


class Searcher:
  """An index plus the exported model that built it; `search(sketch, text, k)`."""

  def __init__(self, index, model=None, *, backend: str = 'jax', fit: str = 'ink',
               exact: bool = False, ann_params: dict | None = None):
    self.index = index if isinstance(index, Index) else load_index(index)
    if backend not in BACKENDS:
      raise SearchError(f'--backend {backend!r}; valid backends: {", ".join(BACKENDS)}')
    self.backend = backend
    self.exact = exact   # ANN backends: re-rank the candidates with the exact scores
    self.ann = None
    if backend in ann.BACKENDS:
      try:
        self.ann = ann_store.AnnIndex(self.index.directory, backend, rows=len(self.index),
                                      overrides=ann_params)
      except (ann.AnnError, retrieval.RetrievalError) as e:
        raise SearchError(str(e)) from None
    self.fit = check_fit(fit)  # how a drawn or uploaded sketch is placed in the frame (sketch_map)
    if model is None or isinstance(model, (str, os.PathLike)):
      model_dir = model or self.index.meta['model']
      try:
        model = exported.load_exported(model_dir)
      except Exception as e:  # pylint: disable=broad-except
        raise SearchError(f'model {model_dir} of index {self.index.directory}: {e}') from e
    self.model = model
    if model.embed_dim != self.index.meta['embed_dim']:
      raise SearchError(f'model embeds in {model.embed_dim} dimensions but index '
                        f'{self.index.directory} holds {self.index.meta["embed_dim"]}')

  @property
  def resolution(self) -> int:
    return self.model.resolution

  def describe_backend(self) -> str:
    """What ranks the photos, and how well (for the CLI and the demo)."""
    if self.ann is None:
      return f'exact search ({self.backend}): recall 1'
    return self.ann.describe() + ('; re-ranked exactly' if self.exact else '')

  def encode(self, sketch=None, text: str = '', mode: str = 'auto'):
    """-> (query (1, D) float32, stroke map or None, text used)."""
    if mode not in MODES:
      raise SearchError(f'mode {mode!r}; valid modes: {", ".join(MODES)}')
    text = check_text(text or '').strip()
    r = self.model.resolution
    smap = sketch_map(sketch, r, self.fit) if sketch is not None else None
    if smap is not None and not smap.any():
      smap = None  # a blank page is no sketch
    if mode in ('sketch', 'sketch+text') and smap is None:
      raise SearchError(f'mode {mode!r} needs a sketch: draw or upload one (it was empty or '
                        'missing)')
    if mode in ('text', 'sketch+text') and not text:
      raise SearchError(f'mode {mode!r} needs a text description')
    use_sketch = smap is not None and mode in ('auto', 'sketch', 'sketch+text')
    use_text = bool(text) and mode in ('auto', 'text', 'sketch+text')
    if not use_sketch and not use_text:
      raise SearchError('empty query: give a sketch, a text, or both')
    ids, mask = self.model.tokenize([text if use_text else ''])
    q = self.model.encode_query(
        (smap if use_sketch else np.zeros((r, r), np.uint8))[None], ids, mask,
        np.array([use_sketch]), np.array([use_text]))
    return (np.asarray(q, np.float32), smap if use_sketch else None,
            text if use_text else '')

  def search(self, sketch=None, text: str = '', k: int = 10, mode: str = 'auto'):
    """-> (results best first, stroke map used or None, text used)."""
    k = check_k(k)
    if not len(self.index):
      raise SearchError(f'index {self.index.directory} is empty')
    q, smap, text = self.encode(sketch, text, mode)
    try:
      if self.ann is not None:
        scores, idx = self.ann.search(q, min(k, len(self.index)), self.index.embeddings,
                                      exact=self.exact)
      else:
        scores, idx = retrieval.top_k(q, self.index.embeddings, k, backend=self.backend)
    except (retrieval.RetrievalError, ann.AnnError) as e:
      raise SearchError(str(e)) from None
    # An ANN may find fewer than k (id -1).
    found = [(i, s) for i, s in zip(idx[0], scores[0], strict=True) if i >= 0]
    results = [Result(r + 1, self.index.paths[i], float(s)) for r, (i, s) in enumerate(found)]
    return results, smap, text
