r"""A web demo: draw or upload a sketch, type a description, see the best matching photos.

  python -m stbir_jax.demo --index=INDEX [--port=7860] [--host=127.0.0.1] [--k=10] [--fit=ink]

INDEX is a folder written by `python -m stbir_jax.search index` (it names its model). The page
(Gradio) has a drawing pad, an upload box (PNG/JPG/... of any size and polarity, or SVG), a
text box, a mode (auto: whatever was given; sketch only; text only; sketch + text) and the
number of results; it shows the top k as a gallery with scores, a ranked list, and the sketch
as the model sees it. A bad upload (not an image, too large) or an empty query gives a message
in the page; the server keeps serving. An upload's size is read from its header before it is
decoded (more than stbir_jax.image_safety.MAX_SKETCH_PIXELS is refused), at most --concurrency
searches compute at once (others wait in Gradio's queue), and a search that takes longer than
--timeout seconds is answered with a message instead of holding the visitor. --fit=canvas
keeps a drawing where it is on the pad instead of scaling it to the frame (for layout-keeping
models such as configs/base.py:demo's).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import html
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

from absl import flags
from PIL import Image

from stbir_jax import cli, image_safety
from stbir_jax.data import sketch_io
from stbir_jax.search import inputs, rendering
from stbir_jax.search.searcher import BACKENDS, Searcher

PROG = 'demo'  # errors read `demo: error: ...`
MODE_CHOICES = (('Auto (whatever is given)', 'auto'), ('Sketch + text', 'sketch+text'),
                ('Sketch only', 'sketch'), ('Text only', 'text'))
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
THUMB = 256
CONCURRENCY = 2    # searches computing at once (each renders, encodes and ranks)
TIMEOUT_S = 30.0   # a search's answer, queue wait in the pool included


class Demo:
  """The page's logic, independent of Gradio (tested directly and through a browser)."""

  def __init__(self, searcher: Searcher, default_k: int = 10, *,
               concurrency: int = CONCURRENCY, timeout_s: float = TIMEOUT_S):
    self.searcher = searcher
    self.default_k = inputs.check_k(default_k, '--k')
    self.concurrency = inputs.check_k(concurrency, '--concurrency')
    self.timeout_s = timeout_s
    # Searches run here, not in the server's threads: at most `concurrency` at once, and the
    # visitor gets an answer after `timeout_s` even if a search overruns (it finishes in the
    # background, holding its worker, so overruns cannot pile up either).
    self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix='search')

  def _sketch_from_upload(self, path):
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
      raise inputs.SearchError(f'the uploaded file {p.name} is {size / 2**20:.1f} MB; the limit '
                               f'is {MAX_UPLOAD_BYTES // 2**20} MB')
    ext = p.suffix.lower()
    if ext not in sketch_io.SKETCH_EXTENSIONS:
      # Gradio keeps the upload's name; try it as an image anyway (browsers rename files).
      name = f'the uploaded file {p.name}'
      try:
        with image_safety.open_image(p, name=name, limit=image_safety.MAX_SKETCH_PIXELS) as im:
          im.load()
          return im.copy()
      except image_safety.ImageTooLargeError as e:
        raise inputs.SearchError(str(e)) from None
      except image_safety.decode_errors():  # unreadable (image_safety's errors included)
        raise inputs.SearchError(
            f'{name} is not an image or sketch; expected one of '
            f'{", ".join(sketch_io.SKETCH_EXTENSIONS)}') from None
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

  def _k(self, k) -> int:
    if k is None or k == '':
      return self.default_k
    if isinstance(k, float) and k.is_integer():  # the slider sends floats
      k = int(k)
    return inputs.check_k(k, 'k')

  def _search(self, upload, drawing, text, mode, k):
    if mode == 'text':  # a leftover upload must not break a text-only search
      sketch = None
    elif upload:
      sketch = self._sketch_from_upload(upload)
    else:
      sketch = self._sketch_from_pad(drawing)
    return self.searcher.search(sketch, text or '', k, mode or 'auto')

  def run(self, upload, drawing, text, mode, k):
    """-> (gallery [(PIL thumbnail, caption)], ranking HTML, message markdown, sketch preview)."""
    try:
      k = self._k(k)
      future = self._pool.submit(self._search, upload, drawing, text, mode, k)
      try:
        results, smap, used_text = future.result(timeout=self.timeout_s)
      except concurrent.futures.TimeoutError:
        future.cancel()  # if it is still waiting for a worker
        return [], '', (f'**Cannot search:** no answer within {self.timeout_s:g} s (the server '
                        'is busy, or the sketch is very large); try again, or a smaller '
                        'sketch.'), None
    except inputs.SearchError as e:
      # The upload by its name, not by the server's temporary path.
      why = str(e).replace(str(upload), Path(upload).name) if upload else str(e)
      return [], '', f'**Cannot search:** {html.escape(why)}', None
    except Exception as e:  # pylint: disable=broad-except
      # Anything unexpected is shown, not raised: the server must keep serving.
      return [], '', f'**Error:** {type(e).__name__}: {html.escape(str(e))}', None
    gallery = [(rendering.thumbnail(r.path, THUMB),
                f'#{r.rank}  {r.score:.3f}  {Path(r.path).name}') for r in results]
    rows = ''.join(f'<li data-path="{html.escape(r.path)}"><b>{html.escape(Path(r.path).name)}'
                   f'</b> <span class="score">{r.score:.4f}</span></li>' for r in results)
    ranking = f'<ol id="ranking-list">{rows}</ol>'
    used = ' + '.join(m for m, on in (('sketch', smap is not None), ('text', bool(used_text)))
                      if on)
    message = f'Top {len(results)} of {len(self.searcher.index)} photos ({used} query).'
    if self.searcher.ann is not None:   # say what an approximate index may miss
      message += f' Approximate: {html.escape(self.searcher.describe_backend())}.'
    preview = rendering.sketch_preview(smap, THUMB) if smap is not None else None
    return gallery, ranking, message, preview

  def run_to_files(self, upload, drawing, text, mode, k):
    """`run` with its images as PNG files, which is how the page gets them: Gradio rewrites a
    returned PIL image into its cache in place, so two visitors shown the same thumbnail at
    once could be served a half-written file; files are copied into it atomically."""
    gallery, ranking, message, preview = self.run(upload, drawing, text, mode, k)
    return ([(_png_file(img), caption) for img, caption in gallery], ranking, message,
            _png_file(preview) if preview is not None else None)


_FILES = Path(tempfile.gettempdir()) / 'stbir_demo'


def _png_file(img: Image.Image) -> str:
  """Writes `img` once (content-addressed, atomically) under the temp folder -> its path."""
  buf = io.BytesIO()
  img.save(buf, format='PNG')
  data = buf.getvalue()
  path = _FILES / f'{hashlib.sha1(data).hexdigest()}.png'
  if not path.exists():
    _FILES.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=_FILES, suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  return str(path)


def build_app(searcher: Searcher, default_k: int = 10, *, concurrency: int = CONCURRENCY,
              timeout_s: float = TIMEOUT_S):
  import gradio as gr  # pylint: disable=g-import-not-at-top
  demo = Demo(searcher, default_k, concurrency=concurrency, timeout_s=timeout_s)
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
    # One shared limit for both triggers; more visitors wait in the queue, the page is served.
    limits = {'concurrency_limit': demo.concurrency, 'concurrency_id': 'search'}
    button.click(demo.run_to_files, inputs, outputs, api_name='search', **limits)
    text.submit(demo.run_to_files, inputs, outputs, api_name='search_on_enter', **limits)
  return app


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('index', None, 'index folder (python -m stbir_jax.search index)',
                      flag_values=fv)
  flags.DEFINE_string('model', None, "export directory (default: the index's)", flag_values=fv)
  flags.DEFINE_integer('port', 7860, "the server's port", flag_values=fv)
  flags.DEFINE_string('host', '127.0.0.1', '0.0.0.0 to serve other machines', flag_values=fv)
  flags.DEFINE_integer('k', 10, 'default number of results', flag_values=fv)
  flags.DEFINE_enum('backend', 'jax', BACKENDS,
                    'jax/faiss: exact; ivf_flat/ivf_pq/hnsw/scann: an ANN index built by '
                    '`python -m stbir_jax.search index --backend=...`', flag_values=fv)
  flags.DEFINE_bool('exact', False, 'ANN: re-rank the candidates exactly', flag_values=fv)
  flags.DEFINE_bool('share', False, 'a public gradio.live link (Colab)', flag_values=fv)
  flags.DEFINE_enum('fit', 'ink', sketch_io.FITS, inputs.FIT_HELP, flag_values=fv)
  flags.DEFINE_integer('concurrency', CONCURRENCY,
                       'searches computing at once; more visitors wait in the queue',
                       flag_values=fv)
  flags.DEFINE_float('timeout', TIMEOUT_S,
                     'seconds before a visitor is told a search did not answer', flag_values=fv)
  flags.mark_flag_as_required('index', flag_values=fv)


def serve(f: flags.FlagValues) -> int:
  """Checks the flags, loads the index and serves the page until interrupted."""
  os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
  # Uploads above PIL's warning size are refused by image_safety with a message anyway.
  warnings.simplefilter('ignore', Image.DecompressionBombWarning)
  try:
    import gradio  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    cli.fail(PROG, 'the web demo needs gradio: pip install gradio')
  inputs.check_k(f.k, '--k')
  inputs.check_k(f.concurrency, '--concurrency')
  if not f.timeout > 0:
    raise inputs.SearchError(f'--timeout={f.timeout}: expected a positive number of seconds')
  searcher = Searcher(f.index, f.model, backend=f.backend, fit=f.fit, exact=f.exact)
  searcher.search(text='warm up', k=1)  # compile before the first visitor
  print(f'demo: ranking with {searcher.describe_backend()}')
  app = build_app(searcher, f.k, concurrency=f.concurrency, timeout_s=f.timeout)
  app.queue().launch(server_name=f.host, server_port=f.port, share=f.share, ssr_mode=False,
                     max_file_size='200mb', show_error=True)
  return 0


def main(argv=None) -> int:
  """The program; `argv`: its flags as a list (cli.run_program), None: sys.argv."""
  return cli.run_program(PROG, define_flags, serve, argv, extra=(inputs.SearchError,))


if __name__ == '__main__':
  sys.exit(main())
