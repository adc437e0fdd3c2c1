"""The twins of a family: its base structure and appearance, and their K structural and M
appearance variants (appearance variants always change the main colour)."""

import numpy as np

from stbir_jax.data.synth.spec import COLOURS, PATTERNS


def pick(rng, seq, exclude=()):
  options = [v for v in seq if v not in exclude]
  return options[int(rng.integers(len(options)))]


def base_structure(rng, category):
  structure = {
      name: levels[int(rng.integers(len(levels)))] for name, levels in category.levels.items()
  }
  structure.update({name: float(levels) for name, levels in category.style(rng).items()})
  return structure


def structural_variants(rng, category, base, k_variants):
  varying = sorted(k for k, v in category.levels.items() if len(v) > 1)
  total = int(np.prod([len(category.levels[k]) for k in varying]))
  if k_variants > total:
    raise ValueError(f'structural_variants={k_variants} exceeds the {total} distinct structures '
                     f'of this category')
  variants, tries = [base], 0
  while len(variants) < k_variants:
    tries += 1
    candidate = dict(base)
    n_change = min(len(varying), 1 + (rng.random() < 0.4) + tries // 40)
    for name in rng.choice(varying, size=n_change, replace=False):
      candidate[name] = pick(rng, category.levels[name], exclude=(base[name],))
    if candidate not in variants:
      variants.append(candidate)
  return variants


def base_appearance(rng, category):
  main = pick(rng, COLOURS)
  return {
      'main_colour': main,
      'secondary_colour': pick(rng, COLOURS, (main,)),
      'accent_colour': pick(rng, COLOURS, (main,)),
      'pattern': PATTERNS[int(rng.choice(4, p=[0.46, 0.18, 0.18, 0.18]))],
      'pattern_colour': pick(rng, COLOURS, (main,)),
      'material': pick(rng, category.materials),
      'secondary_material': pick(rng, category.secondary_materials)}


def appearance_variants(rng, category, base, m_variants):
  others = [c for c in COLOURS if c != base['main_colour']]
  mains = [base['main_colour']] + [others[i] for i in rng.permutation(len(others))[:m_variants - 1]]
  variants = [base]
  for main in mains[1:]:
    appearance = dict(base, main_colour=main)
    if rng.random() < 0.4:
      appearance['pattern'] = pick(rng, PATTERNS, (base['pattern'],))
    if rng.random() < 0.3:
      appearance['material'] = (pick(rng, category.materials, (base['material'],))
                                if len(category.materials) > 1 else base['material'])
    if rng.random() < 0.3 or appearance['secondary_colour'] == main:
      appearance['secondary_colour'] = pick(rng, COLOURS, (main, base['secondary_colour']))
    if appearance['accent_colour'] == main:
      appearance['accent_colour'] = pick(rng, COLOURS, (main,))
    if appearance['pattern_colour'] == main:
      appearance['pattern_colour'] = pick(rng, COLOURS, (main, appearance['secondary_colour']))
    variants.append(appearance)
  return variants
