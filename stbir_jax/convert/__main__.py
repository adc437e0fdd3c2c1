"""Converts a Hugging Face checkpoint to our tower params.

  python -m stbir_jax.convert --src=openai/clip-vit-base-patch16 --out=/tmp/clip_b16_vision \
      [--tower=vision|text]

writes OUT/params.safetensors ('/'-joined names: backbone/..., proj/kernel) and OUT/config.json
(the tower config, for config.model.<group>). Load with stbir_jax.convert.load_converted(OUT), or
set config.model.<group>.init=OUT.
"""

import json
import sys

import jax
from absl import flags

from stbir_jax import cli
from stbir_jax.convert import core

PROG = 'convert'  # errors read `convert: error: ...`


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string('src', None, 'hub id, local directory, or bundled:all-MiniLM-L6-v2',
                      flag_values=flag_values)
  flags.DEFINE_string('out', None, 'output directory', flag_values=flag_values)
  flags.DEFINE_enum('tower', 'vision', core.TOWERS, 'which tower of the checkpoint',
                    flag_values=flag_values)
  flags.mark_flags_as_required(['src', 'out'], flag_values=flag_values)


def convert(f: flags.FlagValues) -> int:
  core.save_converted(f.src, f.out, f.tower)
  params, cfg = core.load_converted(f.out)
  n = sum(v.size for v in jax.tree.leaves(params))
  print(f'wrote {f.out}: {n:,} params ({", ".join(params)}); tower config:')
  print(json.dumps(cfg.to_dict(), indent=2))
  return 0


def main(argv=None) -> int:
  """The program; `argv`: its flags as a list (cli.run_program), None: sys.argv."""
  return cli.run_program(PROG, define_flags, convert, argv)


if __name__ == '__main__':
  sys.exit(main())
