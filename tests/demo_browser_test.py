"""The web demo: its logic directly, then end to end in a real headless Chromium.

The gallery is 4 STBIR-Synth shoes (one twin family) indexed with an exported tiny model. The
model is untrained, so the test does not assume it finds the right shoe: it asks the model
itself (stbir_jax.search.Searcher, the code behind the page) for the top-1 of a sketch+text
query, and asserts the browser shows that photo first after uploading the same sketch file and
typing the same text. The browser test is skipped when Chromium, its driver, selenium or
gradio is missing (CI installs them: apt-get install chromium chromium-driver).
Set STBIR_UPDATE_SCREENSHOT=1 to refresh docs/demo_screenshot.png.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_test import make_tiny_export  # pylint: disable=g-import-not-at-top,wrong-import-position

from stbir_jax import demo, search  # pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome')
                 if shutil.which(n)), None)
CHROMEDRIVER = shutil.which('chromedriver')
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--window-size=1400,1200')


def _importable(name):
  try:
    __import__(name)
    return True
  except ImportError:
    return False


@pytest.fixture(scope='module')
def gallery(tmp_path_factory):
  """(base dir, Searcher, [(photo path, sketch png path, text)]) for one STBIR-Synth family."""
  from stbir_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.mktemp('demo')
  make_tiny_export(base / 'model')
  spec = synthetic.SynthSpec(resolution=64, test_families=1, structural_variants=2,
                             appearance_variants=2, sketches_per_instance=1,
                             texts_per_instance=1)
  (base / 'photos').mkdir()
  (base / 'sketches').mkdir()
  items = []
  for rec in synthetic.generate('shoes', 'test', spec):
    photo = base / 'photos' / f'{rec["photo_id"]}.png'
    Image.fromarray(rec['image']).save(photo)
    sketch = base / 'sketches' / f'{rec["photo_id"]}.png'
    ink = np.where(rec['sketches'][0, ..., 0] > 0, 0, 255).astype(np.uint8)
    Image.fromarray(ink).resize((256, 256), Image.Resampling.NEAREST).save(sketch)
    items.append((photo, sketch, rec['texts'][0]))
  search.build_index(base / 'model', base / 'photos', base / 'index', progress=False)
  return base, search.Searcher(base / 'index'), items


# ------------------------------------------------------------------------------------ logic


def test_demo_logic_results_and_messages(gallery, tmp_path):
  base, searcher, items = gallery
  d = demo.Demo(searcher, default_k=3)
  photo, sketch, text = items[2]
  shown, ranking, message, preview = d.run(str(sketch), None, text, 'sketch+text', 3)
  want, _, _ = searcher.search(sketch, text, 3, 'sketch+text')
  assert [c.split()[-1] for _, c in shown] == [os.path.basename(r.path) for r in want]
  assert ranking.count('<li') == 3 and 'sketch + text query' in message
  assert preview is not None and preview.size == (demo.THUMB, demo.THUMB)
  # Drawing-pad input (RGBA, ink on transparent, as Gradio's Sketchpad sends it).
  ink = np.asarray(Image.open(sketch).convert('L')) < 128
  rgba = np.zeros(ink.shape + (4,), np.uint8)
  rgba[ink] = (0, 0, 0, 255)
  shown2, _, _, _ = d.run(None, {'composite': Image.fromarray(rgba)}, '', 'sketch', 2)
  want2, _, _ = searcher.search(sketch, '', 2, 'sketch')
  assert [c.split()[-1] for _, c in shown2] == [os.path.basename(r.path) for r in want2]
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


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason='needs Chromium and chromedriver (apt-get install chromium '
                           'chromium-driver)')
@pytest.mark.skipif(not _importable('selenium') or not _importable('gradio'),
                    reason='needs selenium and gradio (pip install selenium gradio)')
def test_browser_upload_type_search_shows_model_top1(gallery, tmp_path):
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  base, searcher, items = gallery
  photo, sketch, text = items[3]
  results, _, _ = searcher.search(sketch, text, 4, 'auto')
  expected = os.path.basename(results[0].path)

  port = _free_port()
  log = open(tmp_path / 'server.log', 'w')
  server = subprocess.Popen(
      [sys.executable, '-m', 'stbir_jax.demo', f'--index={base / "index"}', f'--port={port}',
       '--k=4'], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
      env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO, GRADIO_ANALYTICS_ENABLED='False',
               NO_PROXY='127.0.0.1,localhost'))
  driver = None
  try:
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 150
    while True:
      try:
        urllib.request.urlopen(url, timeout=2).read(100)
        break
      except OSError:
        assert server.poll() is None, (tmp_path / 'server.log').read_text()[-3000:]
        assert time.time() < deadline, 'demo server did not start'
        time.sleep(1)

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f'--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}',):
      options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    wait = WebDriverWait(driver, 90)
    driver.get(url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#search'))

    driver.find_element(By.CSS_SELECTOR, '#upload input[type=file]').send_keys(str(sketch))
    wait.until(lambda d: sketch.stem in d.find_element(By.CSS_SELECTOR, '#upload').text)
    driver.find_element(By.CSS_SELECTOR, '#text textarea').send_keys(text)
    driver.find_element(By.CSS_SELECTOR, '#search').click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#ranking-list li')) == 4)
    ranked = [li.get_attribute('data-path')
              for li in driver.find_elements(By.CSS_SELECTOR, '#ranking-list li')]
    assert os.path.basename(ranked[0]) == expected, (ranked, expected)
    assert [os.path.basename(p) for p in ranked] == [os.path.basename(r.path) for r in results]
    assert 'sketch + text query' in driver.find_element(By.CSS_SELECTOR, '#message').text
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#gallery img')) >= 4)
    driver.execute_script('window.scrollTo(0, 0)')
    shot = tmp_path / 'demo_screenshot.png'
    driver.save_screenshot(str(shot))
    if os.environ.get('STBIR_UPDATE_SCREENSHOT'):
      shutil.copy(shot, os.path.join(REPO, 'docs', 'demo_screenshot.png'))

    # A bad upload gives a message in the page, and the server keeps serving.
    for clear in driver.find_elements(By.CSS_SELECTOR, '#upload button[aria-label="Clear"]'):
      clear.click()
    junk = tmp_path / 'junk.png'
    junk.write_bytes(b'definitely not an image')
    driver.find_element(By.CSS_SELECTOR, '#upload input[type=file]').send_keys(str(junk))
    wait.until(lambda d: 'junk' in d.find_element(By.CSS_SELECTOR, '#upload').text)
    driver.find_element(By.CSS_SELECTOR, '#search').click()
    wait.until(lambda d: 'not a readable image' in
               d.find_element(By.CSS_SELECTOR, '#message').text)
    assert server.poll() is None
    for label in driver.find_elements(By.CSS_SELECTOR, '#mode label'):
      if 'Text only' in label.text:
        label.click()
    driver.find_element(By.CSS_SELECTOR, '#search').click()
    wait.until(lambda d: '(text query)' in d.find_element(By.CSS_SELECTOR, '#message').text)
  finally:
    if driver is not None:
      driver.quit()
    server.terminate()
    server.wait(timeout=30)
    log.close()
