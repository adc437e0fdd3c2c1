"""A stored record -> one example of a batch, and the batch map that tokenizes its texts.

`decode_example` decodes the photo and the chosen sketch (PNG, checked against the resolution),
picks the chosen text, and offsets category, instance and family ids into the global vocabulary
of config.data.configs (datasets.Offsets); its errors name the record. `element_hash` is the
deterministic per-element hash the train stream draws the sketch/text choices from, and
`Tokenize` the Grain batch map of the text strings to text_ids/text_mask.
"""

from __future__ import annotations

import numpy as np

from stbir_jax.data import schema
from stbir_jax.data import tokenizer as tokenizer_lib
from stbir_jax.data.datasets import ID_STRIDE, DataError, Offsets, Split

_MASK64 = (1 << 64) - 1


def _decode_png(data: bytes, shape) -> np.ndarray:
  import io  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top
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


def element_hash(*values: int) -> int:
  """A deterministic 64-bit hash of integers (per-element random choices, no RNG state)."""
  state = 0
  for value in values:
    state = _splitmix64(state ^ (int(value) & _MASK64))
  return state


def decode_example(source: Split, index: int, offsets: Offsets, resolution: int,
                   sketch_choice: int, text_choice: int, with_image: bool = True) -> dict:
  """One example; sketch_choice/text_choice index the record's lists (mod len), -1 = none."""
  size = resolution
  record = source.parse(index)
  try:
    image = _decode_png(record['image'], (size, size, 3)) if with_image else None
    sketches, texts = record['sketches'], record['texts']
    has_sketch = len(sketches) > 0 and sketch_choice >= 0
    sketch = (_decode_png(sketches[sketch_choice % len(sketches)], (size, size, 1))[..., 0]
              if has_sketch else np.zeros((size, size), np.uint8))
    has_text = len(texts) > 0 and text_choice >= 0
    text = _text(texts[text_choice % len(texts)]) if has_text else ''
    if has_text and not text.strip():  # a text query of nothing: corrupt, not a missing text
      raise DataError(f'text {text_choice % len(texts)} is empty')
    instance, family = int(record['instance']), int(record['family'])
    if not 0 <= instance < ID_STRIDE or not -1 <= family < ID_STRIDE:
      raise DataError(f'instance {instance} / family {family} outside [0, {ID_STRIDE}) '
                      f'(family may be {schema.NO_FAMILY} for "none")')
    return dict(
        image=image, sketch=sketch, text=text,
        has_sketch=np.bool_(has_sketch), has_text=np.bool_(has_text),
        category=np.int32(int(record['category']) + offsets.category),
        instance=np.int32(instance + offsets.ids),
        family=np.int32(family + offsets.ids if family != schema.NO_FAMILY else family))
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'{source.where(index)} failed to decode: {type(e).__name__}: {e}') from e


class Tokenize:
  """Batch map: the `text` strings -> text_ids/text_mask (zeros where has_text is False)."""

  def __init__(self, tokenizer_name: str, max_len: int):
    self.tokenizer_name, self.max_len = tokenizer_name, int(max_len)
    tokenizer_lib.get_tokenizer(tokenizer_name)  # load now: fail early, not in a worker

  def __call__(self, batch: dict) -> dict:
    batch = dict(batch)
    texts = [str(text) for text in batch.pop('text')]
    ids, mask = tokenizer_lib.get_tokenizer(self.tokenizer_name).encode(texts, self.max_len)
    keep = np.asarray(batch['has_text'], bool)[:, None]
    batch['text_ids'] = np.where(keep, ids, 0).astype(np.int32)
    batch['text_mask'] = np.where(keep, mask, 0).astype(np.int32)
    return batch
