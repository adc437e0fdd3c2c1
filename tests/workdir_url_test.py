"""A bucket URL as the workdir (--workdir=gs://BUCKET/run, as on TPU VMs), tested offline.

`fake_gcs` serves gs://BUCKET/... from a local directory at the two places where paths reach
storage: etils.epath's gs:// backend (our code, orbax's directory and commit-file handling, Grain's
iterator state) and the TensorStore kvstore that orbax opens for the arrays. Everything above them
runs as on GCS: orbax takes its GCS branches (commit_success.txt instead of an atomic rename,
keep-N deletion through gcs_utils.rmtree). Meanwhile any os/shutil/open call given a gs:// path
fails the test, and TensorBoard summaries go to a recorder (tf.summary writes gs:// through
TensorFlow's own GCS client, which cannot be pointed at a local directory).
"""

import builtins
import contextlib
import glob
import os
import shutil
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from etils.epath import backend as epath_backend
from etils.epath import gpath
from orbax.checkpoint._src.path import gcs_utils

from faults_test import UNRAISABLE, _config, _damage
from stbir_jax import checkpoint, export, exported, paths, run_config, train
from train_test import _Recorder

URL = 'gs://bucket/stbir/run'


# ------------------------------------------------------------------------------------ resolve


def test_resolve_makes_local_paths_absolute_and_leaves_urls_alone(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.resolve('runs/a') == epath.Path(tmp_path / 'runs' / 'a')
  assert os.fspath(paths.resolve(URL)) == URL
  assert os.fspath(paths.resolve(epath.Path(URL)) / 'checkpoints') == URL + '/checkpoints'
  assert paths.is_url(URL) and not paths.is_url('runs/a')


@pytest.mark.parametrize('bad,message', [
    ('http://host/run', r"http://host/run: unsupported URL scheme 'http'; expected a local "
                        r'path or one of gs://, s3://, az://, hf://'),
    ('', 'Empty path'),
])
def test_resolve_rejects_what_would_become_a_stray_local_directory(bad, message):
  with pytest.raises(paths.PathError, match=message):
    paths.resolve(bad)


# ------------------------------------------------------------------------------------ fake GCS


_OS = epath_backend._OsPathBackend()  # pylint: disable=protected-access


class _BucketBackend(epath_backend._OsPathBackend):  # pylint: disable=protected-access
  """epath's os backend with gs://BUCKET/key mapped to ROOT/BUCKET/key."""

  def __init__(self, root):
    self.root = str(root)

  def local(self, path) -> str:
    path = os.fspath(path)
    assert path.startswith('gs://'), path
    return os.path.join(self.root, path[len('gs://'):])

  def url(self, local) -> str:
    return 'gs://' + os.path.relpath(local, self.root)

  def glob(self, path):
    return [self.url(p) for p in _OS.glob(self.local(path))]

  def walk(self, top, **kwargs):
    for root, dirs, files in _OS.walk(self.local(top), **kwargs):
      yield self.url(root), dirs, files


def _one_path(name):
  def method(self, path, *args, **kwargs):
    return getattr(_OS, name)(self.local(path), *args, **kwargs)
  return method


def _two_paths(name):
  def method(self, path, dst, *args, **kwargs):
    return getattr(_OS, name)(self.local(path), self.local(dst), *args, **kwargs)
  return method


for _name in ('open', 'exists', 'isdir', 'listdir', 'makedirs', 'mkdir', 'rmtree', 'remove',
              'stat'):
  setattr(_BucketBackend, _name, _one_path(_name))
for _name in ('rename', 'replace', 'copy'):
  setattr(_BucketBackend, _name, _two_paths(_name))


def _refuse_urls(monkeypatch, module, name):
  """Wraps module.name so that a gs:// argument fails: a URL reached a local-file function."""
  real = getattr(module, name)

  def guarded(*args, **kwargs):
    for arg in args[:2]:
      if isinstance(arg, (str, os.PathLike)) and 'gs:' in os.fspath(arg):
        raise AssertionError(f'{module.__name__}.{name}({os.fspath(arg)!r}): a URL workdir '
                             'reached a local-file function')
    return real(*args, **kwargs)

  monkeypatch.setattr(module, name, guarded)


@contextlib.contextmanager
def fake_gcs(root):
  """gs:// served from `root`; yields the logdirs given to the metric writer."""
  backend = _BucketBackend(root)
  logdirs = []

  def writer(logdir, *args, **kwargs):   # train.metric_writer(workdir, is_main, verbose)
    del args, kwargs
    logdirs.append(logdir)
    return _Recorder()

  def kvstore(path):  # orbax's TensorStore spec for a gs:// path, on local files
    return {'driver': 'file', 'path': backend.local(path)}

  with pytest.MonkeyPatch.context() as mp:
    # epath picks its gs:// backend from the table below, not tf.io.gfile: etils 1.15 reads the
    # variable on every call, etils <= 1.14 caches `_is_tf_installed` on first use.
    mp.setenv('EPATH_USE_TF', 'false')
    mp.setattr(gpath, '_is_tf_installed', lambda: False)
    mp.setitem(gpath._PREFIX_TO_BACKEND, 'gs', backend)  # pylint: disable=protected-access
    mp.setattr(gcs_utils, 'get_kvstore_for_gcs', kvstore)
    # orbax asks the google-cloud-storage client whether the bucket has hierarchical namespace.
    mp.setattr(gcs_utils, 'get_bucket',
               lambda name: types.SimpleNamespace(hierarchical_namespace_enabled=False))
    mp.setattr(train, 'metric_writer', writer)
    for module, name in ((os, 'makedirs'), (os, 'mkdir'), (os, 'listdir'), (os, 'rename'),
                         (os.path, 'abspath'), (os.path, 'exists'), (os.path, 'isdir'),
                         (shutil, 'move'), (builtins, 'open')):
      _refuse_urls(mp, module, name)
    yield logdirs


# ------------------------------------------------------------------------------------ a run


def _state(root, step) -> dict:
  """A saved state, read straight from the bucket's local directory."""
  return ocp.StandardCheckpointer().restore(
      os.path.join(root, 'bucket', 'stbir', 'run', 'checkpoints', str(step), 'state'))


def _assert_same(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def bucket_run(tmp_path_factory):
  """Three steps on the tiny faults_test config, a checkpoint per step, keep 2, in gs://."""
  root = tmp_path_factory.mktemp('gcs')
  cwd = root / 'cwd'  # where os.path.abspath would have put a mangled 'gs:' directory
  cwd.mkdir()
  config = _config(root, **{'train.keep_checkpoints': 2})
  with fake_gcs(root) as logdirs, pytest.MonkeyPatch.context() as mp:
    mp.chdir(cwd)
    train.train_and_evaluate(config, URL)
  return root, config, logdirs


def test_a_gs_workdir_holds_the_whole_run(bucket_run):
  root, _, logdirs = bucket_run
  run = root / 'bucket' / 'stbir' / 'run'
  assert sorted(os.listdir(run)) == ['checkpoints', 'config.json', 'results.json', 'results.md']
  assert '"num_steps": 3' in (run / 'config.json').read_text()
  assert os.listdir(root / 'cwd') == []
  # keep_checkpoints=2: step 1 deleted the GCS way; the kept steps are committed the GCS way.
  assert sorted(os.listdir(run / 'checkpoints')) == ['2', '3']
  for step in ('2', '3'):
    assert sorted(os.listdir(run / 'checkpoints' / step)) == [
        '_CHECKPOINT_METADATA', 'checksums', 'commit_success.txt', 'data', 'state']
  assert glob.glob(str(run / 'checkpoints' / '3' / 'data' / 'process_0-of-1.json'))
  assert [os.fspath(d) for d in logdirs] == [URL]  # TensorBoard files go to the bucket too


@UNRAISABLE
def test_a_damaged_checkpoint_in_gs_is_moved_aside_and_the_run_resumes_exactly(bucket_run,
                                                                              tmp_path):
  root, config, _ = bucket_run
  copy = tmp_path / 'copy'
  shutil.copytree(root / 'bucket', copy / 'bucket')
  step_3 = copy / 'bucket' / 'stbir' / 'run' / 'checkpoints' / '3'
  _damage(str(step_3), 'truncate')
  damaged = sorted(p.relative_to(step_3) for p in step_3.rglob('*'))
  with fake_gcs(copy):
    train.train_and_evaluate(config, URL)
    step, params = run_config.latest_params(URL)
  run = copy / 'bucket' / 'stbir' / 'run'
  moved = run / checkpoint.QUARANTINE / '3'
  assert sorted(p.relative_to(moved) for p in moved.rglob('*')) == damaged
  assert sorted(os.listdir(run / 'checkpoints')) == ['2', '3']
  # Step 3 trained again from checkpoint 2 equals the original step 3 bit for bit.
  _assert_same(_state(copy, 3), _state(root, 3))
  assert step == 3
  _assert_same(params, {k: _state(root, 3)['params'][k] for k in params})


def test_export_reads_a_gs_workdir(bucket_run, tmp_path):
  root, config, _ = bucket_run
  out = tmp_path / 'export'
  with fake_gcs(root):
    step = export.export_run(URL, str(out))
  assert step == 3
  model = exported.load_exported(str(out))
  assert model.embed_dim == config.model.embed_dim
  assert '(no results.md in the run directory)' not in (out / 'model_card.md').read_text()


def test_export_refuses_a_gs_out_directory(tmp_path):
  with pytest.raises(exported.ExportError, match=r'--out=gs://bucket/export: expected a local '
                                               'directory'):
    export.export_run(str(tmp_path), 'gs://bucket/export')


def test_missing_gcs_client_is_named(tmp_path):
  """orbax 0.12 imports google-cloud-storage to list steps in gs://; say which package."""

  def no_client(name):
    raise ImportError("cannot import name 'storage' from 'google.cloud' (unknown location)")

  with fake_gcs(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(gcs_utils, 'get_bucket', no_client)
      with pytest.raises(checkpoint.CheckpointError,
                         match=r'gs://bucket/stbir/run/checkpoints: checkpoints in a gs:// '
                               r'workdir need the google-cloud-storage package'):
        checkpoint.Checkpointer(URL, keep=2)
