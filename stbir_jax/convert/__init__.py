"""stbir_jax.convert."""
