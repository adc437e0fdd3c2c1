"""Generation: the records of a split, family by family, and the ground truth behind them."""

from collections.abc import Iterator

import numpy as np

from stbir_jax.data.synth import descriptions, render, twins
from stbir_jax.data.synth.categories import CATEGORIES
from stbir_jax.data.synth.spec import (
  CONFIGS,
  SynthSpec,
  check_spec,
  config_index,
  family_offset,
  split_index,
)


def generate_with_params(config_name: str, split: str,
                         spec: SynthSpec) -> Iterator[tuple[dict, dict]]:
  """Yields (record, params) for every instance of `split`, family by family.

  params: 'structure' and 'appearance' dicts, 'structural_variant' k, 'appearance_variant' m;
  the ground truth behind the records for ceiling.py: 'category' (the category model), 'pose'
  (A, b) of the photo, 'drawer_poses' of each sketch and 'text_choices' of each description.
  """
  config_index(config_name)
  check_spec(spec)
  for family_index in range(spec.families(split)):
    yield from family_with_params(config_name, split, spec, family_index)


def family_with_params(config_name: str, split: str, spec: SynthSpec,
                       family_index: int) -> Iterator[tuple[dict, dict]]:
  """(record, params) of the K*M instances of family number `family_index` (0-based) within
  `split`."""
  config_number, split_number = config_index(config_name), split_index(split)
  check_spec(spec)
  if not 0 <= family_index < spec.families(split):
    raise ValueError(f'family {family_index} out of range: split {split!r} has '
                     f'{spec.families(split)} families')
  category_names = CONFIGS[config_name]
  num_structures, num_appearances = spec.structural_variants, spec.appearance_variants
  resolution = spec.resolution
  rng = np.random.default_rng((spec.seed, config_number, split_number, family_index))
  category_index = family_index % len(category_names)  # balanced categories
  category = CATEGORIES[config_name][category_index]
  structures = twins.structural_variants(rng, category, twins.base_structure(rng, category),
                                         num_structures)
  appearances = twins.appearance_variants(rng, category, twins.base_appearance(rng, category),
                                          num_appearances)
  family = family_offset(split, spec) + family_index
  for k, structure in enumerate(structures):
    drawing = render.Drawing(category.build(structure))
    for m, appearance in enumerate(appearances):
      instance_rng = np.random.default_rng(
          (spec.seed, config_number, split_number, family_index, k, m))
      pose = render.pose(instance_rng, drawing, resolution)
      image = render.render_photo(instance_rng, drawing, appearance, category, *pose, resolution)
      sketches = np.zeros((spec.sketches_per_instance, resolution, resolution, 1), np.uint8)
      drawer_poses, text_choices = [], []
      for j in range(spec.sketches_per_instance):
        sketches[j, ..., 0] = render.render_sketch(instance_rng, drawing, *pose, resolution,
                                                   drawer_poses)
      texts = descriptions.texts(instance_rng, spec.texts_per_instance, category, appearance,
                                 text_choices)
      instance = family * num_structures * num_appearances + k * num_appearances + m
      record = {'image': image, 'sketches': sketches, 'texts': texts, 'category': category_index,
                'family': family, 'instance': instance,
                'photo_id': f'{config_name}-{split}-f{family:05d}-s{k}-a{m}'}
      params = {'structure': dict(structure), 'appearance': dict(appearance),
                'structural_variant': k, 'appearance_variant': m, 'category': category,
                'pose': pose, 'drawer_poses': drawer_poses, 'text_choices': text_choices}
      yield record, params


def generate(config_name: str, split: str, spec: SynthSpec) -> Iterator[dict]:
  """Yields the records (schema.py keys) of `split`, deterministic from `spec`."""
  for record, _ in generate_with_params(config_name, split, spec):
    yield record
