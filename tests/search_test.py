"""Search: exact top-k, resumable indexing of a messy folder, queries, grids, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _images  # pylint: disable=g-import-not-at-top,wrong-import-position
from export_test import make_tiny_export  # pylint: disable=g-import-not-at-top,wrong-import-position
from stbir_jax import retrieval  # pylint: disable=wrong-import-position
from stbir_jax.search import index as index_lib  # pylint: disable=wrong-import-position
from stbir_jax.search import inputs, main  # pylint: disable=wrong-import-position
from stbir_jax.search.searcher import Searcher  # pylint: disable=wrong-import-position


def run_cli(argv) -> int:
  """`python -m stbir_jax.search ARGV` in this process (its flags on a FlagValues of their own);
  returns the exit status."""
  flag_values = flags.FlagValues()
  main.define_flags(flag_values)
  return main.main(flag_values(['search'] + list(argv)), flag_values)

# ------------------------------------------------------------------------------------ top-k


# (1000, 7, 4096): one chunk cut into 992 rows of whole blocks and an 8-row tail.
@pytest.mark.parametrize('n,k,chunk', [(37, 5, 8), (10, 10, 3), (6, 9, 4), (100, 1, 100),
                                     (1000, 7, 4096)])
def test_top_k_jax_matches_numpy(n, k, chunk):
  rng = np.random.default_rng(n)
  q = rng.normal(size=(3, 8)).astype(np.float32)
  g = rng.normal(size=(n, 8)).astype(np.float32)
  scores, idx = retrieval.top_k_jax(q, g, k, chunk_size=chunk)
  sims = q @ g.T
  want = np.argsort(-sims, axis=1, kind='stable')[:, :min(k, n)]
  np.testing.assert_array_equal(idx, want)
  np.testing.assert_allclose(scores, np.take_along_axis(sims, want, 1), rtol=1e-6, atol=1e-6)


def test_top_k_ties_keep_gallery_order_across_chunks():
  g = np.array([[1.0, 0], [0, 1], [1, 0], [1, 0], [0.5, 0]], np.float32)
  scores, idx = retrieval.top_k_jax(np.array([[1.0, 0]], np.float32), g, 4, chunk_size=2)
  assert idx.tolist() == [[0, 2, 3, 4]]
  assert scores.tolist() == [[1.0, 1.0, 1.0, 0.5]]


@pytest.mark.parametrize('block', [1, 2, 3, 32])
def test_chunk_top_k_two_stage_selection_matches_a_full_sort(block):
  # Few distinct values, so ties span blocks: the lower row must win them, as in a stable sort.
  rng = np.random.default_rng(block)
  q = rng.integers(-2, 3, size=(5, 4)).astype(np.float32)
  chunk = rng.integers(-2, 3, size=(70, 4)).astype(np.float32)
  valid = np.arange(70) < 61   # the tail is padding and must never be returned
  scores, pos = retrieval.chunk_top_k(q, chunk, 6, valid=valid, block=block)
  sims = np.where(valid[None, :], q @ chunk.T, -np.inf)
  want = np.argsort(-sims, axis=1, kind='stable')[:, :6]
  np.testing.assert_array_equal(pos, want)
  np.testing.assert_array_equal(scores, np.take_along_axis(sims, want, 1))


def test_chunk_top_k_keeps_a_block_that_holds_several_winners():
  # All three best rows sit in block 1 (rows 4-7); the block maxima alone would rank it once.
  chunk = np.array([[0.1], [0.2], [0.3], [0.0], [0.9], [0.8], [0.7], [0.0],
                    [0.5], [0.0], [0.0], [0.0]], np.float32)
  scores, pos = retrieval.chunk_top_k(np.ones((1, 1), np.float32), chunk, 3, block=4)
  assert pos.tolist() == [[4, 5, 6]]
  np.testing.assert_allclose(scores, [[0.9, 0.8, 0.7]])


def test_equal_chunk_rounds_to_whole_selection_blocks():
  assert retrieval.equal_chunk(100_000, 16384) == 14304   # 7 chunks of 14286 -> 447 blocks of 32
  assert retrieval.equal_chunk(10, 3) == 3                 # below one block: as is
  assert retrieval.equal_chunk(50, 100) == 64              # one chunk, rounded up to 2 blocks


def test_chunk_bounds_cut_the_last_chunk_at_a_whole_selection_block():
  assert retrieval.chunk_bounds(10_000, 16384) == [(0, 9984), (9984, 10_000)]
  assert retrieval.chunk_bounds(100_000, 16384)[-2:] == [(71_520, 85_824), (85_824, 100_000)]
  assert retrieval.chunk_bounds(50, 100) == [(0, 50)]      # one whole block: nothing to cut
  assert retrieval.chunk_bounds(0, 100) == []


def test_top_k_jax_reads_aligned_galleries_in_place_and_stages_the_others():
  rng = np.random.default_rng(3)
  g = retrieval.aligned_empty((300, 16))
  g[:] = rng.normal(size=(300, 16))
  unaligned = retrieval.aligned_empty((300 * 16 + 4,))[4:].reshape(300, 16)   # 16 bytes off
  unaligned[:] = g
  assert retrieval.is_aligned(g) and not retrieval.is_aligned(unaligned)
  q = rng.normal(size=(4, 16)).astype(np.float32)
  want = np.argsort(-(q @ g.T), axis=1, kind='stable')[:, :7]
  # 5 chunks of 64: the two staging buffers are each reused, so a buffer overwritten while its
  # chunk was still being searched would show here.
  for gallery in (g, unaligned):
    _, idx = retrieval.top_k_jax(q, gallery, 7, chunk_size=64)
    np.testing.assert_array_equal(idx, want)


def test_faiss_missing_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'faiss', None)  # makes `import faiss` raise ImportError
  with pytest.raises(retrieval.RetrievalError, match='pip install faiss-cpu'):
    retrieval.top_k(np.zeros((1, 2)), np.zeros((3, 2)), 2, backend='faiss')
  with pytest.raises(retrieval.RetrievalError, match='valid backends: jax, faiss'):
    retrieval.top_k(np.zeros((1, 2)), np.zeros((3, 2)), 2, backend='annoy')


# ------------------------------------------------------------------------------------ fixtures

COLOURS = {'red': (200, 30, 30), 'blue': (40, 60, 210), 'green': (40, 160, 60),
           'yellow': (240, 210, 40), 'black': (20, 20, 20)}


def _photo(path, colour, size):
  img = Image.new('RGB', size, 'white')
  ImageDraw.Draw(img).ellipse([size[0] // 5, size[1] // 5, size[0] * 4 // 5, size[1] * 4 // 5],
                              fill=colour)
  img.save(path)


def _messy_folder(root):
  """5 photos (sizes, aspects, formats, a subfolder) plus junk that must be skipped."""
  (root / 'sub').mkdir(parents=True)
  _photo(root / 'red.jpg', COLOURS['red'], (60, 40))
  _photo(root / 'blue.png', COLOURS['blue'], (32, 32))
  _photo(root / 'sub' / 'green.webp', COLOURS['green'], (30, 90))
  _photo(root / 'yellow.bmp', COLOURS['yellow'], (200, 120))
  rgba = Image.new('RGBA', (50, 50), (0, 0, 0, 0))
  ImageDraw.Draw(rgba).rectangle([10, 10, 40, 40], fill=COLOURS['black'] + (255,))
  rgba.save(root / 'sub' / 'black.png')
  (root / 'notes.txt').write_text('not a photo')
  (root / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated jpeg')
  (root / 'empty.png').write_bytes(b'')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  base = tmp_path_factory.mktemp('search')
  make_tiny_export(base / 'model')
  _messy_folder(base / 'photos')
  report = index_lib.build_index(base / 'model', base / 'photos', base / 'index', chunk_size=3,
                              batch_size=4, progress=False)
  return base, report


def _sketch_png(path, size=(300, 200), invert=False, width=6):
  bg, ink = ((0, 0, 0), (255, 255, 255)) if invert else ((255, 255, 255), (0, 0, 0))
  img = Image.new('RGB', size, bg)
  d = ImageDraw.Draw(img)
  d.line([(40, 150), (120, 40), (260, 60)], fill=ink, width=width)
  d.ellipse([150, 100, 230, 170], outline=ink, width=width)
  # Anti-aliased like a real drawing app: downsample a larger image.
  img = img.resize((size[0] * 2, size[1] * 2)).resize(size, Image.Resampling.LANCZOS)
  img.save(path)
  return path


# ------------------------------------------------------------------------------------ index


def test_index_skips_junk_and_reports_it(setup):
  base, report = setup
  assert report['indexed'] == 5
  skipped = {s['file']: s['error'] for s in report['skipped']}
  assert set(skipped) == {'notes.txt', 'broken.jpg', 'empty.png'}
  assert 'not an image' in skipped['notes.txt']
  assert 'not a readable image' in skipped['broken.jpg']
  assert json.loads((base / 'index' / 'report.json').read_text()) == report
  done = (base / 'index' / 'done.txt').read_text().split()
  assert sorted(done) == sorted(['red.jpg', 'blue.png', 'sub/green.webp', 'yellow.bmp',
                                 'sub/black.png', 'notes.txt', 'broken.jpg', 'empty.png'])
  index = index_lib.load_index(base / 'index')
  assert len(index) == 5 and index.embeddings.shape == (5, 16)


def test_index_embeddings_match_the_model_on_prepared_photos(setup):
  import stbir_jax  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import prepare  # pylint: disable=g-import-not-at-top
  base, _ = setup
  index = index_lib.load_index(base / 'index')
  model = stbir_jax.load_exported(str(base / 'model'))
  photos = np.stack([prepare.load_photo(p, 32) for p in index.paths])
  np.testing.assert_allclose(index.embeddings, np.asarray(model.encode_gallery(photos)),
                             atol=1e-5)


def test_index_resumes_after_interruption(setup, tmp_path, monkeypatch):
  base, _ = setup
  real = index_lib.load_gallery_image
  calls = []

  def flaky(path, resolution):
    calls.append(path)
    if len(calls) == 5:  # dies in the second chunk
      raise KeyboardInterrupt
    return real(path, resolution)

  monkeypatch.setattr(index_lib, 'load_gallery_image', flaky)
  with pytest.raises(KeyboardInterrupt):
    index_lib.build_index(base / 'model', base / 'photos', tmp_path / 'idx', chunk_size=3,
                       batch_size=4, progress=False)
  partial = index_lib.load_index(tmp_path / 'idx')
  assert 0 < len(partial) < 5  # the first chunk was committed
  monkeypatch.setattr(index_lib, 'load_gallery_image', real)
  calls.clear()
  report = index_lib.build_index(base / 'model', base / 'photos', tmp_path / 'idx', chunk_size=3,
                              batch_size=4, progress=False)
  assert report['indexed'] == 5 and report['skipped_count'] == 3
  resumed, full = index_lib.load_index(tmp_path / 'idx'), index_lib.load_index(base / 'index')
  assert sorted(resumed.paths) == sorted(full.paths)
  order = [resumed.paths.index(p) for p in full.paths]
  np.testing.assert_allclose(resumed.embeddings[order], full.embeddings, atol=1e-6)
  # A third run has nothing left to do.
  again = index_lib.build_index(base / 'model', base / 'photos', tmp_path / 'idx', progress=False)
  assert again['indexed'] == 5 and again['chunks'] == report['chunks']


def test_index_refuses_another_folder(setup, tmp_path):
  base, _ = setup
  (tmp_path / 'other').mkdir()
  with pytest.raises(inputs.SearchError, match='images='):
    index_lib.build_index(base / 'model', tmp_path / 'other', base / 'index', progress=False)


# ------------------------------------------------------------------------------------ query


def test_raster_sketch_polarity_and_svg(tmp_path):
  dark = inputs.sketch_map(_sketch_png(tmp_path / 'dark.png'), 32)
  light = inputs.sketch_map(_sketch_png(tmp_path / 'light.jpg', invert=True), 32)
  assert dark.shape == (32, 32) and dark.dtype == np.uint8 and dark.max() >= 1
  # Same drawing in either polarity: nearly the same ink.
  inter = np.sum((dark > 0) & (light > 0))
  union = np.sum((dark > 0) | (light > 0))
  assert inter / union > 0.8
  svg = tmp_path / 's.svg'
  svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
                 '<path d="M10 90 L50 10 L90 90"/><path d="M30 60 L70 60"/></svg>')
  m = inputs.sketch_map(svg, 32)
  assert set(np.unique(m)) == {0, 1, 2}  # two strokes in document order
  with pytest.raises(inputs.SearchError, match='no such file'):
    inputs.sketch_map(tmp_path / 'nope.png', 32)


def test_fit_ink_fills_the_frame_and_fit_canvas_keeps_the_place(setup, tmp_path):
  """A 4 px pen line from (20, 20) to (60, 20) on a 256 px page, read at 32 px."""
  page = Image.new('L', (256, 256), 255)
  ImageDraw.Draw(page).line([(20, 20), (60, 20)], fill=0, width=4)
  page.save(tmp_path / 'corner.png')
  cols = lambda m: np.nonzero(m.any(axis=0))[0]
  canvas = inputs.sketch_map(tmp_path / 'corner.png', 32, fit='canvas')
  # Where it was on the page: about (20..60) / 8 = 2.5..7.5 across, 2.5 down.
  assert np.nonzero(canvas.any(axis=1))[0].tolist() == [3]
  assert cols(canvas).tolist() == [3, 4, 5, 6, 7]
  ink = inputs.sketch_map(tmp_path / 'corner.png', 32)           # fit='ink' (default)
  assert np.nonzero(ink.any(axis=1))[0].tolist() == [14]         # centred ...
  assert cols(ink).tolist() == list(range(2, 30))                 # ... across the frame
  base, _ = setup
  searcher = Searcher(base / 'index', fit='canvas')
  np.testing.assert_array_equal(searcher.encode(tmp_path / 'corner.png')[1], canvas)
  with pytest.raises(inputs.SearchError, match="--fit 'middle'; valid: ink, canvas"):
    Searcher(base / 'index', fit='middle')


def test_queries_rank_by_cosine_in_every_mode(setup, tmp_path):
  base, _ = setup
  s = Searcher(base / 'index')
  sketch = _sketch_png(tmp_path / 'q.png')
  for kwargs, mode in [(dict(sketch=sketch), 'sketch'), (dict(text='a red round thing'), 'text'),
                       (dict(sketch=sketch, text='a red round thing'), 'sketch+text')]:
    results, smap, text = s.search(k=3, **kwargs)
    assert (smap is not None) == ('sketch' in mode) and bool(text) == ('text' in mode)
    q, _, _ = s.encode(**kwargs)
    sims = (q @ s.index.embeddings.T)[0]
    want = np.argsort(-sims, kind='stable')[:3]
    assert [r.path for r in results] == [s.index.paths[i] for i in want]
    np.testing.assert_allclose([r.score for r in results], sims[want], atol=1e-5)
    assert [r.rank for r in results] == [1, 2, 3]
  # The modalities matter: the three queries are different vectors.
  qs = [s.encode(sketch=sketch)[0], s.encode(text='red')[0], s.encode(sketch=sketch, text='red')[0]]
  assert np.abs(qs[0] - qs[1]).max() > 1e-4 and np.abs(qs[0] - qs[2]).max() > 1e-4


def test_bad_queries_explain(setup, tmp_path):
  base, _ = setup
  s = Searcher(base / 'index')
  with pytest.raises(inputs.SearchError, match='empty query'):
    s.search(text='   ')
  blank = tmp_path / 'blank.png'
  Image.new('RGB', (64, 64), 'white').save(blank)
  with pytest.raises(inputs.SearchError, match='empty query'):
    s.search(sketch=blank)
  with pytest.raises(inputs.SearchError, match='needs a text'):
    s.search(sketch=_sketch_png(tmp_path / 'q.png'), mode='sketch+text')
  (tmp_path / 'bad.png').write_bytes(b'nope')
  with pytest.raises(inputs.SearchError, match='bad.png'):
    s.search(sketch=tmp_path / 'bad.png')


def test_cli_query_prints_ranking_and_writes_grid_and_html(setup, tmp_path, capsys):
  base, _ = setup
  sketch = _sketch_png(tmp_path / 'q.png')
  png, page = tmp_path / 'results.png', tmp_path / 'results.html'
  assert run_cli(['query', f'--index={base / "index"}', f'--sketch={sketch}',
                      '--text=a blue thing', '-k', '4', f'--out={png}']) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0] == 'top 4 of 5 (sketch+text query)'
  rows = [line.split() for line in out[1:5]]
  assert [r[0] for r in rows] == ['1', '2', '3', '4']
  scores = [float(r[1]) for r in rows]
  assert scores == sorted(scores, reverse=True)
  assert all(os.path.isfile(r[2]) for r in rows)
  grid = Image.open(png)
  assert grid.width > 4 * 160 and grid.height >= 160
  assert run_cli(['query', f'--index={base / "index"}', '--text=a blue thing', '-k', '2',
                      f'--out={page}']) == 0
  text = page.read_text()
  assert text.count('<figure class="result">') == 2 and 'a blue thing' in text
  assert run_cli(['query', f'--index={tmp_path / "nothing"}', '--text=x']) == 2
  assert 'no index.json' in capsys.readouterr().err


def test_cli_index_prints_summary(setup, tmp_path, capsys):
  base, _ = setup
  assert run_cli(['index', f'--model={base / "model"}', f'--images={base / "photos"}',
                      f'--out={tmp_path / "ix"}', '--quiet']) == 0
  out = capsys.readouterr().out
  assert 'indexed 5 images' in out and 'skipped 3' in out and 'notes.txt' in out


def test_faiss_backend_matches_jax():
  pytest.importorskip('faiss')
  rng = np.random.default_rng(1)
  q = rng.normal(size=(2, 8)).astype(np.float32)
  g = rng.normal(size=(50, 8)).astype(np.float32)
  s_jax, i_jax = retrieval.top_k(q, g, 7, backend='jax', chunk_size=16)
  s_faiss, i_faiss = retrieval.top_k(q, g, 7, backend='faiss')
  np.testing.assert_array_equal(i_jax, i_faiss)
  np.testing.assert_allclose(s_jax, s_faiss, atol=1e-5)


# ------------------------------------------------------------------------------------ hostile


def _error_lines(capsys):
  return capsys.readouterr().err.strip().splitlines()


def test_cli_refuses_huge_and_bomb_sketches_in_one_line(setup, tmp_path, capsys):
  base, _ = setup
  for name, (w, h), size in [('bomb.png', (30000, 30000), '900,000,000 pixels'),
                             ('huge.png', (7000, 7000), '7000x7000 pixels')]:
    sketch = _images.png_header(tmp_path / name, w, h)
    assert run_cli(['query', f'--index={base / "index"}', f'--sketch={sketch}']) == 2
    assert _error_lines(capsys) == [f'search: error: {sketch}: {size} is too large: the limit is '
                                    '40,000,000 pixels (a decompression bomb, or a mistake: '
                                    'downscale it)']
  # A bomb among the photos is skipped by `index`, with the same reason.
  with pytest.raises(inputs.SearchError, match='900,000,000 pixels is too large: the limit is '
                                               '80,000,000 pixels'):
    inputs.load_gallery_image(tmp_path / 'bomb.png', 32)


def test_cli_non_utf8_text_is_one_line_naming_the_argument(setup, capsys):
  base, _ = setup
  # What Python makes of the argv bytes b'red \xff suede' in a UTF-8 locale.
  text = b'red \xff suede'.decode('utf-8', 'surrogateescape')
  assert run_cli(['query', f'--index={base / "index"}', f'--text={text}']) == 2
  assert _error_lines(capsys) == ['search: error: --text: not valid UTF-8 (byte 0xff at position '
                                  '4); give the description in UTF-8 (e.g. set a UTF-8 locale, '
                                  'LANG=C.UTF-8)']
  with pytest.raises(inputs.SearchError, match=r'^text: not valid UTF-8 \(byte 0xff'):
    Searcher(base / 'index').search(text=text)


@pytest.mark.parametrize('k', ['0', '-5'])
def test_cli_refuses_k_below_1(setup, k, capsys):
  base, _ = setup
  assert run_cli(['query', f'--index={base / "index"}', '--text=red', '-k', k]) == 2
  assert _error_lines(capsys) == [f'search: error: --k={k}: the number of results must be a '
                                  'whole number >= 1']


def test_searcher_refuses_k_below_1_or_not_whole(setup):
  base, _ = setup
  s = Searcher(base / 'index')
  for k in (0, -5, 2.5, True, '3'):
    with pytest.raises(inputs.SearchError, match=r'the number of results must be a whole number'):
      s.search(text='red', k=k)
  assert len(s.search(text='red', k=np.int64(2))[0]) == 2


def test_cli_refuses_a_missing_command_another_commands_flag_and_missing_flags(capsys):
  assert run_cli(['--text=red']) == 2
  assert _error_lines(capsys) == ["search: error: expected one command, index or query; got []"]
  assert run_cli(['query', '--index=/nowhere', '--images=photos']) == 2
  assert _error_lines(capsys)[0].startswith('search: error: --images is not a flag of `query`')
  assert run_cli(['index', '--model=m', '--out=o']) == 2
  assert _error_lines(capsys) == ['search: error: `index` needs --images']
  assert run_cli(['index', '--model=m', '--images=i', '--out=o', '--backend=jax']) == 2
  assert "`index` builds an approximate index" in _error_lines(capsys)[0]


def test_python_m_search_is_the_program_with_one_line_errors(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=repo, JAX_PLATFORMS='cpu')
  no_index = f'search: error: --index {tmp_path}: no index.json'
  for args, error in [(['query', '--k=many'], 'search: error: flag --k=many: invalid literal'),
                      (['query', f'--index={tmp_path}'], no_index)]:
    proc = subprocess.run([sys.executable, '-m', 'stbir_jax.search', *args], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(error), proc.stderr
