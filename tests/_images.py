"""Hostile image files for tests: PNG headers that claim a huge size, large sparse drawings."""

import struct
import zlib

from PIL import Image, ImageDraw


def png_header(path, width: int, height: int):
  """A PNG whose header says width x height (8-bit grey) but whose data is one row: opening it
  reads the size, decoding it would need width * height bytes (a decompression bomb)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
  idat = zlib.compress(b'\x00' + b'\xff' * min(width, 1024))
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) +
                   chunk(b'IEND', b''))
  return path


def big_sketch_png(path, size: int, pen: int = 12):
  """A real drawing (a polyline and a circle) on a white size x size page, 1 bit a pixel: about
  100 KB on disk for 8000 px, 64 million pixels once decoded."""
  img = Image.new('1', (size, size), 1)
  draw = ImageDraw.Draw(img)
  n = size
  draw.line([(n // 10, n * 3 // 4), (n // 2, n // 7), (n * 9 // 10, n // 4)], fill=0, width=pen)
  draw.ellipse([n // 2, n // 2, n * 85 // 100, n * 85 // 100], outline=0, width=pen)
  img.save(path)
  return path
