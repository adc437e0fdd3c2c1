"""host_memory.keep_freed_memory: a jitted function's temporaries are reused, not faulted in on
every call, which is what made XLA CPU's train step spend a third of its time in the kernel."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from stbir_jax import host_memory

# A process of its own (malloc's options are per process and must precede JAX's threads): a
# function whose temporaries are one large block (the (2048, 4096) product, 32 MB, and more),
# called 21 times; the page faults of the last 20 calls, and the temporaries' size.
_PROBE = textwrap.dedent("""
    import json, resource, sys
    from stbir_jax import host_memory
    applied = host_memory.keep_freed_memory()
    import jax, jax.numpy as jnp
    x = jnp.ones((2048, 256), jnp.float32)
    y = jnp.ones((256, 4096), jnp.float32)
    f = jax.jit(lambda a, b: jnp.sum(jnp.sin(a @ b), axis=0) + jnp.sum(jnp.cos(a @ b), axis=0))
    temp = f.lower(x, y).compile().memory_analysis().temp_size_in_bytes
    f(x, y).block_until_ready()
    faults = []
    for _ in range(20):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      f(x, y).block_until_ready()
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps(dict(applied=applied, temp=temp, faults=faults)))
""")


def _probe(choice):
  env = dict(os.environ, STBIR_HOST_MALLOC=choice, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc() is None, reason='glibc on Linux only')  # pylint: disable=protected-access
def test_temporaries_are_reused_not_faulted_in_every_call():
  system, reuse = _probe('system'), _probe('reuse')
  pages = system['temp'] / os.sysconf('SC_PAGE_SIZE')
  assert system['temp'] >= 32 * 2**20
  assert (system['applied'], reuse['applied']) == (False, True)
  # As glibc does it by default: each call maps its temporaries afresh, every page faults.
  assert min(system['faults']) > 0.9 * pages, (system, pages)
  # Kept for reuse: most calls find their block already there. Now and then the heap grows (a
  # block is freed on another thread after the result is ready, so the next call may start
  # before it is back): beside a training run, 1 - 5 of 20 calls faulted their pages in.
  quiet_calls = sum(f < 0.02 * pages for f in reuse['faults'])
  assert quiet_calls >= len(reuse['faults']) // 2, (reuse, pages)
  assert sum(reuse['faults']) < 0.4 * sum(system['faults']), (reuse, system)


def test_a_bad_setting_is_named(monkeypatch):
  monkeypatch.setitem(host_memory._state, 'applied', None)  # pylint: disable=protected-access
  monkeypatch.setenv(host_memory.ENV, 'tcmalloc')
  with pytest.raises(ValueError, match="STBIR_HOST_MALLOC='tcmalloc': expected \"reuse\""):
    host_memory.keep_freed_memory()


def test_system_leaves_malloc_alone_and_the_answer_is_kept(monkeypatch):
  monkeypatch.setitem(host_memory._state, 'applied', None)  # pylint: disable=protected-access
  monkeypatch.setenv(host_memory.ENV, 'system')
  monkeypatch.setattr(host_memory, '_glibc', lambda: pytest.fail('malloc was touched'))
  assert host_memory.keep_freed_memory() is False
  monkeypatch.setenv(host_memory.ENV, 'reuse')
  assert host_memory.keep_freed_memory() is False   # decided once a process
