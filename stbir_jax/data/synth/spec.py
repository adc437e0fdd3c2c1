"""What one STBIR-Synth configuration is made of: its categories, colours, materials and sizes.

`CONFIGS` names the categories of each configuration; `SynthSpec` fixes the size and seed of a
generated dataset, and the helpers here validate both and count what `generate` yields.
"""

import dataclasses

from stbir_jax.data.names import SPLITS

CONFIGS = {
    'shoes': ('sneaker', 'boot', 'high heel', 'loafer'),
    'chairs': ('dining chair', 'armchair', 'office chair', 'stool'),
    'daily': ('mug', 'lamp', 'bottle', 'bag', 'hat', 'vase'),
}

PALETTE = {
    'red': (196, 32, 38), 'blue': (48, 100, 214), 'green': (46, 148, 64),
    'yellow': (240, 204, 46), 'black': (30, 30, 34), 'white': (238, 238, 232),
    'brown': (118, 72, 40), 'grey': (132, 134, 140), 'pink': (238, 136, 178),
    'orange': (238, 128, 32), 'purple': (118, 52, 160), 'navy': (26, 36, 92),
}
COLOURS = tuple(PALETTE)
PATTERNS = ('plain', 'striped', 'dotted', 'checked')

# name -> (adjective, noun phrase, gloss, texture kind, texture amplitude)
MATERIALS = {
    'leather': ('leather', 'leather', 0.25, 'noise', 0.05),
    'patent': ('patent leather', 'patent leather', 0.6, 'none', 0.0),
    'canvas': ('canvas', 'canvas', 0.0, 'weave', 0.09),
    'suede': ('suede', 'suede', 0.0, 'noise', 0.12),
    'mesh': ('mesh', 'breathable mesh', 0.05, 'mesh', 0.18),
    'rubber': ('rubber', 'rubber', 0.1, 'noise', 0.03),
    'cork': ('cork', 'cork', 0.0, 'noise', 0.2),
    'wood': ('wooden', 'wood', 0.1, 'grain', 0.14),
    'fabric': ('fabric', 'fabric', 0.0, 'weave', 0.07),
    'velvet': ('velvet', 'velvet', 0.12, 'noise', 0.07),
    'metal': ('metal', 'metal', 0.55, 'brushed', 0.08),
    'plastic': ('plastic', 'plastic', 0.35, 'none', 0.0),
    'ceramic': ('ceramic', 'ceramic', 0.45, 'none', 0.0),
    'glass': ('glass', 'glass', 0.75, 'none', 0.0),
    'paper': ('paper', 'paper', 0.0, 'noise', 0.04),
    'felt': ('felt', 'felt', 0.0, 'noise', 0.09),
    'straw': ('straw', 'woven straw', 0.05, 'straw', 0.16),
    'wool': ('wool', 'wool', 0.0, 'weave', 0.1),
    'cotton': ('cotton', 'cotton', 0.0, 'weave', 0.05),
}




@dataclasses.dataclass(frozen=True)
class SynthSpec:
  """Size and seed of one generated configuration."""
  resolution: int = 64
  train_families: int = 256
  validation_families: int = 16
  test_families: int = 64
  structural_variants: int = 4
  appearance_variants: int = 4
  sketches_per_instance: int = 3
  texts_per_instance: int = 3
  seed: int = 0

  @classmethod
  def from_config(cls, data_config) -> 'SynthSpec':
    """From `config.data`: its `resolution` and every field of `config.data.synth`."""
    synth = data_config.synth
    names = [f.name for f in dataclasses.fields(cls) if f.name != 'resolution']
    unknown = sorted(set(synth.keys()) - set(names))
    if unknown:
      raise ValueError(f'Unknown config.data.synth keys {unknown}; valid keys: {", ".join(names)}')
    return cls(
        resolution=int(data_config.resolution), **{key: int(synth[key]) for key in synth})

  def families(self, split: str) -> int:
    return {'train': self.train_families, 'validation': self.validation_families,
            'test': self.test_families}[SPLITS[split_index(split)]]


def config_index(config_name):
  if config_name not in CONFIGS:
    raise ValueError(f'Unknown STBIR-Synth configuration {config_name!r}; valid configurations: '
                     f'{", ".join(CONFIGS)}')
  return list(CONFIGS).index(config_name)


def split_index(split):
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; valid splits: {", ".join(SPLITS)}')
  return SPLITS.index(split)


def check_spec(spec):
  if not 16 <= spec.resolution <= 1024:
    raise ValueError(f'SynthSpec.resolution must be in [16, 1024], got {spec.resolution}')
  if not 1 <= spec.appearance_variants <= len(COLOURS):
    raise ValueError(f'SynthSpec.appearance_variants must be in [1, {len(COLOURS)}] (one main '
                     f'colour each), got {spec.appearance_variants}')
  if spec.structural_variants < 1:
    raise ValueError(f'SynthSpec.structural_variants must be >= 1, got {spec.structural_variants}')
  for name in ('train_families', 'validation_families', 'test_families', 'sketches_per_instance',
               'texts_per_instance'):
    if getattr(spec, name) < 0:
      raise ValueError(f'SynthSpec.{name} must be >= 0, got {getattr(spec, name)}')


def num_instances(config_name: str, split: str, spec: SynthSpec) -> int:
  """Number of records `generate(config_name, split, spec)` yields."""
  config_index(config_name)
  return spec.families(split) * spec.structural_variants * spec.appearance_variants


def family_offset(split, spec):
  return sum(spec.families(s) for s in SPLITS[:split_index(split)])
