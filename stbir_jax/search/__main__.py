r"""Search your own photos with a sketch, a text, or both, using an exported model.

  python -m stbir_jax.search index --model=EXPORT --images=PHOTOS --out=INDEX
  python -m stbir_jax.search query --index=INDEX --sketch=shoe.png --text="red suede" -k 10 \
      --out=results.png            # or results.html; --backend=faiss for very large galleries

The index layout and what each command does: stbir_jax/search/__init__.py.
"""

from absl import app

from stbir_jax import cli
from stbir_jax.search import main

if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  main.define_flags()
  app.run(main.main, flags_parser=cli.parse_flags_or_fail(main.PROG))
