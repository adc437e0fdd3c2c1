"""stbir_jax.data."""
