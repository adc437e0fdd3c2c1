"""Time to render hostile raster sketches (stbir_jax.data.sketch_io.load_sketch): large pages
up to the 40 MP limit and content that maximises the work (noise, a dense grid), at the demo's
64 px and at 224 px. Prints wall and CPU seconds (one thread does the work, so CPU seconds are
what an otherwise idle core takes) and writes benchmarks/results/sketch_render.json.

  python benchmarks/sketch_render.py

The files are written to a temporary folder first; decoding them is part of the time.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import _images  # pylint: disable=g-import-not-at-top,wrong-import-position
from stbir_jax.data import sketch_io, sketch_raster  # pylint: disable=wrong-import-position


def _cases(folder: Path):
  rng = np.random.default_rng(0)
  yield '4000 px drawing (16 MP)', _images.big_sketch_png(folder / 'd4000.png', 4000)
  yield '6300 px drawing (39.7 MP)', _images.big_sketch_png(folder / 'd6300.png', 6300)
  noise = folder / 'noise6300.png'
  Image.fromarray((rng.random((6300, 6300)) < 0.5).astype(np.uint8) * 255).save(noise)
  yield '6300 px noise (39.7 MP)', noise
  small = folder / 'noise448.png'
  Image.fromarray((rng.random((448, 448)) < 0.5).astype(np.uint8) * 255).save(small)
  yield '448 px noise', small
  grid = folder / 'grid448.png'
  lines = (np.arange(448)[:, None] % 4 == 0) | (np.arange(448)[None] % 4 == 0)
  Image.fromarray(np.where(lines, 0, 255).astype(np.uint8)).save(grid)
  yield '448 px grid, 4 px pitch', grid


def main():
  sketch_raster.label_components(np.ones((2, 2), bool))  # imports scipy.ndimage outside the timing
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, path in _cases(Path(tmp)):
      for resolution in (64, 224):
        wall, cpu = time.perf_counter(), time.process_time()
        sketch_io.load_sketch(path, resolution)
        rows.append({'input': name, 'resolution': resolution,
                     'wall_s': round(time.perf_counter() - wall, 2),
                     'cpu_s': round(time.process_time() - cpu, 2)})
        print(f'{name:28s} {resolution:4d} px  wall {rows[-1]["wall_s"]:6.2f} s  '
              f'cpu {rows[-1]["cpu_s"]:6.2f} s', flush=True)
  load = os.getloadavg()
  print(f'load average {load}')
  out = Path(__file__).resolve().parent / 'results' / 'sketch_render.json'
  out.write_text(json.dumps({'rows': rows, 'load_average': load, 'cpus': os.cpu_count()},
                            indent=2))


if __name__ == '__main__':
  main()
