"""Converts a Hugging Face checkpoint to our tower params.

  python -m stbir_jax.convert --src=openai/clip-vit-base-patch16 --out=/tmp/clip_b16_vision \
      [--tower=vision|text]

writes OUT/params.safetensors ('/'-joined names: backbone/..., proj/kernel) and OUT/config.json
(the tower config, for config.model.<group>). Load with stbir_jax.convert.load_converted(OUT), or
set config.model.<group>.init=OUT.
"""

import argparse
import json
import sys

from stbir_jax.convert import core


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m stbir_jax.convert', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--src', required=True,
                      help='hub id, local directory, or bundled:all-MiniLM-L6-v2')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--tower', default='vision', choices=core.TOWERS)
  args = parser.parse_args(argv)
  core.save_converted(args.src, args.out, args.tower)
  params, cfg = core.load_converted(args.out)
  n = sum(v.size for v in __import__('jax').tree.leaves(params))
  print(f'wrote {args.out}: {n:,} params ({", ".join(params)}); tower config:')
  print(json.dumps(cfg.to_dict(), indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
