"""weights/generator.py's dispatch on the architecture record: RRDBNet records have no "arch" key
(old checkpoints keep loading), the others name theirs, SPAN is folded for inference."""

import jax
import numpy as np
import pytest

from esrgan_jax.models import RRDBNet
from esrgan_jax.models.span import SPAN
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.weights import generator
from esrgan_jax.weights.store import CheckpointError
from tests.tiny_generator import random_params
from tests.weights.test_fast_layouts import span_arch, srvgg_arch
from tests.weights.test_layouts import ARCH


@pytest.mark.parametrize("arch, module", [(ARCH, RRDBNet), (srvgg_arch(), SRVGGNetCompact),
                                          (span_arch(), SPAN)])
def test_records_build_their_module_and_round_trip_through_a_checkpoint(tmp_path, arch, module):
  model = generator.generator_from_arch(arch)
  assert type(model) is module and generator.arch_of(model) == arch
  params = random_params(model)
  generator.save_generator(tmp_path / "g", params, arch)
  loaded, loaded_arch = generator.load_generator(tmp_path / "g")
  assert loaded_arch == arch
  assert ("arch" in loaded_arch) == (module is not RRDBNet)  # RRDBNet's record stays as it was
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_span_runs_folded_and_others_as_they_are():
  arch = span_arch(upscale=2)
  params = random_params(generator.generator_from_arch(arch))
  model, folded = generator.inference_model_and_params(arch, params)
  assert model.deploy and "eval_conv" in folded["conv_1"]
  x = np.random.default_rng(0).random((1, 9, 7, 3), dtype=np.float32)
  np.testing.assert_allclose(model.apply({"params": folded}, x),
                             generator.generator_from_arch(arch).apply({"params": params}, x),
                             rtol=0, atol=1e-4)
  rrdb_params = {"any": 1}
  model, same = generator.inference_model_and_params(ARCH, rrdb_params)
  assert isinstance(model, RRDBNet) and same is rrdb_params


def test_unknown_architecture_is_one_line():
  with pytest.raises(CheckpointError, match="unknown generator architecture 'swinir'"):
    generator.generator_from_arch({"arch": "swinir", "scale": 4})
