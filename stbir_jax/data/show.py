r"""Picture grid of one STBIR-Synth twin family: photo, sketch and description per instance.

Rows are structural variants, columns appearance variants, so a row shares one
contour and a column one colour scheme:

  python -m stbir_jax.data.show --config=shoes --split=test --family=0 \
      --out=docs/stbir_synth_shoes.png --resolution=128
"""

import textwrap

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw, ImageFont

from stbir_jax.data import synth
from stbir_jax.data.synth import spec as synth_spec

FLAGS = flags.FLAGS


def _define_flags():
  """Defined only when run as a program: the library part (family_grid) is imported next to
  other programs' flags (e.g. stbir_jax.main's --config) by tests and notebooks."""
  flags.DEFINE_string('config', 'shoes', f'one of {", ".join(synth.CONFIGS)}')
  flags.DEFINE_string('split', 'test', f'one of {", ".join(synth.SPLITS)}')
  flags.DEFINE_integer('family', 0, 'family index within the split (0-based)')
  flags.DEFINE_string('out', 'grid.png', 'output PNG path')
  flags.DEFINE_integer('resolution', 128, 'image resolution in pixels')
  flags.DEFINE_integer('seed', 0, 'SynthSpec.seed')
  flags.DEFINE_integer('sketch', 0, 'which of the sketches to show')


def sketch_picture(stroke_map: np.ndarray) -> np.ndarray:
  """Stroke-order map (R, R) -> RGB: strokes dark on white, hue darkening with stroke order."""
  m = stroke_map.astype(np.int32)
  n = max(1, int(m.max()))
  out = np.full(m.shape + (3,), 255, np.uint8)
  if m.max() == 0:
    return out
  t = (m - 1) / max(1, n - 1)  # 0 for the first stroke, 1 for the last
  # First strokes black, later ones shift to blue then red: the drawing order at a glance.
  colour = np.stack([180 * t ** 2, 60 * t, 140 * t * (1 - t) * 2], -1)
  out[m > 0] = colour[m > 0].astype(np.uint8)
  return out


def family_grid(config_name, split, family, spec, sketch_index=0):
  """Returns the grid picture (PIL Image) of family number `family` (0-based) of `split`."""
  n = spec.families(split)
  if not 0 <= family < n:
    raise ValueError(f'--family={family} out of range: split {split!r} has {n} families')
  items = list(synth.family_with_params(config_name, split, spec, family))
  K, M, R = spec.structural_variants, spec.appearance_variants, spec.resolution
  font = ImageFont.load_default()
  line_h, chars = 11, max(20, (2 * R) // 6)
  text_lines = 4
  cell_w, cell_h = 2 * R + 8, R + text_lines * line_h + 12
  head = 20
  canvas = Image.new('RGB', (M * cell_w + 8, K * cell_h + head + 8), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  cat = synth.CONFIGS[config_name][items[0][0]['category']]
  draw.text((6, 4), f'{config_name}/{split} family {items[0][0]["family"]} ({cat}): rows = '
            f'structural variants, columns = appearance variants', fill=(0, 0, 0), font=font)
  for record, params in items:
    k, m = params['structural_variant'], params['appearance_variant']
    x, y = 6 + m * cell_w, head + k * cell_h
    canvas.paste(Image.fromarray(record['image']), (x, y))
    if len(record['sketches']):
      sk = sketch_picture(record['sketches'][sketch_index % len(record['sketches'])][..., 0])
      canvas.paste(Image.fromarray(sk), (x + R + 2, y))
      draw.rectangle((x + R + 2, y, x + 2 * R + 1, y + R - 1), outline=(200, 200, 200))
    desc = record['texts'][0] if record['texts'] else '(no text)'
    for i, line in enumerate(textwrap.wrap(desc, chars)[:text_lines]):
      draw.text((x, y + R + 3 + i * line_h), line, fill=(20, 20, 20), font=font)
  return canvas


def main(argv):
  del argv
  synth_spec.config_index(FLAGS.config)
  synth_spec.split_index(FLAGS.split)
  spec = synth.SynthSpec(resolution=FLAGS.resolution, seed=FLAGS.seed)
  family_grid(FLAGS.config, FLAGS.split, FLAGS.family, spec, FLAGS.sketch).save(FLAGS.out)
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
