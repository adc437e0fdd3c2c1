"""STBIR-Synth: a procedural fine-grained sketch+text benchmark (numpy + PIL only).

Every category has a parametric 2D shape model. A *family* fixes a base design
(category, base structure, base appearance); its K structural variants change a
few contour parameters (heel height, lace count, leg style, handle shape...) and
its M appearance variants change only colour, pattern and material, always
including the main colour. So the K*M instances of a family are twins:

  * appearance twins (same k) have identical structure: only text separates them;
  * structural twins (same m) have identical appearance: only the sketch does.

Descriptions always name the main colour and never the structural variant;
sketches are contour-only stroke-order maps aligned with the photo's object.

Everything is deterministic from `SynthSpec.seed`: each family draws from
`np.random.default_rng((seed, config, split, family, ...))`, so splits and
families can be generated independently (and in parallel).

Modules: spec (configurations, palette, materials, `SynthSpec`), geometry (shape primitives),
shoes / chairs / daily (the per-category designs), categories (the category table), twins
(structural and appearance variants of a family), render (photo and sketch), descriptions
(texts), generator (records and their ground truth).
"""

from stbir_jax.data.synth.descriptions import text_from_choices
from stbir_jax.data.synth.generator import family_with_params, generate, generate_with_params
from stbir_jax.data.synth.spec import CONFIGS, SPLITS, SynthSpec, num_instances

__all__ = ['CONFIGS', 'SPLITS', 'SynthSpec', 'family_with_params', 'generate',
           'generate_with_params', 'num_instances', 'text_from_choices']
