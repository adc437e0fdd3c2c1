"""Tests of stbir_jax/data/sketch_io.py: SVG parsing, stroke arrays, RDP, rendering."""

import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageFilter

import _images
from stbir_jax.data import sketch_io, sketch_raster, sketch_svg
from stbir_jax.data import strokes as strokes_lib
from stbir_jax.data.formats import fixtures


def _one(d):
  strokes = sketch_svg.path_to_strokes(d)
  assert len(strokes) == 1
  return strokes[0]


def _svg(body, root_attrs='width="100" height="50"'):
  return f'<svg xmlns="http://www.w3.org/2000/svg" {root_attrs}>{body}</svg>'


# ----------------------------------------------------------------------------- path commands


def test_move_line_absolute():
  np.testing.assert_allclose(_one('M10 20 L30 40'), [[10, 20], [30, 40]])


def test_relative_line_h_v_and_close():
  got = _one('m10 20 l5 5 h10 v-5 H0 V0 z')
  np.testing.assert_allclose(got, [[10, 20], [15, 25], [25, 25], [25, 20], [0, 20], [0, 0],
                                   [10, 20]])


def test_implicit_lineto_after_moveto():
  np.testing.assert_allclose(_one('M0 0 10 0 10 10'), [[0, 0], [10, 0], [10, 10]])
  np.testing.assert_allclose(_one('m1 1 2 2'), [[1, 1], [3, 3]])


def test_compact_numbers():
  np.testing.assert_allclose(_one('M.5.5L10-5'), [[0.5, 0.5], [10, -5]])
  np.testing.assert_allclose(_one('M1e1,2E0 L-1.5-.5'), [[10, 2], [-1.5, -0.5]])


def test_cubic_absolute_and_relative():
  a = _one('M0 0 C0 10 10 10 10 0')
  assert a.shape == (17, 2)  # start + 16 samples
  np.testing.assert_allclose(a[8], [5, 7.5])   # t = 0.5
  np.testing.assert_allclose(a[-1], [10, 0])
  r = _one('M10 10 c0 10 10 10 10 0')
  np.testing.assert_allclose(r, a + 10)


def test_smooth_cubic_reflects_control_point():
  s = sketch_svg.path_to_strokes('M0 0 C0 10 10 10 10 0 S20 -10 20 0')[0]
  # Second curve: (10,0) (10,-10) (20,-10) (20,0); at t = 0.5: (15, -7.5).
  np.testing.assert_allclose(s[16 + 8], [15, -7.5])
  np.testing.assert_allclose(s[-1], [20, 0])


def test_quadratic_and_smooth_quadratic():
  q = _one('M0 0 Q5 10 10 0')
  np.testing.assert_allclose(q[8], [5, 5])
  np.testing.assert_allclose(_one('m0 0 q5 10 10 0'), q)
  t = _one('M0 0 Q5 10 10 0 T20 0')  # reflected control (15, -10)
  np.testing.assert_allclose(t[16 + 8], [15, -5])


def test_subpaths_are_strokes_and_z_restarts_at_start():
  strokes = sketch_svg.path_to_strokes('M0 0 L1 1 M5 5 L6 6 Z l1 0')
  assert len(strokes) == 3
  np.testing.assert_allclose(strokes[1], [[5, 5], [6, 6], [5, 5]])
  np.testing.assert_allclose(strokes[2], [[5, 5], [6, 5]])


@pytest.mark.parametrize('d, msg', [
    ('L0 0', 'must start with M'),
    ('M0 0 L10', 'needs 2 numbers'),
    ('M0 0 X5 5', "unexpected 'X'"),
    ('M0 0 Z 5 5', 'without a command'),
])
def test_malformed_path_data(d, msg):
  with pytest.raises(sketch_io.SketchError, match=msg):
    sketch_svg.path_to_strokes(d)


# ----------------------------------------------------------------------------- transforms, elements


def test_transforms():
  pt = np.array([[10.0, 5.0]])
  apply = lambda t: sketch_svg._apply(sketch_svg.parse_transform(t), pt)[0]
  np.testing.assert_allclose(apply('translate(3)'), [13, 5])
  np.testing.assert_allclose(apply('scale(2, 3)'), [20, 15])
  np.testing.assert_allclose(apply('rotate(90)'), [-5, 10], atol=1e-9)
  np.testing.assert_allclose(apply('rotate(90 5 5)'), [5, 10], atol=1e-9)
  np.testing.assert_allclose(apply('matrix(1 0 0 1 3 4)'), [13, 9])
  np.testing.assert_allclose(apply('skewX(45)'), [15, 5])
  # A list applies right to left: scale first, then translate.
  np.testing.assert_allclose(apply('translate(1,1) scale(2)'), [21, 11])
  with pytest.raises(sketch_io.SketchError, match='transform'):
    sketch_svg.parse_transform('spin(3)')


def test_svg_group_and_element_transforms_compose():
  strokes, canvas = sketch_svg.parse_svg(_svg(
      '<g transform="translate(10,20)"><path transform="scale(2)" d="M1 1 L2 2"/></g>'))
  np.testing.assert_allclose(strokes[0], [[12, 22], [14, 24]])
  assert canvas == (0.0, 0.0, 100.0, 50.0)


def test_svg_polyline_polygon_line_and_ignored_elements():
  strokes, canvas = sketch_svg.parse_svg(_svg(
      '<rect width="100" height="50" fill="white"/>'
      '<polyline points="0,0 10,0 10,10"/><polygon points="0 0 5 0 5 5"/>'
      '<line x1="1" y1="2" x2="3" y2="4"/><circle cx="5" cy="5" r="3"/>'
      '<path d="M0 0 L9 9" style="display: none"/>', 'viewBox="0 0 20 10"'))
  assert len(strokes) == 3
  np.testing.assert_allclose(strokes[0], [[0, 0], [10, 0], [10, 10]])
  np.testing.assert_allclose(strokes[1], [[0, 0], [5, 0], [5, 5], [0, 0]])
  np.testing.assert_allclose(strokes[2], [[1, 2], [3, 4]])
  assert canvas == (0.0, 0.0, 20.0, 10.0)


def test_svg_app_style_file(tmp_path):
  strokes, _ = sketch_io.load_strokes(fixtures.write_svg(tmp_path / 's.svg', dx=5))
  want = fixtures.svg_strokes(dx=5)
  assert len(strokes) == 3
  np.testing.assert_allclose(strokes[0], want[0])
  np.testing.assert_allclose(strokes[1][[0, 8, 16, 24, 32]], want[1][[0, 16, 32, 48, 64]],
                             atol=1e-9)
  np.testing.assert_allclose(strokes[2], want[2])


@pytest.mark.parametrize('text, msg', [
    ('<svg><path d="M0 0 L1 1"></svg', 'malformed SVG'),
    ('<html/>', 'expected an <svg> root'),
    ('<svg><path d="M0 0 L1"/></svg>', 'needs 2 numbers'),
    ('<svg><polyline points="1 2 3"/></svg>', 'odd number'),
])
def test_malformed_svg_names_the_file(tmp_path, text, msg):
  path = tmp_path / 'bad.svg'
  path.write_text(text)
  with pytest.raises(sketch_io.SketchError, match=msg) as e:
    sketch_io.load_sketch(path, 32)
  assert 'bad.svg' in str(e.value)


# ----------------------------------------------------------------------------- arrays, JSON, RDP


def test_absolute_and_stroke3_arrays_agree():
  absolute = np.array([[0, 0, 0], [10, 0, 1], [0, 5, 0], [0, 15, 1]], float)
  strokes = sketch_io.strokes_from_array(absolute)
  assert len(strokes) == 2
  np.testing.assert_allclose(strokes[1], [[0, 5], [0, 15]])
  deltas = np.concatenate([absolute[:1], np.diff(absolute, axis=0)])
  deltas[:, 2] = absolute[:, 2]
  rel = sketch_io.strokes_from_array(deltas, relative=True)
  for a, b in zip(strokes, rel, strict=True):
    np.testing.assert_allclose(a, b)
  with pytest.raises(sketch_io.SketchError, match=r'\(N, 3\)'):
    sketch_io.strokes_from_array(np.zeros((4, 2)))


def test_stroke_json_forms():
  pts = [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]
  for obj in (pts, {'strokes': pts}, {'drawing': [[[0, 1], [0, 1]], [[2, 3], [2, 3]]]},
              {'points': [[0, 0, 0], [1, 1, 1], [2, 2, 0], [3, 3, 1]]},
              {'stroke3': [[0, 0, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]]}):
    got = sketch_io.strokes_from_json(obj)
    assert len(got) == 2
    np.testing.assert_allclose(got[1], [[2, 2], [3, 3]])
  with pytest.raises(sketch_io.SketchError, match='none of the keys'):
    sketch_io.strokes_from_json({'lines': []})


def test_rdp():
  line = np.stack([np.arange(11.0), np.zeros(11)], 1)
  np.testing.assert_allclose(strokes_lib.rdp(line, 0.1), [[0, 0], [10, 0]])
  bent = np.array([[0, 0], [5, 0.05], [10, 0], [10, 10]])
  np.testing.assert_allclose(strokes_lib.rdp(bent, 0.5), [[0, 0], [10, 0], [10, 10]])
  np.testing.assert_allclose(strokes_lib.rdp(bent, 0.01), bent)


# ----------------------------------------------------------------------------- rendering


def test_render_values_are_stroke_order_and_fit_centres():
  m = sketch_io.render_strokes([[(0, 0), (10, 0)], [(0, 10), (10, 10)]], 32, line_width=1)[..., 0]
  # margin 1, scale 29/10: y = (0 - 5) * 2.9 + 15.5 = 1 and 30.
  assert set(np.unique(m)) == {0, 1, 2}
  assert (m[1, 1:31] == 1).all() and (m[30, 1:31] == 2).all()
  assert m.sum() == 30 * 1 + 30 * 2


def test_render_preserves_aspect():
  m = sketch_io.render_strokes([[(0, 0), (100, 0)]], 32, line_width=1)[..., 0]
  rows, cols = np.nonzero(m)
  assert set(rows) <= {15, 16} and cols.min() == 1 and cols.max() == 30


def test_render_clips_stroke_index_at_255():
  strokes = [[(k, 0), (k, 1)] for k in range(300)]
  m = sketch_io.render_strokes(strokes, 64, line_width=1)
  assert m.max() == 255 and m.dtype == np.uint8 and m.shape == (64, 64, 1)


def _two_lines(invert=False, rgba=False):
  if rgba:
    im = Image.new('RGBA', (100, 60), (0, 0, 0, 0))
    ink = (20, 20, 200, 255)
  else:
    im = Image.new('L', (100, 60), 0 if invert else 255)
    ink = 255 if invert else 0
  d = ImageDraw.Draw(im)
  d.line([(10, 40), (90, 40)], fill=ink, width=3)
  d.line([(10, 10), (90, 10)], fill=ink, width=3)
  return im


@pytest.mark.parametrize('kw', [{}, {'invert': True}, {'rgba': True}])
def test_raster_components_any_polarity(kw):
  m = sketch_raster.render_raster(_two_lines(**kw), 32)[..., 0]
  assert set(np.unique(m)) == {0, 1, 2}
  rows1, rows2 = np.nonzero(m == 1)[0], np.nonzero(m == 2)[0]
  assert rows1.max() < rows2.min()   # top line is stroke 1


def test_raster_single_stroke_and_blank():
  m = sketch_raster.render_raster(_two_lines(), 32, raster_mode='single')
  assert set(np.unique(m)) == {0, 1}
  assert not sketch_raster.render_raster(Image.new('L', (50, 50), 255), 32).any()


def test_svg_and_its_png_give_matching_stroke_maps(tmp_path):
  svg = fixtures.write_svg(tmp_path / 's.svg')
  # A 3-px pen on a wider page, as a sketch app exports it.
  png = fixtures.draw_strokes_png(tmp_path / 's.png', fixtures.svg_strokes(), size=(300, 256),
                                  width=3)
  a = sketch_io.load_sketch(svg, 224)[..., 0] > 0
  b = sketch_io.load_sketch(png, 224)[..., 0] > 0
  iou = (a & b).sum() / (a | b).sum()
  assert iou > 0.7, iou


def test_load_sketch_errors_name_the_file(tmp_path):
  bad = tmp_path / 'broken.png'
  bad.write_bytes(b'not a png')
  with pytest.raises(sketch_io.SketchError, match='broken.png'):
    sketch_io.load_sketch(bad, 32)
  with pytest.raises(sketch_io.SketchError, match='unknown sketch file type'):
    sketch_io.load_sketch(tmp_path / 'x.tiff', 32)


# ----------------------------------------------------------------------------- large rasters


def _full_resolution_source_mask(image, resolution):
  """The ink mask at twice the output size as it was computed before rendering had bounded work:
  a float median threshold, then PIL's MaxFilter at full resolution (cost ~ window area)."""
  g = np.asarray(image.convert('L'), dtype=np.float32)
  bg = float(np.median(g))
  far = float(g.min()) if bg >= 128 else float(g.max())
  mask = (g < (bg + far) / 2) if bg >= 128 else (g > (bg + far) / 2)
  h, w = mask.shape
  factor = max(h, w) / (2 * resolution)
  ink = Image.fromarray(mask.astype(np.uint8) * 255)
  size = (max(1, round(w / factor)), max(1, round(h / factor)))
  if factor >= 2:
    ink = ink.filter(ImageFilter.MaxFilter(int(factor) // 2 * 2 + 1))
  return np.asarray(ink.resize(size, Image.Resampling.BOX)) >= 96


def test_dilation_is_pil_max_filter_bit_for_bit():
  rng = np.random.default_rng(0)
  for shape in [(7, 5), (40, 33), (61, 100), (9, 130)]:
    for density in (0.003, 0.05):
      mask = rng.random(shape) < density
      for radius in (1, 2, 3, 4, 7, 8, 15, 40):
        want = Image.fromarray(mask.astype(np.uint8) * 255).filter(
            ImageFilter.MaxFilter(2 * radius + 1))
        got = np.unpackbits(sketch_raster.dilate_bits(np.packbits(mask, axis=1), radius), axis=1,
                            count=shape[1])
        np.testing.assert_array_equal(got, np.asarray(want) > 0, err_msg=f'{shape} r={radius}')


@pytest.mark.parametrize('size,resolution', [((300, 200), 32), ((640, 640), 32),
                                             ((900, 500), 64), ((130, 90), 64)])
@pytest.mark.parametrize('mode', ['L', 'RGB'])
def test_large_rasters_render_as_with_the_full_resolution_max_filter(size, resolution, mode,
                                                                     monkeypatch):
  """Shrink factors 4.7, 10, 7 and 1.0: the same stroke map, pixel for pixel."""
  w, h = size
  page = Image.new('L', (2 * w, 2 * h), 255)  # drawn at 2x, then shrunk: anti-aliased ink
  draw = ImageDraw.Draw(page)
  draw.line([(0.1 * w, 1.5 * h), (0.9 * w, 0.3 * h), (1.8 * w, 0.5 * h)], fill=30, width=6)
  draw.ellipse([w, h, 1.7 * w, 1.8 * h], outline=0, width=3)
  draw.line([(0.2 * w, 0.2 * h), (0.3 * w, 1.9 * h)], fill=60, width=2)
  page = page.resize(size, Image.Resampling.LANCZOS).convert(mode)
  got = sketch_raster.render_raster(page, resolution)
  monkeypatch.setattr(sketch_raster, '_source_mask', _full_resolution_source_mask)
  want = sketch_raster.render_raster(page, resolution)
  assert want.any()
  np.testing.assert_array_equal(got, want)


def test_a_4000_px_sketch_is_rendered_with_bounded_work(tmp_path, monkeypatch):
  """A 4000 x 4000 page read at 64 px: the old MaxFilter(31) at full resolution compared 961
  pixels for each of the 16 million (100 s here). Now: no rank filter, a dilation that touches
  fewer bytes than 3 passes over the pixels, and thinning on the 128 px resampled mask."""
  path = _images.big_sketch_png(tmp_path / 'big.png', 4000)
  filters, shifted, thinned = [], [], []
  real_filter = Image.Image.filter
  real_shifted, real_thin = sketch_raster._shifted, sketch_raster.thin
  monkeypatch.setattr(Image.Image, 'filter',
                      lambda im, f: filters.append((im.size, f)) or real_filter(im, f))
  monkeypatch.setattr(sketch_raster, '_shifted',
                      lambda bits, s, ax: shifted.append(bits.size) or real_shifted(bits, s, ax))
  monkeypatch.setattr(sketch_raster, 'thin', lambda m: thinned.append(m.shape) or real_thin(m))
  start = time.process_time()
  m = sketch_io.load_sketch(path, 64)[..., 0]
  seconds = time.process_time() - start
  assert filters == []
  assert 0 < sum(shifted) < 3 * 4000 * 4000
  assert thinned == [(128, 128)]
  assert set(np.unique(m)) == {0, 1, 2}  # the polyline and the circle
  assert seconds < 20, seconds  # generous: about 0.6 s of CPU without other load


def test_sketch_larger_than_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
  def no_decoding(im):
    raise AssertionError('decoded')

  monkeypatch.setattr(ImageFile.ImageFile, 'load', no_decoding)
  huge = _images.png_header(tmp_path / 'huge.png', 7000, 7000)
  with pytest.raises(sketch_io.SketchError, match=r'huge\.png: 7000x7000 pixels is too large: '
                                                  r'the limit is 40,000,000 pixels'):
    sketch_io.load_sketch(huge, 32)
  bomb = _images.png_header(tmp_path / 'bomb.png', 30000, 30000)
  with pytest.raises(sketch_io.SketchError, match=r'bomb\.png: 900,000,000 pixels is too large: '
                                                  r'the limit is 40,000,000 pixels'):
    sketch_io.load_sketch(bomb, 32)
