"""stbir_jax: sketch + text based fine-grained image retrieval in JAX/Flax (arXiv 2604.15735)."""

__version__ = '0.1.0'


def load_exported(directory):
  """Loads an export written by `python -m stbir_jax.export` (see stbir_jax/export.py)."""
  from stbir_jax.export import load_exported as _load  # pylint: disable=g-import-not-at-top
  return _load(directory)
