"""The exact index of a folder of photos: building it (resumable, in committed chunks), loading
it, and the approximate index built from it (stbir_jax/search/ann_store.py). The layout on disk
is in stbir_jax/search/__init__.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stbir_jax import exported, retrieval
from stbir_jax.search import ann, ann_store
from stbir_jax.search.inputs import IMAGE_EXTENSIONS, SearchError, load_gallery_image

INDEX_FORMAT = 1


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


def read_chunks(index_dir: Path):
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
  model_dir = os.path.abspath(model_dir)
  root = Path(images).expanduser().resolve()
  out = Path(out).expanduser().resolve()
  if not root.is_dir():
    raise SearchError(f'--images {root}: no such directory; expected a folder of photos')
  if model is None:
    try:
      model = exported.load_exported(model_dir)
    except Exception as e:  # ExportError and friends: say which flag was wrong
      raise SearchError(f'--model {model_dir}: {e}') from e
  out.mkdir(parents=True, exist_ok=True)
  (out / 'chunks').mkdir(exist_ok=True)

  meta = {'format': INDEX_FORMAT, 'model': model_dir,
          'model_fingerprint': _model_fingerprint(model_dir),
          'resolution': model.resolution, 'embed_dim': model.embed_dim, 'images': str(root)}
  meta_path = out / 'index.json'
  if meta_path.exists():
    old = json.loads(meta_path.read_text())
    for key in ('model_fingerprint', 'images', 'resolution', 'embed_dim'):
      if old.get(key) != meta[key]:
        raise SearchError(f'{out} is an index of {key}={old.get(key)!r}, not {meta[key]!r}; '
                          'use another --out (or delete it) to index with this model/folder')
  _atomic_write(meta_path, json.dumps(meta, indent=2).encode())

  chunks = read_chunks(out)
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
          skipped.append({'file': rel, 'error': f'not an image (extension {f.suffix or "none"!r})'})
        else:
          try:
            images.append(load_gallery_image(f, model.resolution))
            paths.append(rel)
          except SearchError as e:
            skipped.append({'file': rel, 'error': str(e).replace(str(f) + ': ', '')})
        bar.update(1)
      stack = (np.stack(images) if images else
               np.zeros((0, model.resolution, model.resolution, 3), np.uint8))
      emb = _encode_images(model, stack, batch_size)
      buf = io.BytesIO()
      np.save(buf, emb)
      _atomic_write(out / 'chunks' / f'{number:06d}.npy', buf.getvalue())
      # The .json commits the chunk: written after its embeddings.
      _atomic_write(out / 'chunks' / f'{number:06d}.json',
                    json.dumps({'paths': paths, 'skipped': skipped}).encode())
      with open(out / 'done.txt', 'a') as fh:
        fh.writelines(p + '\n' for p in paths + [s['file'] for s in skipped])
      number += 1
  finally:
    bar.close()
    report = _write_report(out, root)
  return report


def _write_report(out: Path, root: Path) -> dict:
  chunks = read_chunks(out)
  skipped = [s for _, _, sk in chunks for s in sk]
  report = {'images': str(root), 'indexed': sum(len(p) for _, p, _ in chunks),
                'skipped_count': len(skipped), 'skipped': skipped, 'chunks': len(chunks)}
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
  for number, chunk_paths, _ in read_chunks(directory):
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
  # Aligned, so that exact search reads it in place (retrieval.ALIGNMENT).
  emb = retrieval.aligned_empty((sum(map(len, embs)), meta['embed_dim']))
  if embs:
    np.concatenate(embs, out=emb, casting='same_kind')
  return Index(directory, meta, paths, emb)


def build_ann(directory, backend: str, overrides: dict | None = None, progress=print) -> dict:
  """Builds (or resumes, or updates with new chunks) INDEX/ann/<backend>; returns its meta."""
  index = load_index(directory)
  chunks = [[number, len(paths)] for number, paths, _ in read_chunks(index.directory)]
  try:
    return ann_store.build(index.directory, backend, index.embeddings, chunks,
                           overrides=overrides, progress=progress)
  except (ann.AnnError, retrieval.RetrievalError) as e:
    raise SearchError(str(e)) from None
