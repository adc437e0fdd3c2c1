r"""Search your own photos with a sketch, a text, or both, using an exported model.

  python -m stbir_jax.search index --model=EXPORT --images=PHOTOS --out=INDEX
  python -m stbir_jax.search query --index=INDEX --sketch=shoe.png --text="red suede" -k 10 \
      --out=results.png            # or results.html; --backend=faiss for very large galleries

`index` embeds every image under PHOTOS (recursively) with the exported photo encoder. Photos
are resized exactly like the prepared datasets (aspect kept, padded to a white square:
stbir_jax.data.prepare.load_photo). It works in chunks: each chunk's embeddings and file names
are committed to INDEX/chunks/ before the next starts, so an interrupted run (or a rerun after
new photos were added) continues where it stopped. Files that are not images or cannot be
decoded are skipped, never fatal, and listed in INDEX/report.json.

INDEX layout:
  index.json              model directory, resolution, embedding size, images root
  chunks/NNNNNN.npy       float32 (n, D) embeddings of one chunk
  chunks/NNNNNN.json      {"paths": [...], "skipped": [{"file", "error"}]}; written last, so a
                          chunk without its .json is ignored (and redone)
  done.txt                every file handled so far, one a line (indexed or skipped)
  report.json             counts and the skipped files with the reason
  ann/<backend>/          an approximate index (stbir_jax/ann.py) from `index --backend=...`,
                          used by `query --backend=...` (docs/usage.md: which backend when)

`query` encodes the sketch (raster of any size and polarity, or SVG / stroke JSON: see
stbir_jax/data/sketch_io.py) and/or the text, ranks the gallery by cosine similarity (exact
top-k in JAX, or FAISS) and prints the ranked paths; `--out` writes a picture grid (.png) or a
page (.html) with the query and the top k.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import html
import io
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from stbir_jax import ann, image_safety, retrieval
from stbir_jax.data import sketch_io

INDEX_FORMAT = 1
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
MODES = ('auto', 'sketch', 'text', 'sketch+text')
# Exact top-k (stbir_jax.retrieval) or an approximate index built by `index --backend=...`.
BACKENDS = retrieval.BACKENDS + ann.BACKENDS


class SearchError(ValueError):
  """A bad index, model, query or file; the message names it and what was expected."""


# ------------------------------------------------------------------------------------ inputs


def load_gallery_image(path, resolution: int) -> np.ndarray:
  """A photo file -> uint8 (R, R, 3), resized like the prepared datasets. Raises SearchError."""
  from stbir_jax.data import prepare  # pylint: disable=g-import-not-at-top
  try:
    with image_safety.open_image(path):  # larger images are refused, not decoded
      pass
    return prepare.load_photo(path, resolution)
  except image_safety.ImageError as e:
    raise SearchError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types (OSError, DecompressionBombError, ValueError, SyntaxError...).
    raise SearchError(f'{path}: not a readable image: {type(e).__name__}: {e}') from None


def check_text(text: str, name: str = 'text') -> str:
  """`text` if it can be encoded as UTF-8 (the tokenizer's input), else a SearchError naming
  `name`: a command-line argument in another encoding reaches Python as lone surrogates."""
  if not isinstance(text, str):
    raise SearchError(f'{name}: expected a str, got {type(text).__name__}')
  try:
    text.encode('utf-8')
  except UnicodeEncodeError as e:
    bad = text[e.start]
    what = (f'byte 0x{ord(bad) - 0xDC00:02x}' if 0xDC80 <= ord(bad) <= 0xDCFF else
            f'character U+{ord(bad):04X}')
    raise SearchError(f'{name}: not valid UTF-8 ({what} at position {e.start}); give the '
                      'description in UTF-8 (e.g. set a UTF-8 locale, LANG=C.UTF-8)') from None
  return text


def check_k(k, name: str = 'k') -> int:
  """The number of results: a whole number >= 1, else a SearchError naming `name`."""
  if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
    raise SearchError(f'{name}={k!r}: the number of results must be a whole number >= 1')
  return int(k)


def _check_fit(fit: str) -> str:
  if fit not in sketch_io.FITS:
    raise SearchError(f'--fit {fit!r}; valid: {", ".join(sketch_io.FITS)}')
  return fit


def sketch_map(sketch, resolution: int, fit: str = 'ink') -> np.ndarray:
  """A user's sketch -> uint8 (R, R) stroke-order map.

  `sketch`: a file path (PNG/JPG/... raster of any size, dark on light or the reverse or ink on
  transparent, anti-aliased; or SVG / stroke JSON / .npy strokes), a PIL image, or an (R, R)
  / (R, R, 1) stroke map already at the model's resolution. `fit`: 'ink' scales the drawing to
  fill the frame; 'canvas' keeps where it is on its page, for a sketch drawn in the photo's frame
  and a model whose embedding keeps the layout (pool='flatten', e.g. configs/base.py:demo).
  """
  _check_fit(fit)
  if isinstance(sketch, Image.Image):
    try:
      image_safety.check_pixels(sketch, 'sketch', image_safety.MAX_SKETCH_PIXELS)
    except image_safety.ImageError as e:
      raise SearchError(str(e)) from None
    return sketch_io.render_raster(sketch, resolution, fit=fit)[..., 0]
  if isinstance(sketch, np.ndarray):
    m = sketch[..., 0] if sketch.ndim == 3 and sketch.shape[-1] == 1 else sketch
    if m.shape != (resolution, resolution) or m.dtype != np.uint8:
      raise SearchError(f'sketch array: expected a uint8 ({resolution}, {resolution}) stroke '
                        f'map, got {m.dtype} {m.shape}; pass a file or a PIL image instead')
    return m
  path = Path(sketch)
  if not path.is_file():
    raise SearchError(f'--sketch {path}: no such file')
  try:  # a raster's size is checked from its header, before it is decoded
    return sketch_io.load_sketch(path, resolution, fit=fit)[..., 0]
  except sketch_io.SketchError as e:
    raise SearchError(str(e)) from None


# ------------------------------------------------------------------------------------ index


def _model_fingerprint(model_dir: str) -> str:
  """Identifies an export without hashing its parameters: manifest + parameter file size."""
  h = hashlib.sha1()
  h.update(Path(model_dir, 'manifest.json').read_bytes())
  h.update(str(os.path.getsize(Path(model_dir, 'params.safetensors'))).encode())
  return h.hexdigest()


def list_files(root: Path, exclude: Path | None = None) -> list[Path]:
  """Every regular file under root, sorted (the index's own folder excluded)."""
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    if exclude is not None:
      dirnames[:] = [d for d in dirnames
                     if (Path(dirpath) / d).resolve() != exclude.resolve()]
    out.extend(Path(dirpath) / f for f in sorted(filenames))
  return out


def _encode_images(model, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Embeds (n, R, R, 3) images in fixed-size batches (the last one padded): one compile."""
  out = []
  for start in range(0, len(images), batch_size):
    part = images[start:start + batch_size]
    n = len(part)
    if n < batch_size:
      part = np.concatenate([part, np.zeros((batch_size - n,) + part.shape[1:], np.uint8)])
    out.append(np.asarray(model.encode_gallery(part))[:n])
  d = getattr(model, 'embed_dim', 0)
  return np.concatenate(out).astype(np.float32) if out else np.zeros((0, d), np.float32)


def _read_chunks(index_dir: Path):
  """Committed chunks in order: [(number, paths, skipped)]."""
  chunks = []
  folder = index_dir / 'chunks'
  if not folder.is_dir():
    return chunks
  for meta in sorted(folder.glob('*.json')):
    if not meta.stem.isdigit():
      continue
    try:
      d = json.loads(meta.read_text())
      paths, skipped = list(d['paths']), list(d['skipped'])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise SearchError(f'{meta}: corrupt chunk record ({e}); delete it and its .npy to redo '
                        'that chunk') from None
    chunks.append((int(meta.stem), paths, skipped))
  return chunks


def _atomic_write(path: Path, data: bytes) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_bytes(data)
  os.replace(tmp, path)


def build_index(model_dir, images, out, *, batch_size: int = 32, chunk_size: int = 512,
                progress: bool = True, model=None) -> dict:
  """Indexes every image under `images` into `out` (resuming); returns the report dict."""
  import stbir_jax  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  model_dir = os.path.abspath(model_dir)
  root = Path(images).expanduser().resolve()
  out = Path(out).expanduser().resolve()
  if not root.is_dir():
    raise SearchError(f'--images {root}: no such directory; expected a folder of photos')
  if model is None:
    try:
      model = stbir_jax.load_exported(model_dir)
    except Exception as e:  # ExportError and friends: say which flag was wrong
      raise SearchError(f'--model {model_dir}: {e}') from e
  out.mkdir(parents=True, exist_ok=True)
  (out / 'chunks').mkdir(exist_ok=True)

  meta = dict(format=INDEX_FORMAT, model=model_dir, model_fingerprint=_model_fingerprint(model_dir),
              resolution=model.resolution, embed_dim=model.embed_dim, images=str(root))
  meta_path = out / 'index.json'
  if meta_path.exists():
    old = json.loads(meta_path.read_text())
    for key in ('model_fingerprint', 'images', 'resolution', 'embed_dim'):
      if old.get(key) != meta[key]:
        raise SearchError(f'{out} is an index of {key}={old.get(key)!r}, not {meta[key]!r}; '
                          'use another --out (or delete it) to index with this model/folder')
  _atomic_write(meta_path, json.dumps(meta, indent=2).encode())

  chunks = _read_chunks(out)
  done = {p for _, paths, _ in chunks for p in paths}
  done |= {s['file'] for _, _, skipped in chunks for s in skipped}
  files = list_files(root, exclude=out)
  todo = [f for f in files if str(f.relative_to(root)) not in done]
  number = (chunks[-1][0] + 1) if chunks else 0

  bar = tqdm(total=len(files), initial=len(files) - len(todo), unit='img', desc='index',
             disable=not progress, dynamic_ncols=True)
  try:
    for start in range(0, len(todo), chunk_size):
      part = todo[start:start + chunk_size]
      images, paths, skipped = [], [], []
      for f in part:
        rel = str(f.relative_to(root))
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
          skipped.append(dict(file=rel, error=f'not an image (extension {f.suffix or "none"!r})'))
        else:
          try:
            images.append(load_gallery_image(f, model.resolution))
            paths.append(rel)
          except SearchError as e:
            skipped.append(dict(file=rel, error=str(e).replace(str(f) + ': ', '')))
        bar.update(1)
      stack = (np.stack(images) if images else
               np.zeros((0, model.resolution, model.resolution, 3), np.uint8))
      emb = _encode_images(model, stack, batch_size)
      buf = io.BytesIO()
      np.save(buf, emb)
      _atomic_write(out / 'chunks' / f'{number:06d}.npy', buf.getvalue())
      # The .json commits the chunk: written after its embeddings.
      _atomic_write(out / 'chunks' / f'{number:06d}.json',
                    json.dumps(dict(paths=paths, skipped=skipped)).encode())
      with open(out / 'done.txt', 'a') as fh:
        fh.writelines(p + '\n' for p in paths + [s['file'] for s in skipped])
      number += 1
  finally:
    bar.close()
    report = _write_report(out, root)
  return report


def _write_report(out: Path, root: Path) -> dict:
  chunks = _read_chunks(out)
  skipped = [s for _, _, sk in chunks for s in sk]
  report = dict(images=str(root), indexed=sum(len(p) for _, p, _ in chunks),
                skipped_count=len(skipped), skipped=skipped, chunks=len(chunks))
  _atomic_write(out / 'report.json', json.dumps(report, indent=2).encode())
  return report


@dataclasses.dataclass
class Index:
  """A loaded index: `paths[i]` (absolute) has unit-norm embedding `embeddings[i]`."""
  directory: Path
  meta: dict
  paths: list
  embeddings: np.ndarray

  def __len__(self):
    return len(self.paths)


def load_index(directory) -> Index:
  directory = Path(directory).expanduser().resolve()
  meta_path = directory / 'index.json'
  if not meta_path.is_file():
    raise SearchError(f'--index {directory}: no index.json; build one with '
                      '`python -m stbir_jax.search index --model=EXPORT --images=DIR --out=INDEX`')
  try:
    meta = json.loads(meta_path.read_text())
  except ValueError as e:
    raise SearchError(f'{meta_path}: corrupt ({e})') from None
  root = Path(meta['images'])
  paths, embs = [], []
  for number, chunk_paths, _ in _read_chunks(directory):
    npy = directory / 'chunks' / f'{number:06d}.npy'
    try:
      e = np.load(npy)
    except (OSError, ValueError) as err:
      raise SearchError(f'{npy}: unreadable embeddings ({err}); delete it and its .json and '
                        'rerun `index` to redo that chunk') from None
    if len(e) != len(chunk_paths):
      raise SearchError(f'{npy}: {len(e)} embeddings for {len(chunk_paths)} paths')
    paths += [str(root / p) for p in chunk_paths]
    embs.append(e.reshape(len(e), meta['embed_dim']))
  emb = np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, meta['embed_dim']),
                                                                        np.float32)
  return Index(directory, meta, paths, emb)


def build_ann(directory, backend: str, overrides: dict | None = None, progress=print) -> dict:
  """Builds (or resumes, or updates with new chunks) INDEX/ann/<backend>; returns its meta."""
  index = load_index(directory)
  chunks = [[number, len(paths)] for number, paths, _ in _read_chunks(index.directory)]
  try:
    return ann.build(index.directory, backend, index.embeddings, chunks, overrides=overrides,
                     progress=progress)
  except (ann.AnnError, retrieval.RetrievalError) as e:
    raise SearchError(str(e)) from None


# ------------------------------------------------------------------------------------ query


@dataclasses.dataclass
class Result:
  rank: int
  path: str
  score: float


class Searcher:
  """An index plus the exported model that built it; `search(sketch, text, k)`."""

  def __init__(self, index, model=None, *, backend: str = 'jax', fit: str = 'ink',
               exact: bool = False, ann_params: dict | None = None):
    import stbir_jax  # pylint: disable=g-import-not-at-top
    self.index = index if isinstance(index, Index) else load_index(index)
    if backend not in BACKENDS:
      raise SearchError(f'--backend {backend!r}; valid backends: {", ".join(BACKENDS)}')
    self.backend = backend
    self.exact = exact   # ANN backends: re-rank the candidates with the exact scores
    self.ann = None
    if backend in ann.BACKENDS:
      try:
        self.ann = ann.AnnIndex(self.index.directory, backend, rows=len(self.index),
                                overrides=ann_params)
      except (ann.AnnError, retrieval.RetrievalError) as e:
        raise SearchError(str(e)) from None
    self.fit = _check_fit(fit)  # how a drawn or uploaded sketch is placed in the frame (sketch_map)
    if model is None or isinstance(model, (str, os.PathLike)):
      model_dir = model or self.index.meta['model']
      try:
        model = stbir_jax.load_exported(model_dir)
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
    found = [(i, s) for i, s in zip(idx[0], scores[0]) if i >= 0]   # an ANN may find fewer
    results = [Result(r + 1, self.index.paths[i], float(s)) for r, (i, s) in enumerate(found)]
    return results, smap, text


# ------------------------------------------------------------------------------------ output


def sketch_preview(smap, size: int) -> Image.Image:
  """A stroke map drawn dark on white at `size` pixels (for grids and the demo)."""
  img = Image.fromarray(np.where(smap > 0, 0, 255).astype(np.uint8))
  return img.resize((size, size), Image.Resampling.NEAREST).convert('RGB')


def _font(size):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1
    return ImageFont.load_default()


def _thumb(path, size):
  try:
    with Image.open(path) as im:
      im = ImageOps.contain(im.convert('RGB'), (size, size))  # small photos are enlarged
      canvas = Image.new('RGB', (size, size), 'white')
      canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
      return canvas
  except Exception:  # pylint: disable=broad-except
    canvas = Image.new('RGB', (size, size), (230, 230, 230))
    ImageDraw.Draw(canvas).text((8, size // 2), 'unreadable', fill='black')
    return canvas


def render_grid(results, smap=None, text: str = '', *, tile: int = 160, columns: int = 5):
  """Query (sketch, text) on the left, the top-k (rank, score, file name) in a grid."""
  cap = 34
  columns = max(1, min(columns, len(results) or 1))
  rows = max(1, -(-len(results) // columns))
  pad = 8
  w = pad + (tile + pad) * (columns + 1)
  h = pad + (tile + cap + pad) * rows
  text_lines = textwrap.wrap(text, 24)[:6]
  h = max(h, pad + tile + 16 * (len(text_lines) + 1) + 20)
  canvas = Image.new('RGB', (w, h), 'white')
  draw = ImageDraw.Draw(canvas)
  small, big = _font(12), _font(14)
  if smap is not None:
    canvas.paste(sketch_preview(smap, tile), (pad, pad))
  else:
    draw.rectangle([pad, pad, pad + tile - 1, pad + tile - 1], outline=(180, 180, 180))
    draw.text((pad + 8, pad + tile // 2 - 7), '(no sketch)', fill=(120, 120, 120), font=big)
  draw.text((pad, pad + tile + 4), 'query text:' if text else '(no text)', fill='black',
            font=big)
  for i, line in enumerate(text_lines):
    draw.text((pad, pad + tile + 22 + 16 * i), line, fill=(30, 30, 120), font=small)
  x0 = pad + tile + pad
  draw.line([x0 - pad // 2, 0, x0 - pad // 2, h], fill=(200, 200, 200), width=2)
  for n, r in enumerate(results):
    x = x0 + (n % columns) * (tile + pad)
    y = pad + (n // columns) * (tile + cap + pad)
    canvas.paste(_thumb(r.path, tile), (x, y))
    draw.text((x, y + tile + 2), f'#{r.rank}  {r.score:.3f}', fill='black', font=big)
    draw.text((x, y + tile + 18), Path(r.path).name[:26], fill=(90, 90, 90), font=small)
  return canvas


def _data_uri(img: Image.Image) -> str:
  buf = io.BytesIO()
  img.save(buf, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def render_html(results, smap=None, text: str = '', *, tile: int = 160) -> str:
  """A self-contained page (images inlined) with the query and the ranked results."""
  sketch = (f'<img src="{_data_uri(sketch_preview(smap, tile))}" alt="query sketch">'
            if smap is not None else '<p><i>(no sketch)</i></p>')
  items = '\n'.join(
      f'<figure class="result"><img src="{_data_uri(_thumb(r.path, tile))}" '
      f'alt="{html.escape(Path(r.path).name)}"><figcaption>#{r.rank} {r.score:.3f}<br>'
      f'<a href="file://{html.escape(r.path)}">{html.escape(Path(r.path).name)}</a>'
      '</figcaption></figure>' for r in results)
  return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>stbir_jax search results</title>
<style>body{{font-family:sans-serif}} figure{{display:inline-block;margin:6px;text-align:center}}
.query{{border-right:2px solid #ccc;padding-right:12px;margin-right:12px;float:left}}</style>
</head><body>
<div class="query"><h3>Query</h3>{sketch}<p>{html.escape(text) if text else '<i>(no text)</i>'}</p></div>
<div class="results"><h3>Top {len(results)}</h3>
{items}
</div></body></html>
"""


def write_results(path, results, smap=None, text: str = '') -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix.lower() == '.html':
    path.write_text(render_html(results, smap, text), encoding='utf-8')
  elif path.suffix.lower() in ('.png', '.jpg', '.jpeg'):
    render_grid(results, smap, text).save(path)
  else:
    raise SearchError(f'--out {path}: expected a .png, .jpg or .html file')


# ------------------------------------------------------------------------------------ CLI


ANN_PARAMS_HELP = ('ANN parameters, e.g. "nprobe=32" or "ef_search=128" (defaults: '
                   'stbir_jax/ann.py DEFAULTS)')
FIT_HELP = ('ink: scale the drawing to fill the frame; canvas: keep its place on the page (a '
            'sketch drawn in the photo\'s frame, for layout-keeping models such as the demo\'s)')


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m stbir_jax.search', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest='command', required=True)
  pi = sub.add_parser('index', help='embed a folder of photos (resumable)')
  pi.add_argument('--model', required=True, help='export directory (python -m stbir_jax.export)')
  pi.add_argument('--images', required=True, help='folder of photos (searched recursively)')
  pi.add_argument('--out', required=True, help='index directory to write (or resume)')
  pi.add_argument('--batch_size', type=int, default=32)
  pi.add_argument('--chunk_size', type=int, default=512, help='photos per committed chunk')
  pi.add_argument('--quiet', action='store_true')
  pi.add_argument('--backend', default=None, choices=ann.BACKENDS,
                  help='also build (or update) this approximate index (docs/usage.md)')
  pi.add_argument('--ann_params', default='', help=ANN_PARAMS_HELP)
  pq = sub.add_parser('query', help='rank the indexed photos for a sketch and/or text')
  pq.add_argument('--index', required=True)
  pq.add_argument('--sketch', default=None, help='.png/.jpg/... raster or .svg/.json sketch')
  pq.add_argument('--text', default='', help='description, e.g. "red suede with white laces"')
  pq.add_argument('-k', '--k', type=int, default=10)
  pq.add_argument('--mode', default='auto', choices=MODES,
                  help='auto: whatever was given; or force one modality')
  pq.add_argument('--out', default=None, help='results picture (.png) or page (.html)')
  pq.add_argument('--backend', default='jax', choices=BACKENDS,
                  help='jax/faiss: exact; ivf_flat/ivf_pq/hnsw/scann: the index built by '
                  '`index --backend=...`')
  pq.add_argument('--exact', action='store_true',
                  help='ANN backends: re-rank the candidates with exact scores')
  pq.add_argument('--ann_params', default='', help=ANN_PARAMS_HELP)
  pq.add_argument('--model', default=None, help='export directory (default: the index\'s)')
  pq.add_argument('--fit', default='ink', choices=sketch_io.FITS, help=FIT_HELP)
  a = p.parse_args(argv)
  # Images above PIL's warning size are refused by image_safety with one clear line anyway.
  warnings.simplefilter('ignore', Image.DecompressionBombWarning)
  try:
    if a.command == 'index':
      report = build_index(a.model, a.images, a.out, batch_size=a.batch_size,
                           chunk_size=a.chunk_size, progress=not a.quiet)
      print(f'indexed {report["indexed"]} images into {a.out}; skipped {report["skipped_count"]}'
            f' (listed in {Path(a.out) / "report.json"})')
      for s in report['skipped'][:10]:
        print(f'  skipped {s["file"]}: {s["error"]}')
      if a.backend:
        meta = build_ann(a.out, a.backend, _ann_params(a.ann_params),
                         progress=None if a.quiet else print)
        print(f'{a.backend} index of {meta["rows"]} rows in {Path(a.out) / "ann" / a.backend}: '
              f'{ann.describe_meta(meta)}')
      return 0
    check_text(a.text, '--text')
    check_k(a.k, '--k')  # before the model is loaded
    searcher = Searcher(a.index, a.model, backend=a.backend, fit=a.fit, exact=a.exact,
                        ann_params=_ann_params(a.ann_params))
    results, smap, text = searcher.search(a.sketch, a.text, a.k, a.mode)
    mode = '+'.join(m for m, used in (('sketch', smap is not None), ('text', bool(text))) if used)
    print(f'top {len(results)} of {len(searcher.index)} ({mode} query)')
    for r in results:
      print(f'{r.rank:4d}  {r.score:+.4f}  {r.path}')
    if searcher.ann is not None:
      print(f'approximate: {searcher.describe_backend()}')
    if a.out:
      write_results(a.out, results, smap, text)
      print(f'wrote {a.out}')
    return 0
  except SearchError as e:
    print(f'search: error: {e}', file=sys.stderr)
    return 2


def _ann_params(text: str) -> dict:
  try:
    return ann.parse_params(text)
  except ann.AnnError as e:
    raise SearchError(str(e)) from None


if __name__ == '__main__':
  sys.exit(main())
