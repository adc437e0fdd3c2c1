"""stbir_jax: sketch + text based fine-grained image retrieval in JAX/Flax (arXiv 2604.15735)."""

__version__ = '0.1.0'


def load_exported(directory):
  """Loads an export written by `python -m stbir_jax.export` (see stbir_jax/exported.py)."""
  # Imported on first use: `import stbir_jax` stays free of jax.
  from stbir_jax.exported import load_exported as _load  # pylint: disable=g-import-not-at-top
  return _load(directory)
