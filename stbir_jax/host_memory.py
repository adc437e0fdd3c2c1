"""Host memory of XLA's CPU backend: freed blocks kept for reuse, not returned to the kernel.

XLA CPU allocates the temporaries of each execution as one block with the C library's malloc
(0.55 GB for the small train step of benchmarks/, several GB at ViT-S/16). glibc serves a block
that large with a fresh mmap, on an XLA worker thread's own arena always, and unmaps it when the
step ends, so every step faults all of its temporaries in again, page by page, each page zeroed
by the kernel: 136,000 page faults and 0.3 s of system time in a 0.7 s step, and more after
another library's step has churned memory (docs/performance.md, "Host memory").

`keep_freed_memory()` sets three glibc malloc options for the process (mallopt): one arena for
every thread, no mmap'd blocks and no trimming. Large blocks then come from the heap and a freed
block is there for the next step (the heap may still grow a few times: a block freed on another
thread after the result is ready can come back after the next step has started). The cost is
that the process keeps its peak heap until it exits, which a training, evaluation or search
process does anyway.

Programs call it first (main, compare, ablate, evaluate, calibrate, export, search, the demo,
benchmarks/common.py); a library import never does. STBIR_HOST_MALLOC=system leaves malloc as it
is. Anything but glibc on Linux is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

ENV = 'STBIR_HOST_MALLOC'            # 'reuse' (the default) or 'system'
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8   # glibc's <malloc.h>
_state = {'applied': None}


def _glibc():
  """The process's C library if it is glibc (it has mallopt and gnu_get_libc_version), else None."""
  if not sys.platform.startswith('linux'):
    return None
  libc = ctypes.CDLL(None)   # the symbols already loaded into this process
  return libc if hasattr(libc, 'gnu_get_libc_version') and hasattr(libc, 'mallopt') else None


def keep_freed_memory() -> bool:
  """Makes malloc keep freed memory for reuse (module docstring). Returns whether it is in force.

  Call it before JAX starts its CPU backend: a thread that has allocated before keeps its own
  arena, where large blocks are still mmap'd. Calling it again does nothing.
  """
  if _state['applied'] is not None:
    return _state['applied']
  choice = os.environ.get(ENV, 'reuse').strip().lower()
  if choice not in ('reuse', 'system'):
    raise ValueError(f'{ENV}={os.environ[ENV]!r}: expected "reuse" (keep freed host memory for '
                     'the next step; the default) or "system" (malloc as configured)')
  libc = _glibc() if choice == 'reuse' else None
  applied = libc is not None and all(
      libc.mallopt(option, value) == 1
      for option, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
  if choice == 'reuse' and not applied:
    logging.info('%s: malloc left as it is (not glibc on Linux, or mallopt refused).', ENV)
  _state['applied'] = applied
  return applied
