"""Search results for people: a picture grid and a self-contained HTML page with the query
(sketch, text) and the ranked photos, and the sketch preview the demo shows too."""

from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from stbir_jax.search.inputs import SearchError


def sketch_preview(smap, size: int) -> Image.Image:
  """A stroke map drawn dark on white at `size` pixels (for grids and the demo)."""
  img = Image.fromarray(np.where(smap > 0, 0, 255).astype(np.uint8))
  return img.resize((size, size), Image.Resampling.NEAREST).convert('RGB')


def _font(size):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1
    return ImageFont.load_default()


def thumbnail(path, size) -> Image.Image:
  """The photo at `path` fitted into a white `size` square (a grey 'unreadable' tile if it
  cannot be read: a result is never lost to a thumbnail)."""
  try:
    with Image.open(path) as im:
      im = ImageOps.contain(im.convert('RGB'), (size, size))  # small photos are enlarged
      canvas = Image.new('RGB', (size, size), 'white')
      canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
      return canvas
  except Exception:  # noqa: BLE001  pylint: disable=broad-except
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
    canvas.paste(thumbnail(r.path, tile), (x, y))
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
      f'<figure class="result"><img src="{_data_uri(thumbnail(r.path, tile))}" '
      f'alt="{html.escape(Path(r.path).name)}"><figcaption>#{r.rank} {r.score:.3f}<br>'
      f'<a href="file://{html.escape(r.path)}">{html.escape(Path(r.path).name)}</a>'
      '</figcaption></figure>' for r in results)
  caption = html.escape(text) if text else '<i>(no text)</i>'
  return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>stbir_jax search results</title>
<style>body{{font-family:sans-serif}} figure{{display:inline-block;margin:6px;text-align:center}}
.query{{border-right:2px solid #ccc;padding-right:12px;margin-right:12px;float:left}}</style>
</head><body>
<div class="query"><h3>Query</h3>{sketch}<p>{caption}</p></div>
<div class="results"><h3>Top {len(results)}</h3>
{items}
</div></body></html>
"""


def write_results(path, results, smap=None, text: str = '') -> None:
  """A results picture (.png, .jpg) or page (.html), by the suffix of `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix.lower() == '.html':
    path.write_text(render_html(results, smap, text), encoding='utf-8')
  elif path.suffix.lower() in ('.png', '.jpg', '.jpeg'):
    render_grid(results, smap, text).save(path)
  else:
    raise SearchError(f'--out {path}: expected a .png, .jpg or .html file')
