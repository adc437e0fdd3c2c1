"""Every category of every configuration: its design, the levels of its structural variants,
its nouns, parts and materials, and how its photos are shaded."""

import dataclasses

from stbir_jax.data.synth import chairs, daily, shoes


@dataclasses.dataclass(frozen=True)
class Category:
  levels: dict
  style: callable
  build: callable
  nouns: tuple
  parts: tuple              # (main part, secondary part, secondary is plural)
  materials: tuple
  secondary_materials: tuple
  shading: str              # profile | cylinder | flat
  adjectives: tuple


_SHOE_ADJ = ('comfy', 'stylish', 'casual', 'nice', 'everyday', 'classic', 'simple')
_CHAIR_ADJ = ('comfy', 'simple', 'nice', 'sturdy', 'modern', 'classic', 'cosy')
_DAILY_ADJ = ('nice', 'simple', 'classic', 'everyday', 'handy', 'pretty', 'plain-looking')


def _mk_shoe(name, nouns, materials):
  return Category(shoes.LEVELS[name], lambda rng: shoes.style(rng, name),
                  lambda structure: shoes.build(structure, name), nouns, ('upper', 'sole', False),
                  materials, ('rubber', 'leather', 'cork'), 'profile', _SHOE_ADJ)


def _mk_chair(name, nouns, materials, secondary):
  return Category(chairs.LEVELS[name], lambda rng: chairs.style(rng, name),
                  lambda structure: chairs.build(structure, name), nouns,
                  ('seat', 'legs' if name != 'office chair' else 'base', name != 'office chair'),
                  materials, secondary, 'flat', _CHAIR_ADJ)


def _mk_daily(name, build, nouns, parts, materials, secondary):
  return Category(daily.LEVELS[name], lambda rng: daily.style(rng, name), build, nouns, parts,
                  materials, secondary, 'cylinder', _DAILY_ADJ)


CATEGORIES = {
    'shoes': (
        _mk_shoe('sneaker', ('sneaker', 'trainer', 'shoe'), ('canvas', 'leather', 'mesh', 'suede')),
        _mk_shoe('boot', ('boot', 'shoe'), ('leather', 'suede', 'canvas', 'patent')),
        _mk_shoe('high heel', ('heel', 'shoe', 'pump'), ('leather', 'patent', 'suede')),
        _mk_shoe('loafer', ('loafer', 'shoe', 'slip-on'), ('leather', 'suede', 'patent', 'canvas')),
    ),
    'chairs': (
        _mk_chair('dining chair', ('chair', 'dining chair', 'seat'),
                  ('wood', 'fabric', 'leather', 'plastic'), ('wood', 'metal')),
        _mk_chair('armchair', ('armchair', 'chair', 'seat'), ('fabric', 'leather', 'velvet'),
                  ('wood', 'metal')),
        _mk_chair('office chair', ('office chair', 'chair', 'desk chair'),
                  ('fabric', 'leather', 'mesh', 'plastic'), ('plastic', 'metal')),
        _mk_chair('stool', ('stool', 'seat', 'bar stool'), ('wood', 'leather', 'plastic', 'velvet'),
                  ('wood', 'metal')),
    ),
    'daily': (
        _mk_daily('mug', daily.mug, ('mug', 'cup'), ('body', 'handle', False),
                  ('ceramic', 'glass', 'metal', 'plastic'), ('ceramic', 'metal', 'plastic')),
        _mk_daily('lamp', daily.lamp, ('lamp', 'table lamp', 'light'), ('shade', 'base', False),
                  ('fabric', 'paper', 'glass', 'metal'), ('metal', 'wood', 'ceramic')),
        _mk_daily('bottle', daily.bottle, ('bottle', 'flask'), ('bottle', 'cap', False),
                  ('glass', 'plastic', 'metal'), ('plastic', 'metal', 'cork')),
        _mk_daily('bag', daily.bag, ('bag', 'handbag', 'purse'), ('bag', 'handles', True),
                  ('leather', 'canvas', 'suede', 'fabric'), ('leather', 'fabric', 'canvas')),
        _mk_daily('hat', daily.hat, ('hat', 'cap'), ('hat', 'band', False),
                  ('felt', 'straw', 'wool', 'cotton'), ('fabric', 'leather', 'velvet')),
        _mk_daily('vase', daily.vase, ('vase', 'pot'), ('vase', 'foot', False),
                  ('ceramic', 'glass', 'metal'), ('ceramic', 'metal', 'wood')),
    ),
}
