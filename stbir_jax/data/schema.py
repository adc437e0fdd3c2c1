"""The one record format every dataset is stored in (synthetic and real alike).

One record per photo (gallery item):

  image      uint8 (R, R, 3)        the photo, stored as PNG
  sketches   uint8 (S, R, R, 1)     S >= 0 stroke-order maps: 0 = background, k = k-th stroke
                                    drawn (outline first), strokes past 255 clipped to 255
  texts      S' >= 0 strings        descriptions of the photo (colour, material, texture)
  category   int64 (ClassLabel)     category within the dataset
  family     int64                  twin family (synthetic) or -1 when the dataset has none
  instance   int64                  unique id of the photo within the dataset (all splits)
  photo_id   string                 a human-readable id (file stem for real data)

A missing modality is an empty `sketches` or `texts` sequence.
"""

import numpy as np
import tensorflow_datasets as tfds

NO_FAMILY = -1


def features(resolution: int, category_names) -> tfds.features.FeaturesDict:
  r = int(resolution)
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(r, r, 3), encoding_format='png'),
      'sketches': tfds.features.Sequence(
          tfds.features.Image(shape=(r, r, 1), encoding_format='png')),
      'texts': tfds.features.Sequence(tfds.features.Text()),
      'category': tfds.features.ClassLabel(names=list(category_names)),
      'family': tfds.features.Scalar(dtype=np.int64),
      'instance': tfds.features.Scalar(dtype=np.int64),
      'photo_id': tfds.features.Text(),
  })
