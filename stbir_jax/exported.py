"""The light loader of an export written by `python -m stbir_jax.export` (stbir_jax/export.py
writes it; the layout is in its docstring).

`stbir_jax.load_exported(DIR)` returns an `ExportedModel` whose `encode_query`,
`encode_gallery` and `tokenize` need neither this package's training code nor its config
system: only jax, numpy, safetensors and transformers' tokenizer. This module imports nothing
else of stbir_jax, so that stays true.
"""

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import numpy as np
from jax import export as jax_export
from safetensors.numpy import load_file

# What every export holds (and the writer lists in manifest.json, with 'tokenizer/').
FILES = ('config.json', 'params.safetensors', 'encode_query.jax', 'encode_gallery.jax',
         'manifest.json')


class ExportError(RuntimeError):
  pass


@dataclasses.dataclass
class ExportedModel:
  """Embedding functions of an exported STBIR model (inputs as in stbir_jax.data.pipeline)."""
  resolution: int
  max_text_len: int
  embed_dim: int
  params: dict
  _query: Callable
  _gallery: Callable
  _tokenizer: object

  def encode_query(self, sketch, text_ids, text_mask, has_sketch, has_text):
    """sketch uint8 (B,R,R) stroke map; text ids/mask int32 (B,L); flags bool (B,) -> (B,D)."""
    return self._query(self.params, sketch, text_ids, text_mask, has_sketch, has_text)

  def encode_gallery(self, image):
    """image uint8 (B,R,R,3) -> (B,D) unit-norm embeddings."""
    return self._gallery(self.params, image)

  def tokenize(self, texts):
    """list of str -> (ids int32 (N,L), mask int32 (N,L))."""
    enc = self._tokenizer(list(texts), max_length=self.max_text_len, padding='max_length',
                          truncation=True, return_tensors='np')
    return enc['input_ids'].astype(np.int32), enc['attention_mask'].astype(np.int32)


def _unflatten(flat: dict) -> dict:
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _read_function(path):
  with open(path, 'rb') as f:
    return jax_export.deserialize(bytearray(f.read()))


def load_exported(directory: str) -> ExportedModel:
  """Loads an export directory; a missing or corrupt file raises ExportError naming it."""
  for name in FILES:
    if not os.path.exists(os.path.join(directory, name)):
      raise ExportError(f'{os.path.join(directory, name)} is missing; is {directory} a '
                        'directory written by `python -m stbir_jax.export`?')

  def read(name, loader):
    path = os.path.join(directory, name)
    try:
      return loader(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ExportError(f'{path} is corrupt or unreadable: {type(e).__name__}: {e}') from e

  manifest = read('manifest.json', _read_json)
  params = read('params.safetensors', load_file)
  params = jax.tree.map(jax.numpy.asarray, _unflatten(params))
  query = read('encode_query.jax', _read_function)
  gallery = read('encode_gallery.jax', _read_function)
  tokenizer = None
  if 'tokenizer/' in manifest.get('files', ()) and not os.path.isdir(
      os.path.join(directory, 'tokenizer')):
    # Otherwise the first tokenize() would fail with "'NoneType' object is not callable".
    raise ExportError(f'{os.path.join(directory, "tokenizer")} is missing; the export lists it in '
                      'manifest.json. Re-export the run.')
  if os.path.isdir(os.path.join(directory, 'tokenizer')):
    # Imported here: transformers takes seconds to import, and exports without text need none.
    from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
    tokenizer = read('tokenizer', AutoTokenizer.from_pretrained)
  return ExportedModel(
      resolution=manifest['resolution'], max_text_len=manifest['max_text_len'],
      embed_dim=manifest['embed_dim'], params=params, _query=jax.jit(query.call),
      _gallery=jax.jit(gallery.call), _tokenizer=tokenizer)
