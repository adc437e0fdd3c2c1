"""stbir_jax: sketch + text based fine-grained image retrieval in JAX/Flax (arXiv 2604.15735)."""

__version__ = '0.1.0'
