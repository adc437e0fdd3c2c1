"""Readers of real sketch/photo/text datasets, one module per on-disk format.

A reader is `read(src: Path, report: Report, options: Options) -> (items, category_names)`; it
only lists files and pairs them (photo, its sketches, texts, category, split). Decoding and
writing happen in stbir_jax/data/prepare.py. docs/datasets.md describes every layout.
"""

from stbir_jax.data.formats import fscoco, manifest, qmul, sketchy, stbir_demo
from stbir_jax.data.formats.common import Item, Options, PrepareError, Report, SketchRef

READERS = {
    'shoev2': qmul.read_shoev2,
    'chairv2': qmul.read_chairv2,
    'sketchy': sketchy.read,
    'fscoco': fscoco.read,
    'manifest': manifest.read,
    'stbir_demo': stbir_demo.read,
}
FORMATS = tuple(READERS)


def get(name: str):
  """The reader of format `name`; the error lists the valid names."""
  if name not in READERS:
    raise PrepareError(f'Unknown format {name!r}; valid formats: {", ".join(FORMATS)}')
  return READERS[name]


__all__ = ['FORMATS', 'Item', 'Options', 'PrepareError', 'READERS', 'Report', 'SketchRef', 'get']
