"""stbir_jax.models."""
