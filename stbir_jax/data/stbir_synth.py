"""TFDS builder for STBIR-Synth, the procedural benchmark of stbir_jax.data.synth.

Configs are named by configuration and generator spec, so datasets of different sizes never
share a directory: `shoes`, `chairs`, `daily` are the default spec (64 px, 256/16/64 families of
4x4 instances, 3 sketches and 3 texts each); any other spec gets a config such as
`shoes_r224_f256-16-64_k4m4_s3t3_seed0` (see `builder_for`).

  python -m stbir_jax.data.stbir_synth --config=shoes [--data_dir=DIR] [--resolution=224 ...]
  tfds build stbir_jax/data/stbir_synth.py --config=shoes [--data_dir=DIR]

(the `tfds` CLI of TFDS 4.9.10 imports apache_beam at start-up, so it needs
`pip install apache-beam`; the build itself does not use Beam), or from Python:
`builder_for('shoes', SynthSpec(...), data_dir).download_and_prepare()`, which is what
`stbir_jax.data.pipeline.ensure_built` does for a training config.

Records are written in generation order (family-major), as array_record files for Grain's
random access. No Apache Beam: the builder writes in-process. Images are PNG-encoded here with
PIL (fast zlib level 1) rather than by TFDS's TensorFlow graph runner, which measured 2x slower
per record at 64 px plus a graph warm-up; generation dominates the build time (default `shoes`,
5,376 photos at 64 px: 32 s on one core, of which ~8 s encoding and writing).
"""

import importlib
import io
import os
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

try:
  from stbir_jax.data import names, schema
except ImportError:  # `tfds build stbir_jax/data/stbir_synth.py` from a checkout, not installed
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  from stbir_jax.data import names, schema

NAME = names.SYNTH
VERSION = '1.0.0'


def _synthetic():
  # Looked up on use (in sys.modules) so tests can substitute a small generator module.
  return importlib.import_module('stbir_jax.data.synth')


def config_names() -> tuple:
  return tuple(_synthetic().CONFIGS)


def spec_name(config_name: str, spec) -> str:
  """'shoes' for the default spec, else e.g. 'shoes_r64_f256-16-64_k4m4_s3t3_seed0'."""
  if spec == _synthetic().SynthSpec():
    return config_name
  return (f'{config_name}_r{spec.resolution}'
          f'_f{spec.train_families}-{spec.validation_families}-{spec.test_families}'
          f'_k{spec.structural_variants}m{spec.appearance_variants}'
          f'_s{spec.sketches_per_instance}t{spec.texts_per_instance}_seed{spec.seed}')


class StbirSynthConfig(tfds.core.BuilderConfig):
  """One configuration ('shoes' | 'chairs' | 'daily') at one generator spec."""

  def __init__(self, *, synth_config: str, spec, **kwargs):
    kwargs.setdefault('name', spec_name(synth_config, spec))
    kwargs.setdefault('description', f'STBIR-Synth {synth_config!r}, {spec}')
    super().__init__(**kwargs)
    self.synth_config = synth_config
    self.spec = spec


def _default_configs():
  synthetic = _synthetic()
  return [StbirSynthConfig(synth_config=name, spec=synthetic.SynthSpec())
          for name in synthetic.CONFIGS]


def _encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 (H, W, C) array (C = 1 or 3)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'Expected a uint8 image, got {image.dtype} {image.shape}')
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  buf = io.BytesIO()
  pil.save(buf, format='PNG', compress_level=1)
  return buf.getvalue()


def _check_shape(what, array, shape, where):
  if tuple(np.shape(array)) != tuple(shape) or np.asarray(array).dtype != np.uint8:
    raise ValueError(f'{where}: {what} is {np.asarray(array).dtype} {np.shape(array)}; expected '
                     f'uint8 {tuple(shape)}')


def encode_record(record: dict, resolution: int, where: str = 'record') -> dict:
  """A generator record (numpy arrays) -> the feature dict TFDS writes, images as PNG bytes."""
  r = resolution
  _check_shape('image', record['image'], (r, r, 3), where)
  sketches = np.asarray(record['sketches'])
  if sketches.size == 0:
    sketches = np.zeros((0, r, r, 1), np.uint8)
  _check_shape('sketches', sketches, (len(sketches), r, r, 1), where)
  return {
      'image': _encode_png(record['image']),
      'sketches': [_encode_png(s) for s in sketches],
      'texts': [str(t) for t in record['texts']],
      'category': int(record['category']),
      'family': int(record['family']),
      'instance': int(record['instance']),
      'photo_id': str(record['photo_id']),
  }


# Run as `python -m`, this file is __main__ and main() uses the importable module's builder
# (TFDS cannot locate a builder's package from __main__); its own copy must not register.
class StbirSynth(tfds.core.GeneratorBasedBuilder, skip_registration=__name__ == '__main__'):
  """STBIR-Synth: photos of near-identical instances with sketches and texts."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): 'Initial release.'}
  BUILDER_CONFIGS = _default_configs()
  DEFAULT_CONFIG_NAME = 'shoes'

  def __init__(self, *, file_format=None, **kwargs):
    # array_record by default (also for `tfds build`): Grain needs random access.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS's default probes `importlib_resources`, which is not a dependency of this project
    # (ModuleNotFoundError otherwise); the path only locates an optional checksums file.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=schema.features(cfg.spec.resolution, _synthetic().CONFIGS[cfg.synth_config]),
        supervised_keys=None,
        homepage='https://arxiv.org/abs/2604.15735',
        # Generation order (family-major) is kept on disk; the pipeline shuffles per epoch.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is generated
    return {split: self._generate_examples(split) for split in _synthetic().SPLITS}

  def _generate_examples(self, split):
    cfg = self.builder_config
    for i, record in enumerate(_synthetic().generate(cfg.synth_config, split, cfg.spec)):
      where = f'{NAME}/{cfg.name} {split} record {i}'
      yield i, encode_record(record, cfg.spec.resolution, where)


def builder_for(config_name: str, spec, data_dir) -> StbirSynth:
  """The builder of configuration `config_name` at generator `spec`, stored under `data_dir`."""
  names = config_names()
  if config_name not in names:
    raise ValueError(f'Unknown {NAME} configuration {config_name!r}; valid configurations: '
                     f'{", ".join(names)}')
  name = spec_name(config_name, spec)
  if name == config_name:  # a registered default config
    return StbirSynth(config=name, data_dir=data_dir or None)
  config = StbirSynthConfig(synth_config=config_name, spec=spec)
  return StbirSynth(config=config, data_dir=data_dir or None)


__all__ = ['StbirSynth', 'StbirSynthConfig', 'builder_for', 'spec_name', 'NAME', 'VERSION']


def _define_flags(flag_values) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum('config', None, config_names(), 'the dataset configuration',
                    flag_values=flag_values)
  flags.DEFINE_string('data_dir', '', "'' = $TFDS_DATA_DIR or ~/tensorflow_datasets",
                      flag_values=flag_values)
  for field in _synthetic().SynthSpec.__dataclass_fields__:
    flags.DEFINE_integer(field, getattr(_synthetic().SynthSpec(), field), f'SynthSpec.{field}',
                         flag_values=flag_values)
  flags.mark_flag_as_required('config', flag_values=flag_values)


def _build(f) -> int:
  import time  # pylint: disable=g-import-not-at-top
  spec_type = _synthetic().SynthSpec
  spec = spec_type(**{field: getattr(f, field) for field in spec_type.__dataclass_fields__})
  data_dir = os.path.expanduser(f.data_dir or os.environ.get('TFDS_DATA_DIR', '')
                                or '~/tensorflow_datasets')
  module = importlib.import_module('stbir_jax.data.stbir_synth')
  builder = module.builder_for(f.config, spec, data_dir)
  start = time.time()
  builder.download_and_prepare()
  print(f'{NAME}/{builder.builder_config.name}: {builder.data_dir} '
        f'({time.time() - start:.1f}s)')
  return 0


def main(argv=None) -> int:
  """`python -m stbir_jax.data.stbir_synth --config=shoes [--data_dir=DIR] [--resolution=224]`.

  The same build as `tfds build stbir_jax/data/stbir_synth.py --config=shoes` (whose CLI needs
  apache-beam installed in TFDS 4.9.10, although building does not), with any generator size.
  `argv`: the flags as a list (stbir_jax.cli.run_program); None: sys.argv.
  """
  from stbir_jax import cli  # pylint: disable=g-import-not-at-top
  return cli.run_program('stbir_synth', _define_flags, _build, argv)


if __name__ == '__main__':
  sys.exit(main())
