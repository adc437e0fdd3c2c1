"""The web demo: its logic directly, then end to end in a real headless Chromium.

The gallery is 4 STBIR-Synth shoes (one twin family: 2 shapes x 2 appearances). A tiny model
(tests/_tiny.py) is trained for 80 steps on exactly the inputs the page will give it (the saved
sketch PNGs as stbir_jax.search reads them, the photos as the index loads them, the texts),
exported, and the 4 photos indexed. A test first asserts that every query then finds its own
photo in each mode outside the browser, so that a failure in the browser is the page's and not
the model's. The browser test uploads the sketch of photo X, types its text and asserts that X is
the first result, and that the page's mode switch routes the query (sketch only / text only).

The browser tests are skipped when Chromium, chromedriver, selenium or gradio is missing (CI
installs them: apt-get install chromium chromium-driver).

Screenshot of the page (docs/demo_screenshot.png), from any index, e.g. a trained export's:

  STBIR_UPDATE_SCREENSHOT=1 STBIR_SCREENSHOT_INDEX=INDEX STBIR_SCREENSHOT_SKETCH=SKETCH.png \
  STBIR_SCREENSHOT_TEXT="a description" python -m pytest -q tests/demo_browser_test.py -k screenshot

STBIR_SCREENSHOT_K sets the number of results (default 10; 4 for the test gallery),
STBIR_SCREENSHOT_FIT the demo's --fit (default ink) and STBIR_SCREENSHOT_OUT another output
path. Without STBIR_SCREENSHOT_INDEX the test checks the
mechanism on the tiny gallery and, without STBIR_UPDATE_SCREENSHOT or STBIR_SCREENSHOT_OUT,
writes to its temporary directory only.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import _tiny
from stbir_jax import demo, export
from stbir_jax.models import stbir
from stbir_jax.search import index, inputs
from stbir_jax.search.searcher import Searcher

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome')
                 if shutil.which(n)), None)
CHROMEDRIVER = shutil.which('chromedriver')
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--window-size=1400,1200')
# The contrastive loss trains the sketch+text query; single_modality makes each side retrieve on
# its own, so the page's sketch-only and text-only modes have a right answer too.
LOSSES = ('contrastive', 'single_modality')
MODES = ('sketch+text', 'sketch', 'text')
MODE_LABELS = {value: label for label, value in demo.MODE_CHOICES}


def _importable(name):
  try:
    __import__(name)
    return True
  except ImportError:
    return False


_MISSING = [name for name, ok in (('chromium', CHROMIUM), ('chromedriver', CHROMEDRIVER),
                                  ('selenium', _importable('selenium')),
                                  ('gradio', _importable('gradio'))) if not ok]
needs_browser = pytest.mark.skipif(
    bool(_MISSING), reason=f'needs {", ".join(_MISSING)} (apt-get install chromium '
                           'chromium-driver; pip install selenium gradio)')


# ------------------------------------------------------------------------------------ gallery


def _write_family(base):
  """One STBIR-Synth shoes twin family as PNG files -> [(photo path, sketch path, text)]."""
  from stbir_jax.data import synth  # pylint: disable=g-import-not-at-top
  spec = synth.SynthSpec(resolution=64, test_families=1, structural_variants=2,
                             appearance_variants=2, sketches_per_instance=1,
                             texts_per_instance=1)
  (base / 'photos').mkdir()
  (base / 'sketches').mkdir()
  items = []
  for rec in synth.generate('shoes', 'test', spec):
    photo = base / 'photos' / f'{rec["photo_id"]}.png'
    Image.fromarray(rec['image']).save(photo)
    # Dark ink on white at 4x, like a user's drawing; the page thins and redraws it.
    sketch = base / 'sketches' / f'{rec["photo_id"]}.png'
    ink = np.where(rec['sketches'][0, ..., 0] > 0, 0, 255).astype(np.uint8)
    Image.fromarray(ink).resize((256, 256), Image.Resampling.NEAREST).save(sketch)
    items.append((photo, sketch, rec['texts'][0]))
  return items


def _train_batch(config, items):
  """The items as the Searcher will see them: a training batch of len(items) instances."""
  from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
  r, n = config.data.resolution, len(items)
  ids, mask = get_tokenizer(config.data.tokenizer).encode([t for _, _, t in items],
                                                          config.data.max_text_len)
  return dict(
      image=np.stack([inputs.load_gallery_image(p, r) for p, _, _ in items]),
      sketch=np.stack([inputs.sketch_map(s, r) for _, s, _ in items]),
      text_ids=ids, text_mask=mask, has_sketch=np.ones(n, bool), has_text=np.ones(n, bool),
      category=np.zeros(n, np.int32), instance=np.arange(n, dtype=np.int32),
      family=np.zeros(n, np.int32))


@pytest.fixture(scope='module')
def gallery(tmp_path_factory):
  """(base dir, Searcher, [(photo path, sketch png path, text)]) with a model trained on them."""
  base = tmp_path_factory.mktemp('demo')
  items = _write_family(base)
  config = _tiny.tiny_config(LOSSES)
  config, _, state, losses = _tiny.fit(_train_batch(config, items), LOSSES)
  assert losses[-1] < 0.1 * losses[0], losses[::10]
  export.export_model(config, stbir.model_variables(state.params)['params'], str(base / 'model'),
                      step=config.train.num_steps)
  index.build_index(base / 'model', base / 'photos', base / 'index', progress=False)
  return base, Searcher(base / 'index'), items


def _query(mode, sketch, text):
  """Searcher arguments for `mode`: the other modality is left out."""
  return (sketch if mode != 'text' else None), (text if mode != 'sketch' else '')


def _names(results):
  return [os.path.basename(r.path) for r in results]


def test_trained_model_ranks_the_true_photo_first_in_every_mode(gallery):
  _, searcher, items = gallery
  for mode in MODES:
    top1 = [_names(searcher.search(*_query(mode, s, t), 4, mode)[0])[0] for _, s, t in items]
    assert top1 == [p.name for p, _, _ in items], mode


# ------------------------------------------------------------------------------------ logic


def test_demo_logic_results_and_messages(gallery, tmp_path):
  _, searcher, items = gallery
  d = demo.Demo(searcher, default_k=3)
  photo, sketch, text = items[2]
  shown, ranking, message, preview = d.run(str(sketch), None, text, 'sketch+text', 3)
  want, _, _ = searcher.search(sketch, text, 3, 'sketch+text')
  assert [c.split()[-1] for _, c in shown] == _names(want)
  assert shown[0][1].split()[-1] == photo.name
  assert ranking.count('<li') == 3 and 'sketch + text query' in message
  assert preview is not None and preview.size == (demo.THUMB, demo.THUMB)
  # Drawing-pad input (RGBA, ink on transparent, as Gradio's Sketchpad sends it).
  ink = np.asarray(Image.open(sketch).convert('L')) < 128
  rgba = np.zeros(ink.shape + (4,), np.uint8)
  rgba[ink] = (0, 0, 0, 255)
  shown2, _, _, _ = d.run(None, {'composite': Image.fromarray(rgba)}, '', 'sketch', 2)
  want2, _, _ = searcher.search(sketch, '', 2, 'sketch')
  assert [c.split()[-1] for _, c in shown2] == _names(want2)
  assert shown2[0][1].split()[-1] == photo.name
  # Bad inputs become messages, never exceptions.
  bad = tmp_path / 'evil.png'
  bad.write_bytes(b'this is not a png')
  assert 'not a readable image' in d.run(str(bad), None, '', 'auto', 3)[2]
  txt = tmp_path / 'notes.txt'
  txt.write_text('hello')
  assert 'not an image or sketch' in d.run(str(txt), None, '', 'auto', 3)[2]
  assert 'empty query' in d.run(None, None, '  ', 'auto', 3)[2]
  assert 'needs a sketch' in d.run(None, None, 'red', 'sketch+text', 3)[2]
  # A leftover bad upload does not block a text-only search.
  assert d.run(str(txt), None, 'red shoe', 'text', 3)[2].startswith('Top 3')
  huge = tmp_path / 'huge.png'
  Image.new('1', (9000, 9000), 1).save(huge)  # 81 MP, a few kB on disk
  assert 'too large' in d.run(str(huge), None, '', 'auto', 3)[2]


# ------------------------------------------------------------------------------------ browser


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def _serve(index, k, log_path, fit='ink'):
  """Runs `python -m stbir_jax.demo` on a free port until the block ends; yields (URL, process)."""
  port = _free_port()
  with open(log_path, 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'stbir_jax.demo', f'--index={index}', f'--port={port}', f'--k={k}',
         f'--fit={fit}'],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO),
                 GRADIO_ANALYTICS_ENABLED='False', NO_PROXY='127.0.0.1,localhost'))
    try:
      url = f'http://127.0.0.1:{port}/'
      deadline = time.time() + 150  # loading and compiling a real export takes a while on CPU
      while True:
        try:
          urllib.request.urlopen(url, timeout=2).read(100)
          break
        except OSError:
          assert server.poll() is None, Path(log_path).read_text()[-3000:]
          assert time.time() < deadline, 'demo server did not start'
          time.sleep(1)
      yield url, server
    finally:
      server.terminate()
      server.wait(timeout=30)


@contextlib.contextmanager
def _chrome(tmp_dir):
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in CHROMIUM_FLAGS + (f'--user-data-dir={tempfile.mkdtemp(dir=tmp_dir)}',):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  try:
    yield driver
  finally:
    driver.quit()


class _Page:
  """The demo page in a browser, driven through the elem_ids stbir_jax.demo gives its parts."""

  def __init__(self, driver, url):
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
    self.driver = driver
    self.wait = WebDriverWait(driver, 90)
    driver.get(url)
    self.wait.until(lambda d: self.elements('#search'))

  def elements(self, css):
    from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
    return self.driver.find_elements(By.CSS_SELECTOR, css)

  def _text(self, css):
    return ' '.join(e.text for e in self.elements(css))

  def upload(self, path):
    for clear in self.elements('#upload button[aria-label="Clear"]'):
      clear.click()
    self.elements('#upload input[type=file]')[0].send_keys(str(path))
    self.wait.until(lambda d: Path(path).stem in self._text('#upload'))

  def type_text(self, text):
    from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
    box = self.elements('#text textarea')[0]
    # Select-all then type: the typing fires the input events Gradio listens to (clear() does not).
    box.send_keys(Keys.CONTROL, 'a')
    box.send_keys(text)
    self.wait.until(lambda d: box.get_attribute('value') == text)

  def mode(self, value):
    label = [e for e in self.elements('#mode label') if e.text.strip() == MODE_LABELS[value]]
    assert label, (value, self._text('#mode'))
    label[0].click()

  def search(self, expect_in_message):
    """Presses Search; waits for a message containing `expect_in_message` (the caller makes it
    differ from the previous one) -> file names of the ranked list, best first."""
    self.elements('#search')[0].click()
    self.wait.until(lambda d: expect_in_message in self._text('#message'))
    return [os.path.basename(li.get_attribute('data-path'))
            for li in self.elements('#ranking-list li')]

  def screenshot(self, out, images):
    """Waits until `images` result thumbnails and sketch previews have loaded; saves the page."""
    loaded = ('return [...document.querySelectorAll("#gallery img, #preview img")]'
              '.filter(i => i.complete && i.naturalWidth > 0).length')
    self.wait.until(lambda d: d.execute_script(loaded) >= images)
    # The whole page, not only the first screen: grow the window by what the viewport lacks.
    lacking = self.driver.execute_script(
        'return document.documentElement.scrollHeight - window.innerHeight')
    if lacking > 0:
      size = self.driver.get_window_size()
      self.driver.set_window_size(size['width'], size['height'] + lacking)
    self.driver.execute_script('window.scrollTo(0, 0)')
    self.driver.save_screenshot(str(out))


@pytest.fixture(scope='module')
def server(gallery, tmp_path_factory):
  """The demo serving the tiny gallery; one server for the module's browser tests."""
  base, _, _ = gallery
  with _serve(base / 'index', 4, tmp_path_factory.mktemp('server') / 'server.log') as served:
    yield served


@needs_browser
def test_browser_finds_the_true_photo_and_follows_the_mode(gallery, server, tmp_path):
  _, searcher, items = gallery
  url, process = server
  (photo, sketch, text), (other_photo, _, other_text) = items[3], items[0]
  want = _names(searcher.search(sketch, text, 4, 'sketch+text')[0])
  assert want[0] == photo.name, 'the model, not the browser: see the test above'
  with _chrome(tmp_path) as driver:
    page = _Page(driver, url)
    page.upload(sketch)
    page.type_text(text)
    ranked = page.search('(sketch + text query)')  # mode auto: both were given
    assert ranked[0] == photo.name and ranked == want, (ranked, want)
    assert len(page.elements('#gallery img')) >= 4

    # Sketch of X, text of Y: the mode decides which one is searched.
    page.type_text(other_text)
    page.mode('sketch')
    assert page.search('(sketch query)')[0] == photo.name
    page.mode('text')
    assert page.search('(text query)')[0] == other_photo.name

    # A bad upload gives a message in the page, and the server keeps serving.
    page.mode('auto')
    junk = tmp_path / 'junk.png'
    junk.write_bytes(b'definitely not an image')
    page.upload(junk)
    assert page.search('not a readable image') == []
    assert process.poll() is None
    # The leftover bad upload does not block a text-only search.
    page.mode('text')
    assert page.search('(text query)')[0] == other_photo.name


def _screenshot_query(request):
  """-> (index dir, sketch path or None, text, k, its Searcher, expected top-1 name or None):
  the STBIR_SCREENSHOT_* query, or the tiny gallery's own (whose true photo must come first)."""
  if not os.environ.get('STBIR_SCREENSHOT_INDEX'):
    _, searcher, items = request.getfixturevalue('gallery')
    photo, sketch, text = items[3]
    return searcher.index.directory, sketch, text, 4, searcher, photo.name
  sketch = os.environ.get('STBIR_SCREENSHOT_SKETCH') or None
  text = os.environ.get('STBIR_SCREENSHOT_TEXT', '')
  assert sketch or text, 'set STBIR_SCREENSHOT_SKETCH (a file) and/or STBIR_SCREENSHOT_TEXT'
  assert sketch is None or os.path.isfile(sketch), f'STBIR_SCREENSHOT_SKETCH={sketch}: no file'
  # Absolute paths: the server runs in the repository root and the browser needs a full path.
  sketch = sketch and str(Path(sketch).resolve())
  searcher = Searcher(Path(os.environ['STBIR_SCREENSHOT_INDEX']).resolve(),
                      fit=os.environ.get('STBIR_SCREENSHOT_FIT', 'ink'))
  k = min(int(os.environ.get('STBIR_SCREENSHOT_K', '10')), len(searcher.index))
  return searcher.index.directory, sketch, text, k, searcher, None


@needs_browser
def test_screenshot(request, tmp_path):
  """A screenshot of the page after a query (the module docstring lists the env vars)."""
  index, sketch, text, k, searcher, top1 = _screenshot_query(request)
  want = _names(searcher.search(sketch, text, k, 'auto')[0])
  assert top1 is None or want[0] == top1, 'the model, not the browser: see the tests above'
  out = os.environ.get('STBIR_SCREENSHOT_OUT') or (
      REPO / 'docs' / 'demo_screenshot.png' if os.environ.get('STBIR_UPDATE_SCREENSHOT') else
      tmp_path / 'demo_screenshot.png')
  with contextlib.ExitStack() as stack:
    if os.environ.get('STBIR_SCREENSHOT_INDEX'):
      url, _ = stack.enter_context(_serve(index, k, tmp_path / 'server.log', searcher.fit))
    else:
      url, _ = request.getfixturevalue('server')
    page = _Page(stack.enter_context(_chrome(tmp_path)), url)
    if sketch:
      page.upload(sketch)
    if text:
      page.type_text(text)
    used = ' + '.join(m for m, on in (('sketch', sketch), ('text', text)) if on)
    ranked = page.search(f'({used} query)')
    assert ranked == want, (ranked, want)  # the screenshot shows what the model returns
    page.screenshot(out, len(want) + bool(sketch))
  with Image.open(out) as shot:
    assert shot.width >= 1000 and shot.height >= 900, shot.size
    # The photo thumbnails are in it: the page's controls and text alone (its left half) have
    # ~1,300 distinct colours, the whole page with the tiny gallery's 4 photos over 20,000.
    colours = len(shot.convert('RGB').getcolors(shot.width * shot.height))
    assert colours > 8000, colours
  print(f'screenshot: {out}')
