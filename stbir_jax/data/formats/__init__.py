"""Readers of real sketch/photo/text datasets, one module per on-disk format.

A reader is `read(src: Path, report: Report, options: Options) -> (items, category_names)`; it
only lists files and pairs them (photo, its sketches, texts, category, split). Decoding and
writing happen in stbir_jax/data/prepare.py. docs/datasets.md describes every layout.
"""

from stbir_jax.data import names
from stbir_jax.data.formats import fscoco, manifest, qmul, sketchy, stbir_demo
from stbir_jax.data.formats.common import Item, Options, PrepareError, Report, SketchRef

# One reader per real dataset of names.REAL_DATASETS, plus STBIR_demo's own JSONL files.
READERS = {
    names.SHOEV2: qmul.read_shoev2,
    names.CHAIRV2: qmul.read_chairv2,
    names.SKETCHY: sketchy.read,
    names.FSCOCO: fscoco.read,
    names.MANIFEST: manifest.read,
    'stbir_demo': stbir_demo.read,
}
FORMATS = tuple(READERS)


def get(name: str):
  """The reader of format `name`; the error lists the valid names."""
  if name not in READERS:
    raise PrepareError(f'Unknown format {name!r}; valid formats: {", ".join(FORMATS)}')
  return READERS[name]


__all__ = ['FORMATS', 'Item', 'Options', 'PrepareError', 'READERS', 'Report', 'SketchRef', 'get']
