"""The web demo under hostile inputs and load: header size checks, bounded concurrency, a
timeout, and (slow suite) the page served during huge uploads and under 4 concurrent clients.

The gallery is 6 plain-colour photos indexed with a randomly initialised tiny export: these
tests are about the server, not about rankings (tests/demo_browser_test.py has those).
"""

import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageFile

import _images
from stbir_jax import demo
from stbir_jax.search import index, inputs
from stbir_jax.search.searcher import Searcher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
import demo_load  # pylint: disable=g-import-not-at-top,wrong-import-position

LIMIT = '40,000,000 pixels (a decompression bomb, or a mistake: downscale it)'


@pytest.fixture(scope='module')
def gallery(tmp_path_factory):
  """-> (base dir, Searcher) of 6 photos."""
  from export_test import make_tiny_export  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.mktemp('demo_safety')
  make_tiny_export(base / 'model')
  (base / 'photos').mkdir()
  for i, colour in enumerate(['red', 'green', 'blue', 'yellow', 'black', 'white']):
    Image.new('RGB', (40, 30), colour).save(base / 'photos' / f'{i}.png')
  index.build_index(base / 'model', base / 'photos', base / 'index', progress=False)
  return base, Searcher(base / 'index')


def _message(output):
  return output[2]


def test_huge_and_bomb_uploads_are_refused_from_the_header(gallery, tmp_path, monkeypatch):
  _, searcher = gallery
  d = demo.Demo(searcher)
  big = _images.big_sketch_png(tmp_path / 'big.png', 8000)  # ~60 KB, 64 million pixels
  bomb = _images.png_header(tmp_path / 'bomb.png', 30000, 30000)
  renamed = _images.png_header(tmp_path / 'bomb.dat', 30000, 30000)

  def no_decoding(im):
    raise AssertionError('decoded')

  monkeypatch.setattr(ImageFile.ImageFile, 'load', no_decoding)
  start = time.monotonic()
  assert _message(d.run(str(big), None, 'red', 'auto', 3)) == (
      f'**Cannot search:** big.png: 8000x8000 pixels is too large: the limit is {LIMIT}')
  assert time.monotonic() - start < 5
  assert _message(d.run(str(bomb), None, 'red', 'auto', 3)) == (
      f'**Cannot search:** bomb.png: 900,000,000 pixels is too large: the limit is {LIMIT}')
  assert _message(d.run(str(renamed), None, '', 'auto', 3)) == (
      '**Cannot search:** the uploaded file bomb.dat: 900,000,000 pixels is too large: the limit '
      f'is {LIMIT}')
  # A drawing-pad image (decoded by Gradio) over the limit gets the same answer.
  pad = Image.new('1', (7000, 7000))
  assert _message(d.run(None, {'composite': pad}, '', 'auto', 3)) == (
      f'**Cannot search:** sketch: 7000x7000 pixels is too large: the limit is {LIMIT}')


@pytest.mark.parametrize('k', [0, -5, 2.5])
def test_k_below_1_or_not_whole_is_refused(gallery, k):
  _, searcher = gallery
  assert _message(demo.Demo(searcher).run(None, None, 'red', 'text', k)) == (
      f'**Cannot search:** k={k!r}: the number of results must be a whole number &gt;= 1')


def test_k_from_the_slider_and_the_default(gallery):
  _, searcher = gallery
  d = demo.Demo(searcher, default_k=4)
  assert _message(d.run(None, None, 'red', 'text', 3.0)).startswith('Top 3 of 6 photos')
  assert _message(d.run(None, None, 'red', 'text', None)).startswith('Top 4 of 6 photos')
  with pytest.raises(inputs.SearchError, match='--k=0'):
    demo.Demo(searcher, default_k=0)


class _SlowSearcher:
  """Stands in for a Searcher: each search sleeps; counts how many run at once."""
  index = ()
  ann = None   # exact search: the demo names no approximate backend

  def __init__(self, seconds):
    self.seconds, self.running, self.peak = seconds, 0, 0
    self.lock = threading.Lock()

  def search(self, sketch, text, k, mode):
    with self.lock:
      self.running += 1
      self.peak = max(self.peak, self.running)
    time.sleep(self.seconds)
    with self.lock:
      self.running -= 1
    return [], None, text


def test_searches_run_at_most_concurrency_at_once():
  slow = _SlowSearcher(0.3)
  d = demo.Demo(slow, concurrency=2, timeout_s=30)
  messages = []
  visitors = [threading.Thread(target=lambda: messages.append(
      _message(d.run(None, None, 'red', 'text', 3)))) for _ in range(6)]
  for v in visitors:
    v.start()
  for v in visitors:
    v.join()
  assert messages == ['Top 0 of 0 photos (text query).'] * 6
  assert slow.peak == 2


def test_a_search_past_the_timeout_is_answered_with_a_message():
  d = demo.Demo(_SlowSearcher(3.0), concurrency=1, timeout_s=0.2)
  start = time.monotonic()
  assert _message(d.run(None, None, 'red', 'text', 3)) == (
      '**Cannot search:** no answer within 0.2 s (the server is busy, or the sketch is very '
      'large); try again, or a smaller sketch.')
  assert time.monotonic() - start < 2


# ------------------------------------------------------------------------------------ server


def _get_seconds(url):
  start = time.monotonic()
  urllib.request.urlopen(url, timeout=30).read()
  return time.monotonic() - start


@pytest.fixture(scope='module')
def server(gallery, tmp_path_factory):
  from demo_browser_test import _serve  # pylint: disable=g-import-not-at-top
  base, _ = gallery
  with _serve(base / 'index', 3, tmp_path_factory.mktemp('server') / 'server.log') as served:
    yield served


@pytest.mark.slow
def test_page_is_served_while_huge_sketches_are_searched(server, tmp_path):
  """An 8000 px upload (refused from its header) and a 6000 px one (36 million pixels, rendered)
  searched at once: meanwhile GET / answers in < 1 s every time."""
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  url, process = server
  refused = _images.big_sketch_png(tmp_path / 'big8000.png', 8000)
  rendered = _images.big_sketch_png(tmp_path / 'big6000.png', 6000)
  client = Client(url, verbose=False)
  jobs = [client.submit(handle_file(str(path)), None, 'red', 'auto', 3, api_name='/search')
          for path in (refused, rendered)]
  seconds = []
  while not all(job.done() for job in jobs) or len(seconds) < 10:
    seconds.append(_get_seconds(url))
    time.sleep(0.1)
  assert max(seconds) < 1.0, seconds
  refused_message, rendered_message = (_message(job.result()) for job in jobs)
  assert refused_message == ('**Cannot search:** big8000.png: 8000x8000 pixels is too large: '
                             f'the limit is {LIMIT}')
  assert rendered_message.startswith('Top 3 of 6 photos (sketch + text query)')
  assert process.poll() is None


@pytest.mark.slow
def test_four_clients_searching_for_ten_seconds(server, tmp_path):
  """The load test of benchmarks/demo_load.py, smaller (docs/usage.md has the full run)."""
  url, process = server
  sketch = tmp_path / 'sketch.png'
  page = Image.new('L', (400, 300), 255)
  page.paste(0, (50, 100, 350, 110))
  page.save(sketch)
  report = demo_load.run_load(url, sketch, 'a red shoe', clients=4, seconds=10, k=3)
  print(report)
  assert report['errors'] == 0, report['error_examples']
  assert report['requests'] >= 4
  assert report['search']['p99'] < demo.TIMEOUT_S
  assert report['page_errors'] == 0 and report['page']['max'] < 1.0, report['page']
  assert process.poll() is None


def test_load_test_refuses_other_hosts():
  for url in ('http://example.com:7860/', 'http://10.0.0.1/', 'http://127.0.0.1.nip.io/'):
    with pytest.raises(SystemExit, match='only this machine'):
      demo_load.check_loopback(url)
  assert demo_load.check_loopback('http://127.0.0.1:7860/') == 'http://127.0.0.1:7860/'


def test_demo_flags_are_checked_before_loading(tmp_path, capsys):
  pytest.importorskip('gradio')
  for flags, error in [(['--k=0'], '--k=0'), (['--concurrency=0'], '--concurrency=0'),
                       (['--timeout=0'], '--timeout=0.0')]:
    assert demo.main([f'--index={tmp_path}'] + flags) == 2
    assert capsys.readouterr().err.strip().startswith(f'demo: error: {error}')
