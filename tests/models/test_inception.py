"""The FID InceptionV3 in Flax equals a PyTorch reference of pytorch-fid's network, and its .pth
import (`python -m esrgan_jax.convert --inception`) maps every key."""

import jax
import numpy as np
import pytest
import torch

from esrgan_jax import convert
from esrgan_jax.models import InceptionV3FID
from esrgan_jax.models.inception import resize_bilinear
from esrgan_jax.weights import inception as inception_weights
from esrgan_jax.weights.store import CheckpointError
from reference import torch_inception


@pytest.fixture(scope="module")
def torch_net():
  calibration = np.random.default_rng(1).uniform(size=(2, 75, 75, 3)).astype(np.float32)
  return torch_inception.random_fid_inception(0, calibration)


@pytest.fixture(scope="module")
def pth_file(torch_net, tmp_path_factory):
  path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
  torch.save(torch_net.state_dict(), path)
  return path


def test_features_and_logits_equal_the_torch_reference(torch_net):
  images = np.random.default_rng(0).uniform(size=(2, 75, 75, 3)).astype(np.float32)
  with torch.no_grad():
    features, logits = torch_net(torch_inception.to_nchw(images))
  variables = inception_weights.inception_variables_from_torch(
      torch_inception.numpy_state_dict(torch_net))
  got_features, got_logits = jax.jit(InceptionV3FID().apply)(variables, images)
  assert got_features.shape == (2, 2048) and got_logits.shape == (2, 1008)
  np.testing.assert_allclose(got_features, features.numpy(), atol=1e-4)
  np.testing.assert_allclose(got_logits, logits.numpy(), atol=1e-4)


def test_resize_is_torch_bilinear_without_antialiasing():
  images = np.random.default_rng(2).uniform(size=(1, 40, 57, 3)).astype(np.float32)
  expected = torch.nn.functional.interpolate(torch_inception.to_nchw(images), size=(299, 299),
                                             mode="bilinear", align_corners=False)
  np.testing.assert_allclose(resize_bilinear(images), expected.permute(0, 2, 3, 1).numpy(),
                             atol=1e-5)


def test_convert_cli_round_trip_and_key_errors(torch_net, pth_file, tmp_path, capsys):
  out = tmp_path / "converted"
  assert convert.main(["--inception", str(pth_file), str(out)]) == 0
  loaded = inception_weights.load_inception_variables(out)
  direct = inception_weights.inception_variables_from_torch(torch_inception.numpy_state_dict(torch_net))
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(direct)):
    np.testing.assert_array_equal(got, want)

  state = torch_inception.numpy_state_dict(torch_net)
  missing = dict(state)
  del missing["Mixed_7c.branch_pool.conv.weight"]
  missing["aux.fc.weight"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError) as error:
    inception_weights.inception_variables_from_torch(missing, "net.pth")
  message = str(error.value)
  assert "\n" not in message and "Mixed_7c.branch_pool.conv.weight" in message
  assert "aux.fc.weight" in message

  capsys.readouterr()
  assert convert.main(["--inception", str(pth_file), str(out)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("esrgan_jax: error:") and "exists" in err[0]
