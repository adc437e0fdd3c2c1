"""Opening untrusted images: sizes are checked from the header, errors name the file."""

import pytest
from PIL import Image, ImageFile

import _images
from stbir_jax import image_safety


def test_size_is_checked_before_anything_is_decoded(tmp_path, monkeypatch):
  def no_decoding(im):
    raise AssertionError('decoded')

  monkeypatch.setattr(ImageFile.ImageFile, 'load', no_decoding)
  ok = _images.png_header(tmp_path / 'ok.png', 3000, 2000)
  with image_safety.open_image(ok, limit=6_000_000) as im:
    assert im.size == (3000, 2000)
  with pytest.raises(image_safety.ImageTooLargeError,
                     match=r'^photo\.png: 3000x2000 pixels is too large: the limit is 5,999,999 '
                           r'pixels \(a decompression bomb'):
    image_safety.open_image(ok, name='photo.png', limit=5_999_999)
  # Beyond twice PIL's own limit, PIL refuses in open(): the message still names ours.
  bomb = _images.png_header(tmp_path / 'bomb.png', 30000, 30000)
  with pytest.raises(image_safety.ImageTooLargeError,
                     match=r'bomb\.png: 900,000,000 pixels is too large: the limit is '
                           r'80,000,000 pixels'):
    image_safety.open_image(bomb)


def test_unreadable_files_and_decoded_images(tmp_path):
  junk = tmp_path / 'junk.png'
  junk.write_bytes(b'\x89PNG but not really')
  with pytest.raises(image_safety.UnreadableImageError, match=r'junk\.png: not a readable image'):
    image_safety.open_image(junk)
  with pytest.raises(image_safety.ImageTooLargeError, match=r'^sketch: 300x200 pixels'):
    image_safety.check_pixels(Image.new('L', (300, 200)), 'sketch', limit=59_999)
  image_safety.check_pixels(Image.new('L', (300, 200)), 'sketch', limit=60_000)
  assert image_safety.MAX_SKETCH_PIXELS < image_safety.MAX_IMAGE_PIXELS
