"""What a compiled program's HLO text says about its memory and communication, per chip.

`collectives` counts the collective ops by kind with the bytes each produces. `batch_arrays`
finds the arrays whose shape carries a given batch size: in the per-chip program of a step whose
global batch B is split over N chips, a dimension of B (not B / N) is a part of the step that
every chip computes on the whole batch, which is what makes per-chip memory grow with the slice
(docs/scaling.md). Compile with a batch no model dimension equals (e.g. 776 rather than 768 next
to ViT-B's width 768) so that the dimension is unambiguous.
"""

import collections
import math
import re

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'f8e4m3fn': 1, 'f8e5m2': 1, 'bf16': 2, 'f16': 2,
               's16': 2, 'u16': 2, 'f32': 4, 's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8,
               'c64': 8, 'c128': 16}
# `%name = SHAPE op(` or `op-start(` (async); `-done` halves are not counted again.
_COLLECTIVE_RE = re.compile(r'=\s*(?P<shape>.*?)\s(?P<op>' + '|'.join(COLLECTIVES)
                            + r')(?P<start>-start)?\(')
_ARRAY_RE = re.compile(r'\b(' + '|'.join(DTYPE_BYTES) + r')\[([\d,]*)\]')
# An instruction's result: `%name = SHAPE opcode(` (SHAPE one array or a tuple of them).
_RESULT_RE = re.compile(r'^\s*(?:ROOT\s+)?%\S+\s*=\s*(?P<shape>.*?)\s(?P<op>[\w-]+)\(')
# A computation's header, `[ENTRY ]%name (params) -> shape {`, and the computations an
# instruction runs inside itself (a fusion's body, a reducer): theirs are not buffers.
_COMPUTATION_RE = re.compile(r'^(?:ENTRY\s+)?(%[\w.-]+)\s.*\{$')
_INNER_RE = re.compile(r'(?:calls|to_apply)=(%[\w.-]+)')
# Results that name another instruction's buffer (or a tuple of buffers: an async `-start` holds
# its operands and results, which its `-done` gives out).
_ALIASES = ('get-tuple-element', 'bitcast', 'tuple')


def _arrays(shape: str) -> list[tuple[str, tuple[int, ...]]]:
  return [(dtype, tuple(int(d) for d in dims.split(',') if d))
          for dtype, dims in _ARRAY_RE.findall(shape)]


def _nbytes(dtype: str, dims: tuple[int, ...]) -> int:
  return DTYPE_BYTES[dtype] * math.prod(dims)


def array_bytes(shape: str) -> list[int]:
  """The bytes of each array in an HLO shape string, e.g. '(f32[2,3], bf16[4])' -> [24, 8]."""
  return [_nbytes(dtype, dims) for dtype, dims in _arrays(shape)]


def collectives(hlo_text: str) -> dict:
  """{kind: {count, bytes}} of the collectives in compiled HLO text.

  bytes: what each op produces, per chip: the reduced arrays of an all-reduce, the gathered
  array of an all-gather, the shard of a reduce-scatter. An async `-start` returns (operands,
  results[, scratch]); its largest array is counted (the result of a gather or reduction).
  """
  out = {kind: {'count': 0, 'bytes': 0} for kind in COLLECTIVES}
  for line in hlo_text.splitlines():
    m = _COLLECTIVE_RE.search(line)
    if not m:
      continue
    sizes = array_bytes(m['shape'])
    entry = out[m['op']]
    entry['count'] += 1
    if m['start'] and m['op'] != 'all-reduce':
      entry['bytes'] += max(sizes, default=0)
    else:
      entry['bytes'] += sum(sizes)
  return out


def _buffer_results(hlo_text: str):
  """(shape, opcode) of each instruction that gets a buffer of its own: those outside fusion
  bodies and reducers (while loops' bodies and called computations included), not aliases."""
  lines = hlo_text.splitlines()
  inner = set()
  for line in lines:
    m = _RESULT_RE.match(line)
    if m and (m['op'] == 'fusion' or m['op'].endswith('-start') or 'to_apply=' in line):
      inner.update(_INNER_RE.findall(line))
  computation = None
  for line in lines:
    header = _COMPUTATION_RE.match(line)
    if header:
      computation = header[1]
      continue
    m = _RESULT_RE.match(line)
    if m and computation not in inner and not (m['op'] in _ALIASES or
                                               m['op'].endswith('-start')):
      yield m['shape'], m['op']


def batch_arrays(hlo_text: str, batch: int, top: int = 8) -> dict:
  """The buffers of a compiled program (`hlo_text`) with a dimension equal to `batch`: their
  count, their bytes summed (an upper bound of what they hold at once: buffers are reused), and
  the `top` largest distinct (dtype, shape, opcode) with how often each occurs, largest first."""
  count, total, kinds = 0, 0, collections.Counter()
  for shape, op in _buffer_results(hlo_text):
    for dtype, dims in _arrays(shape):
      if batch in dims:
        count += 1
        total += _nbytes(dtype, dims)
        kinds[(dtype, dims, op)] += 1
  largest = sorted(kinds.items(), key=lambda kv: -_nbytes(kv[0][0], kv[0][1]))[:top]
  return {'batch': batch, 'count': count, 'bytes': total,
          'largest': [{'shape': f'{dtype}[{",".join(map(str, dims))}]', 'op': op, 'count': n,
                       'bytes': _nbytes(dtype, dims)}
                      for (dtype, dims, op), n in largest]}
