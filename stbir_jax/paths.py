"""Run directories as `etils.epath` paths, so that a workdir may be a bucket URL.

On Cloud TPU VMs the workdir is a bucket (`--workdir=gs://BUCKET/run`) that every host sees.
Every workdir access (config.json, checkpoints, TensorBoard logs, results) goes through the path
`resolve` returns: orbax, Grain's iterator checkpoints and clu's metric writers take epath paths
and reach gs:// through TensorFlow's file system (tf.io.gfile), as epath does.
"""

import os

from etils import epath

# The URL schemes epath knows (etils/epath/gpath.py); any other `scheme://` would silently become
# a relative local directory named after it.
URL_SCHEMES = ('gs', 's3', 'az', 'hf')


class PathError(ValueError):
  pass


def is_url(path) -> bool:
  return '://' in os.fspath(path)


def resolve(path) -> epath.Path:
  """An absolute local path, or a URL (gs://...) as it is: os.path functions mangle URLs
  (os.path.abspath('gs://b/run') is '$PWD/gs:/b/run')."""
  text = os.fspath(path)
  if not text:
    raise PathError('Empty path: expected a directory or a gs:// URL.')
  if is_url(text):
    scheme = text.split('://', 1)[0]
    if scheme not in URL_SCHEMES:
      raise PathError(f'{text}: unsupported URL scheme {scheme!r}; expected a local path or one '
                      f'of {", ".join(s + "://" for s in URL_SCHEMES)}.')
    return epath.Path(text)
  return epath.Path(os.path.abspath(text))
