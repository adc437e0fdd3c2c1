r"""A web demo: draw or upload a sketch, type a description, see the best matching photos.

  python -m stbir_jax.demo --index=INDEX [--port=7860] [--host=127.0.0.1] [--k=10] [--fit=ink]

INDEX is a folder written by `python -m stbir_jax.search index` (it names its model). The page
(Gradio) has a drawing pad, an upload box (PNG/JPG/... of any size and polarity, or SVG), a
text box, a mode (auto: whatever was given; sketch only; text only; sketch + text) and the
number of results; it shows the top k as a gallery with scores, a ranked list, and the sketch
as the model sees it. A bad upload (not an image, too large) or an empty query gives a message
in the page; the server keeps serving. --fit=canvas keeps a drawing where it is on the pad
instead of scaling it to the frame (for layout-keeping models such as configs/base.py:demo's).
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path

from PIL import Image

from stbir_jax import search

MODE_CHOICES = (('Auto (whatever is given)', 'auto'), ('Sketch + text', 'sketch+text'),
                ('Sketch only', 'sketch'), ('Text only', 'text'))
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
THUMB = 256


class Demo:
  """The page's logic, independent of Gradio (tested directly and through a browser)."""

  def __init__(self, searcher: search.Searcher, default_k: int = 10):
    self.searcher = searcher
    self.default_k = default_k

  def _sketch_from_upload(self, path):
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
      raise search.SearchError(f'the uploaded file {p.name} is {size / 2**20:.1f} MB; the limit '
                               f'is {MAX_UPLOAD_BYTES // 2**20} MB')
    ext = p.suffix.lower()
    if ext not in search.sketch_io.SKETCH_EXTENSIONS:
      # Gradio keeps the upload's name; try it as an image anyway (browsers rename files).
      try:
        with Image.open(p) as im:
          im.load()
          return im.copy()
      except Exception:  # pylint: disable=broad-except
        raise search.SearchError(
            f'the uploaded file {p.name} is not an image or sketch; expected one of '
            f'{", ".join(search.sketch_io.SKETCH_EXTENSIONS)}') from None
    return p

  @staticmethod
  def _sketch_from_pad(drawing):
    """Gradio's Sketchpad value ({'composite': image, ...} or an image) -> PIL or None."""
    if drawing is None:
      return None
    img = drawing.get('composite') if isinstance(drawing, dict) else drawing
    if img is None:
      return None
    if not isinstance(img, Image.Image):
      img = Image.fromarray(img)
    return img

  def run(self, upload, drawing, text, mode, k):
    """-> (gallery [(PIL thumbnail, caption)], ranking HTML, message markdown, sketch preview)."""
    try:
      if mode == 'text':  # a leftover upload must not break a text-only search
        sketch = None
      elif upload:
        sketch = self._sketch_from_upload(upload)
      else:
        sketch = self._sketch_from_pad(drawing)
      k = int(k or self.default_k)
      results, smap, used_text = self.searcher.search(sketch, text or '', k, mode or 'auto')
    except search.SearchError as e:
      return [], '', f'**Cannot search:** {html.escape(str(e))}', None
    except Exception as e:  # pylint: disable=broad-except
      # Anything unexpected is shown, not raised: the server must keep serving.
      return [], '', f'**Error:** {type(e).__name__}: {html.escape(str(e))}', None
    gallery = [(search._thumb(r.path, THUMB),  # pylint: disable=protected-access
                f'#{r.rank}  {r.score:.3f}  {Path(r.path).name}') for r in results]
    rows = ''.join(f'<li data-path="{html.escape(r.path)}"><b>{html.escape(Path(r.path).name)}'
                   f'</b> <span class="score">{r.score:.4f}</span></li>' for r in results)
    ranking = f'<ol id="ranking-list">{rows}</ol>'
    used = ' + '.join(m for m, on in (('sketch', smap is not None), ('text', bool(used_text)))
                      if on)
    message = f'Top {len(results)} of {len(self.searcher.index)} photos ({used} query).'
    if self.searcher.ann is not None:   # say what an approximate index may miss
      message += f' Approximate: {html.escape(self.searcher.describe_backend())}.'
    preview = search.sketch_preview(smap, THUMB) if smap is not None else None
    return gallery, ranking, message, preview


def build_app(searcher: search.Searcher, default_k: int = 10):
  import gradio as gr  # pylint: disable=g-import-not-at-top
  demo = Demo(searcher, default_k)
  n = len(searcher.index)
  with gr.Blocks(title='stbir_jax: sketch + text image search') as app:
    gr.Markdown(f'## Sketch + text image search\nSearching {n} photos of '
                f'`{searcher.index.meta["images"]}`. Draw (or upload) the shape, describe '
                'colour, material and texture, and press **Search**.\n\n'
                f'Ranking: {html.escape(searcher.describe_backend())}.', elem_id='backend')
    with gr.Row():
      with gr.Column():
        pad = gr.Sketchpad(label='Draw a sketch', type='pil', elem_id='pad',
                           canvas_size=(400, 400))
        upload = gr.File(label='...or upload a sketch (PNG/JPG/SVG)', type='filepath',
                         elem_id='upload')
        text = gr.Textbox(label='Description', placeholder='e.g. a red suede boot with laces',
                          elem_id='text', lines=2)
        mode = gr.Radio(choices=list(MODE_CHOICES), value='auto', label='Query mode',
                        elem_id='mode')
        k = gr.Slider(1, max(1, min(50, n)), value=min(default_k, max(1, n)), step=1,
                      label='Results', elem_id='k')
        button = gr.Button('Search', variant='primary', elem_id='search')
      with gr.Column():
        message = gr.Markdown(elem_id='message')
        gallery = gr.Gallery(label='Top matches', columns=5, elem_id='gallery', height='auto')
        ranking = gr.HTML(elem_id='ranking')
        preview = gr.Image(label='The sketch as the model sees it', elem_id='preview',
                           interactive=False, height=200)
    inputs = [upload, pad, text, mode, k]
    outputs = [gallery, ranking, message, preview]
    button.click(demo.run, inputs, outputs)
    text.submit(demo.run, inputs, outputs)
  return app


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m stbir_jax.demo', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--index', required=True, help='index folder (python -m stbir_jax.search index)')
  p.add_argument('--model', default=None, help='export directory (default: the index\'s)')
  p.add_argument('--port', type=int, default=7860)
  p.add_argument('--host', default='127.0.0.1', help='0.0.0.0 to serve other machines')
  p.add_argument('--k', type=int, default=10, help='default number of results')
  p.add_argument('--backend', default='jax', choices=search.BACKENDS,
                  help='jax/faiss: exact; ivf_flat/ivf_pq/hnsw/scann: an ANN index built by '
                  '`python -m stbir_jax.search index --backend=...`')
  p.add_argument('--exact', action='store_true', help='ANN: re-rank the candidates exactly')
  p.add_argument('--share', action='store_true', help='a public gradio.live link (Colab)')
  p.add_argument('--fit', default='ink', choices=search.sketch_io.FITS, help=search.FIT_HELP)
  a = p.parse_args(argv)
  os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
  try:
    import gradio  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print('demo: error: the web demo needs gradio: pip install gradio', file=sys.stderr)
    return 2
  try:
    searcher = search.Searcher(a.index, a.model, backend=a.backend, fit=a.fit, exact=a.exact)
  except search.SearchError as e:
    print(f'demo: error: {e}', file=sys.stderr)
    return 2
  searcher.search(text='warm up', k=1)  # compile before the first visitor
  print(f'demo: ranking with {searcher.describe_backend()}')
  app = build_app(searcher, a.k)
  app.queue().launch(server_name=a.host, server_port=a.port, share=a.share, ssr_mode=False,
                     max_file_size='200mb', show_error=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
