"""End-to-end: prepare each format into TFDS array_record, read it back via prepared.py."""

import json

import numpy as np
import pytest

from stbir_jax.data import prepare, prepared
from stbir_jax.data.formats import fixtures

R = 32


def _run(fmt, src, out, *extra, name=None):
  argv = [f'--format={fmt}', f'--src={src}', f'--out={out}', f'--resolution={R}', '--quiet',
          *extra] + ([f'--name={name}'] if name else [])
  assert prepare.main(argv) == 0
  return json.loads((out / (name or fmt) / prepared.REPORT_FILE).read_text())


def _records(out, name, split):
  src = prepared.data_source(out, name, split)
  return {r['photo_id'].decode(): r for r in (src[i] for i in range(len(src)))}


def test_qmul_with_captions_end_to_end(tmp_path):
  src = fixtures.qmul_tree(tmp_path / 'src', svg=True)
  caps = tmp_path / 'caps.json'
  caps.write_text(json.dumps({'1001': ['red leather', 'high heel'], 'nope': 'x'}))
  report = _run('shoev2', src, tmp_path / 'out', f'--captions={caps}')
  info = prepared.info(tmp_path / 'out', 'shoev2')
  assert info == dict(category_names=['shoe'], resolution=R, splits={'train': 3, 'test': 1})
  train = _records(tmp_path / 'out', 'shoev2', 'train')
  r = train['1001']
  assert r['image'].shape == (R, R, 3) and r['image'].dtype == np.uint8
  # The photo's own colour sits in the centre; white padding above and below (40x30 photo).
  np.testing.assert_array_equal(r['image'][R // 2, R // 2], fixtures.colour_of(1001))
  np.testing.assert_array_equal(r['image'][0, R // 2], [255, 255, 255])
  assert r['sketches'].shape == (2, R, R, 1) and r['sketches'].max() == 3
  assert r['texts'] == [b'red leather', b'high heel']
  assert r['family'] == -1 and r['category'] == 0
  assert train['1003']['sketches'].shape == (0, R, R, 1)
  instances = sorted(x['instance'] for x in train.values())
  test = _records(tmp_path / 'out', 'shoev2', 'test')
  assert sorted(instances + [test['2001']['instance']]) == [0, 1, 2, 3]
  assert report['totals'] == {'train': {'photos': 3, 'sketches': 3, 'texts': 2},
                              'test': {'photos': 1, 'sketches': 1, 'texts': 0}}
  assert report['photos_without_sketch'] == ['1003']
  assert report['captions_without_photo'] == ['nope']
  assert len(report['sketches_without_photo']) == 1


def test_sketchy_fscoco_manifest_end_to_end(tmp_path):
  out = tmp_path / 'out'
  _run('sketchy', fixtures.sketchy_tree(tmp_path / 'sk'), out)
  recs = _records(out, 'sketchy', 'train')
  assert set(recs) == {'airplane/a1', 'cat/c1', 'cat/c2'}
  assert recs['cat/c1']['category'] == 1 and recs['airplane/a1']['sketches'].shape[0] == 2
  assert set(_records(out, 'sketchy', 'test')) == {'airplane/a2'}

  _run('fscoco', fixtures.fscoco_tree(tmp_path / 'fs'), out)
  recs = _records(out, 'fscoco', 'train')
  assert recs['21']['texts'] == [b'two giraffes near a tree', b'a blue sky']
  # Vector sketch: stroke order 1..3 kept.
  assert set(np.unique(recs['11']['sketches'])) == {0, 1, 2, 3}

  _run('manifest', fixtures.manifest_tree(tmp_path / 'mf'), out)
  info = prepared.info(out, 'manifest')
  assert info['category_names'] == ['chair', 'shoe']
  assert info['splits']['validation'] == 1 and info['splits']['test'] >= 1


def test_unreadable_files_are_skipped_and_reported(tmp_path):
  src = fixtures.qmul_tree(tmp_path / 'src')
  (src / 'trainA' / '1002_1.png').write_bytes(b'garbage')
  (src / 'trainA' / '1001_3.svg').write_text('<svg><path d="M0 0 L1"/></svg>')
  (src / 'trainB' / '1003.png').write_bytes(b'garbage')
  report = _run('shoev2', src, tmp_path / 'out')
  files = sorted(u['file'] for u in report['unreadable'])
  assert files == sorted(str(src / p) for p in ('trainA/1001_3.svg', 'trainA/1002_1.png',
                                                 'trainB/1003.png'))
  assert prepared.info(tmp_path / 'out', 'shoev2')['splits'] == {'train': 2, 'test': 1}
  assert report['photos_without_sketch'] == ['1002']


def _within_one_pixel(a, b):
  """Share of the ink of both maps that lies within one pixel of the other map's ink."""

  def grow(m):
    p = np.pad(m, 1)
    return np.any([p[dy:dy + m.shape[0], dx:dx + m.shape[1]]
                   for dy in range(3) for dx in range(3)], axis=0)

  return ((a & grow(b)).sum() + (b & grow(a)).sum()) / (a.sum() + b.sum())


def test_qmul_release_svg_and_its_png_give_matching_maps(tmp_path):
  src = fixtures.qmul_release_tree(tmp_path / 'src')
  out = tmp_path / 'out'
  report = _run('shoev2', src, out, '--resolution=64')
  assert report['totals'] == {'train': {'photos': 3, 'sketches': 3, 'texts': 0},
                              'test': {'photos': 1, 'sketches': 1, 'texts': 0}}
  assert report['sketches_without_photo'] == [str(src / 'ShoeV2_sketch' / '9999_1.svg')]
  (src / 'ShoeV2_sketch').rename(tmp_path / 'svg_elsewhere')  # now only the PNGs are left
  _run('shoev2', src, out, '--resolution=64', name='shoev2_png')
  for split, n in (('train', 3), ('test', 1)):
    svg, png = _records(out, 'shoev2', split), _records(out, 'shoev2_png', split)
    assert len(svg) == n and set(svg) == set(png)
    for pid in svg:
      assert len(svg[pid]['sketches']) == len(png[pid]['sketches'])
      for a, b in zip(svg[pid]['sketches'], png[pid]['sketches'], strict=True):
        assert set(np.unique(a)) == {0, 1, 2, 3}  # SVG: three strokes in drawing order
        a, b = a[..., 0] > 0, b[..., 0] > 0
        # Lines are 1 px wide below 160 px, where a one-pixel shift alone can halve the plain
        # IoU: compare with a one-pixel tolerance (plain IoU at 224 px: sketch_io_test).
        assert _within_one_pixel(a, b) > 0.95
        assert _within_one_pixel(a, b[:, ::-1]) < 0.6  # its mirror image does not match


def test_raster_mode_single_keeps_a_raster_sketch_as_one_stroke(tmp_path):
  src = fixtures.qmul_tree(tmp_path / 'src')
  _run('shoev2', src, tmp_path / 'out', '--resolution=64')
  report = _run('shoev2', src, tmp_path / 'out', '--resolution=64', '--raster_mode=single',
                name='single')
  assert report['raster_mode'] == 'single'
  parts = _records(tmp_path / 'out', 'shoev2', 'train')['1002']['sketches'][0]
  whole = _records(tmp_path / 'out', 'single', 'train')['1002']['sketches'][0]
  assert parts.max() == 2 and set(np.unique(whole)) == {0, 1}   # box+wave touch; polyline apart
  np.testing.assert_array_equal(parts > 0, whole > 0)


def test_broken_vector_sketches_are_skipped_and_reported(tmp_path):
  src = fixtures.fscoco_tree(tmp_path / 'fs')
  (src / 'vector_sketches' / '1' / '11.npy').write_bytes(b'not numpy')
  report = _run('fscoco', src, tmp_path / 'out')
  assert [u['file'] for u in report['unreadable']] == [
      str(src / 'vector_sketches' / '1' / '11.npy')]
  assert 'cannot read .npy' in report['unreadable'][0]['error']
  assert _records(tmp_path / 'out', 'fscoco', 'train')['11']['sketches'].shape[0] == 0
  assert report['photos_without_sketch'] == ['11', '22']

  manifest = fixtures.manifest_tree(tmp_path / 'mf')
  sk = manifest.parent / 'sk'
  (sk / 'p2.json').write_text('{"strokes": [[1, 2, 3]]}')
  (sk / 'p0.svg').write_text('<svg><path d="M0 0 L1 1"></svg')
  report = _run('manifest', manifest, tmp_path / 'out')
  errors = {u['file']: u['error'] for u in report['unreadable']}
  assert set(errors) == {str(sk / 'p2.json'), str(sk / 'p0.svg')}
  assert 'malformed SVG' in errors[str(sk / 'p0.svg')]
  assert 'stroke 0 must be a list of [x, y] points' in errors[str(sk / 'p2.json')]
  recs = _records(tmp_path / 'out', 'manifest', 'train')
  assert recs['photos/p0']['sketches'].shape[0] == 1   # the PNG twin is kept


def test_errors(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match=r'python -m stbir_jax.data.prepare --format=shoev2'):
    prepared.data_source(tmp_path, 'shoev2', 'train')
  assert prepare.main(['--format=sketchy', f'--src={tmp_path / "none"}', f'--out={tmp_path}']) == 2
  assert 'no such file or directory' in capsys.readouterr().err
  src = fixtures.qmul_tree(tmp_path / 'src')
  _run('shoev2', src, tmp_path / 'out')
  with pytest.raises(ValueError, match='no split .validation.; valid splits: test, train'):
    prepared.data_source(tmp_path / 'out', 'shoev2', 'validation')
  assert prepare.main(['--format=shoev2', f'--src={src}', f'--out={tmp_path / "out"}',
                       '--quiet']) == 2
  assert 'already exists; pass --overwrite' in capsys.readouterr().err
  _run('shoev2', src, tmp_path / 'out', '--overwrite')


def test_source_pickles(tmp_path):
  import pickle  # pylint: disable=g-import-not-at-top
  _run('shoev2', fixtures.qmul_tree(tmp_path / 'src'), tmp_path / 'out')
  src = pickle.loads(pickle.dumps(prepared.data_source(tmp_path / 'out', 'shoev2', 'train')))
  assert len(src) == 3 and src[0]['image'].shape == (R, R, 3)


def test_stbir_demo_manifests_end_to_end(tmp_path):
  data = fixtures.stbir_demo_tree(tmp_path / 'demo')
  out = tmp_path / 'out'
  report = _run('stbir_demo', data, out, f'--root={tmp_path / "demo"}')
  info = prepared.info(out, 'stbir_demo')
  assert info == {'category_names': ['chair', 'shoe'], 'resolution': R,
                  'splits': {'train': 3, 'validation': 1, 'test': 1}}
  recs = {**_records(out, 'stbir_demo', 'train'), **_records(out, 'stbir_demo', 'validation'),
          **_records(out, 'stbir_demo', 'test')}
  # Each photo with its own colour, its sketches (told apart by their number of bars = strokes),
  # its text, category and family (virtual_class).
  expected = {'chair:320': (320, [2, 3], [b'dark brown velvet cushion, black wood frame'], 0, 0),
              'chair:321': (321, [1], [b'light oak frame, cream seat'], 0, 0),
              'shoe:1001': (1001, [4], [b'black suede ankle boot, laces'], 1, -1),
              'chair:322': (322, [5], [], 0, 1),
              'chair:400': (400, [1], [b'grey fabric armchair'], 0, 0)}
  for photo_id, (colour, bars, texts, category, family) in expected.items():
    r = recs[photo_id]
    np.testing.assert_array_equal(r['image'][R // 2, R // 2], fixtures.colour_of(colour))
    assert [int(s.max()) for s in r['sketches']] == bars, photo_id
    assert (r['texts'], r['category'], r['family']) == (texts, category, family), photo_id
  assert report['totals']['train'] == {'photos': 3, 'sketches': 4, 'texts': 3}
  assert len(report['notes']) == 1 and 'negative_texts ignored' in report['notes'][0]


def test_root_is_refused_for_formats_that_do_not_read_it(tmp_path, capsys):
  src = fixtures.manifest_tree(tmp_path / 'mf')
  argv = ['--format=manifest', f'--src={src}', f'--out={tmp_path}', f'--root={tmp_path}']
  assert prepare.main(argv) == 2
  assert 'only --format=stbir_demo reads paths relative to a root' in capsys.readouterr().err
