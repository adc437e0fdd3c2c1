"""Mesh resolution and the FSDP partition rule."""

import pytest
from jax.sharding import PartitionSpec as P

from stbir_jax import sharding


@pytest.mark.parametrize('axes,devices,expected', [
    (dict(data=-1, fsdp=1, model=1), 8, (8, 1, 1)),
    (dict(data=2, fsdp=-1, model=1), 8, (2, 4, 1)),
    (dict(data=1, fsdp=1, model=1), 1, (1, 1, 1)),
])
def test_mesh_shape_fills_one_axis(axes, devices, expected):
  assert sharding.mesh_shape(axes, devices) == expected


@pytest.mark.parametrize('axes,devices,message', [
    (dict(data=-1, fsdp=-1, model=1), 8, 'at most one axis'),
    (dict(data=3, fsdp=-1, model=1), 8, 'not divisible'),
    (dict(data=2, fsdp=2, model=1), 8, 'needs 4 devices but 8'),
])
def test_mesh_shape_errors(axes, devices, message):
  with pytest.raises(sharding.MeshError, match=message):
    sharding.mesh_shape(axes, devices)


def test_fsdp_rule_splits_largest_divisible_dim_of_large_kernels():
  assert sharding.param_spec((768, 3072), 4) == P(None, 'fsdp')
  assert sharding.param_spec((3072, 768), 4) == P('fsdp', None)
  # 30522 is not divisible by 4: the next largest dimension is split.
  assert sharding.param_spec((30522, 384), 4) == P(None, 'fsdp')
  assert sharding.param_spec((64, 64), 4) == P()            # small: replicated
  assert sharding.param_spec((768, 3072), 1) == P()         # no fsdp axis
  assert sharding.param_spec((), 4) == P()
