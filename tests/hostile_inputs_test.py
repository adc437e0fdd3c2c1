"""Untrusted dataset sources given to `prepare`: pickles that would run code, manifest paths that
leave their folder, decompression bombs, and an --overwrite build that fails half-way."""

import glob
import hashlib
import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest

from stbir_jax.data import prepare, prepared
from stbir_jax.data.formats import common, fixtures

R = 32


def _run(fmt, src, out, *extra):
  return prepare.main([f'--format={fmt}', f'--src={src}', f'--out={out}', f'--resolution={R}',
                       '--quiet', *extra])


def _files(directory) -> dict:
  """{relative path: sha256} of every file below `directory`."""
  out = {}
  for path in glob.glob(os.path.join(directory, '**'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


# ------------------------------------------------------------------------------------ pickles


class _WritesMarker:
  """Unpickling this calls exec(), which creates the marker file."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return exec, (f'open({self.marker!r}, "w").write("pwned")',)


def test_a_pickle_that_would_run_code_is_refused_naming_the_file(tmp_path, capsys):
  src = fixtures.qmul_tree(tmp_path / 'src')
  marker = tmp_path / 'marker'
  pickle_file = src / 'ShoeV2_Coordinate'
  with pickle_file.open('wb') as f:
    pickle.dump({'trainA/1001_1': _WritesMarker(marker)}, f)
  assert _run('shoev2', src, tmp_path / 'out') == 2
  err = capsys.readouterr().err
  assert not marker.exists()
  assert f'{pickle_file}: refused to unpickle: it refers to builtins.exec' in err
  assert '--trust_pickle' in err
  assert not (tmp_path / 'out' / 'shoev2').exists()
  # The explicit opt-in unpickles it fully (here: runs the payload, whose value is no array).
  assert _run('shoev2', src, tmp_path / 'out', '--trust_pickle') == 0
  assert marker.read_text() == 'pwned'


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickled_numpy_coordinates_still_load_without_trust(tmp_path, protocol):
  xyp = np.array([[1, 2, 0], [3, 4, 1]], np.float32)
  path = tmp_path / 'coords.pkl'
  path.write_bytes(pickle.dumps({'trainA/1_1': xyp, 'n': [np.int64(3), 2.5, 'a', (1,)]},
                                protocol=protocol))
  data = common.np_load_pickle(path)
  np.testing.assert_array_equal(data['trainA/1_1'], xyp)
  assert data['n'] == [3, 2.5, 'a', (1,)]


# ------------------------------------------------------------------------------------ manifests


@pytest.mark.parametrize('rel', ['../outside.png', 'photos/../../outside.png', 'ABSOLUTE'])
def test_manifest_path_outside_root_is_refused_naming_the_line(tmp_path, rel):
  outside = tmp_path / 'mf' / 'outside.png'
  fixtures.write_photo(outside, (1, 2, 3))
  rel = str(outside) if rel == 'ABSOLUTE' else rel
  root = tmp_path / 'mf' / 'data'
  manifest = fixtures.manifest_tree(root, lines=[
      {'image': 'photos/p0.jpg', 'split': 'train'},
      {'image': rel, 'split': 'test'}])
  with pytest.raises(common.PrepareError, match=rf'{manifest}:2: image .* is outside the '
                                                 r"manifest's folder .*--allow_outside_root"):
    prepare.prepare('manifest', manifest, tmp_path / 'out', resolution=R, progress=False)
  assert not (tmp_path / 'out' / 'manifest').exists()
  # A sketch path is checked the same way.
  fixtures.manifest_tree(root, lines=[{'image': 'photos/p0.jpg', 'sketches': [rel]}])
  with pytest.raises(common.PrepareError, match=rf'{manifest}:1: sketch .* is outside'):
    prepare.prepare('manifest', manifest, tmp_path / 'out', resolution=R, progress=False)
  # Opt-in: read as before.
  fixtures.manifest_tree(root, lines=[{'image': 'photos/p0.jpg', 'split': 'train'},
                                      {'image': rel, 'split': 'test'}])
  report = prepare.prepare('manifest', manifest, tmp_path / 'out', resolution=R, progress=False,
                           allow_outside_root=True)
  assert report['totals']['test']['photos'] == 1


def test_manifest_path_inside_root_with_dotdot_is_accepted(tmp_path):
  manifest = fixtures.manifest_tree(tmp_path / 'mf', lines=[
      {'image': 'photos/../photos/p0.jpg', 'split': 'train'}])
  report = prepare.prepare('manifest', manifest, tmp_path / 'out', resolution=R, progress=False)
  assert report['totals']['train']['photos'] == 1


# ------------------------------------------------------------------------------------ bombs


def _png_header_only(path, width, height):
  """A valid PNG signature and IHDR claiming width x height RGB pixels, and one tiny IDAT: ~70
  bytes on disk, 2.7 GB if decoded at 30000 x 30000."""

  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

  ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
                   + chunk(b'IDAT', zlib.compress(b'\x00' * 16)) + chunk(b'IEND', b''))


@pytest.mark.parametrize('side', [30000, 9000])  # above PIL's own bomb limit, and below it
def test_decompression_bomb_photo_is_listed_as_unreadable(tmp_path, side):
  src = fixtures.qmul_tree(tmp_path / 'src')
  bomb = src / 'trainB' / '1003.png'
  _png_header_only(bomb, side, side)
  assert _run('shoev2', src, tmp_path / 'out') == 0
  report = json.loads((tmp_path / 'out' / 'shoev2' / prepared.REPORT_FILE).read_text())
  errors = {u['file']: u['error'] for u in report['unreadable']}
  assert list(errors) == [str(bomb)]
  assert 'exceeds' in errors[str(bomb)] and 'decompression bomb' in errors[str(bomb)]
  assert prepared.info(tmp_path / 'out', 'shoev2')['splits'] == {'train': 2, 'test': 1}


def test_decompression_bomb_sketch_is_listed_as_unreadable(tmp_path):
  src = fixtures.qmul_tree(tmp_path / 'src')
  bomb = src / 'trainA' / '1002_1.png'
  _png_header_only(bomb, 30000, 30000)
  assert _run('shoev2', src, tmp_path / 'out') == 0
  report = json.loads((tmp_path / 'out' / 'shoev2' / prepared.REPORT_FILE).read_text())
  assert [u['file'] for u in report['unreadable']] == [str(bomb)]
  assert report['photos_without_sketch'] == ['1002', '1003']


# ------------------------------------------------------------------------------------ overwrite


def test_a_failing_overwrite_leaves_the_old_dataset_and_report_intact(tmp_path, monkeypatch):
  src = fixtures.qmul_tree(tmp_path / 'src')
  out = tmp_path / 'out'
  assert _run('shoev2', src, out) == 0
  before = _files(out)
  real = prepare.load_photo
  calls = []

  def fails_on_the_third_photo(path, resolution):
    calls.append(path)
    if len(calls) == 3:
      raise OSError(28, 'No space left on device')
    return real(path, resolution)

  monkeypatch.setattr(prepare, 'load_photo', fails_on_the_third_photo)
  assert _run('shoev2', src, out, '--overwrite') == 2
  assert len(calls) == 3
  assert _files(out) == before
  assert sorted(os.listdir(out)) == ['shoev2']  # no temporary folder left behind
  assert prepared.info(out, 'shoev2')['splits'] == {'train': 3, 'test': 1}


def test_a_successful_overwrite_replaces_dataset_and_report(tmp_path):
  src = fixtures.qmul_tree(tmp_path / 'src')
  out = tmp_path / 'out'
  caps = tmp_path / 'caps.json'
  caps.write_text(json.dumps({'nope': 'x'}))
  assert _run('shoev2', src, out, f'--captions={caps}') == 0
  report_file = out / 'shoev2' / prepared.REPORT_FILE
  assert json.loads(report_file.read_text())['captions_without_photo'] == ['nope']
  (src / 'trainB' / '1003.png').unlink()
  assert _run('shoev2', src, out, '--overwrite') == 0
  report = json.loads(report_file.read_text())
  assert report['captions_without_photo'] == []
  assert report['totals']['train']['photos'] == 2
  assert prepared.info(out, 'shoev2')['splits'] == {'train': 2, 'test': 1}
  assert sorted(os.listdir(out)) == ['shoev2']
  assert sorted(os.listdir(out / 'shoev2')) == ['1.0.0', prepared.REPORT_FILE]
