"""The data vocabulary, defined once: split names and dataset names.

Dataset names: `SYNTH`, the procedural benchmark the pipeline builds on demand, and the real
datasets, each read from its own on-disk layout by formats/ (`python -m stbir_jax.data.prepare
--format=NAME`) and given an evaluation protocol in configs/base.py.
"""

SPLITS = ('train', 'validation', 'test')

SYNTH = 'stbir_synth'
SHOEV2 = 'shoev2'
CHAIRV2 = 'chairv2'
SKETCHY = 'sketchy'
FSCOCO = 'fscoco'
MANIFEST = 'manifest'
REAL_DATASETS = (SHOEV2, CHAIRV2, SKETCHY, FSCOCO, MANIFEST)
