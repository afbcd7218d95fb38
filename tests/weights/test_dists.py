"""DISTS weight files: torchvision's and the package's layouts, and one-line errors naming the file."""

import jax
import numpy as np
import pytest
import torch

from esrgan_jax.metrics.dists import DistsMetric
from esrgan_jax.weights.dists import load_dists, load_dists_dir, save_dists, torchvision_layout
from esrgan_jax.weights.store import CheckpointError
from tests.dists_files import published_alpha_beta, published_dists, write_weight_files


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
  return write_weight_files(tmp_path_factory.mktemp("dists_files"), seed=1)


def assert_one_line_naming(error, path):
  message = str(error.value)
  assert "\n" not in message and str(path) in message, message


def test_layout_is_the_published_modules(weight_files):
  reference, _, _ = weight_files
  published = published_dists(reference.features)
  convs = {(stage, int(index)) for stage in range(1, 6)
           for index, layer in getattr(published, f"stage{stage}").named_children()
           if isinstance(layer, torch.nn.Conv2d)}
  assert set(torchvision_layout().values()) == convs and len(convs) == 13


def test_full_published_state_dict_holds_everything(weight_files, tmp_path):
  reference, weights_path, backbone_path = weight_files
  full_path = tmp_path / "dists_full.pth"
  torch.save(published_dists(reference.features).state_dict(), full_path)
  _, from_full = load_dists(full_path, None)
  _, from_two = load_dists(weights_path, backbone_path)
  assert jax.tree.structure(from_full) == jax.tree.structure(from_two)
  jax.tree.map(np.testing.assert_array_equal, from_full, from_two)
  alpha, _ = published_alpha_beta()
  np.testing.assert_array_equal(from_two["alpha"], alpha.numpy().reshape(-1))
  # The first conv in Flax's HWIO layout.
  np.testing.assert_array_equal(from_two["backbone"]["conv1_1"]["kernel"],
                                reference.features[0].weight.detach().numpy().transpose(2, 3, 1, 0))


def test_bad_weight_files_name_the_file(weight_files, tmp_path):
  _, weights_path, backbone_path = weight_files
  truncated = tmp_path / "truncated.pt"
  truncated.write_bytes(weights_path.read_bytes()[:200])
  cases = [((truncated, backbone_path), truncated),
           ((weights_path, tmp_path / "missing.pth"), tmp_path / "missing.pth"),
           ((backbone_path, weights_path), backbone_path),  # the two files swapped
           ((weights_path, weights_path), weights_path),  # no backbone in it
           ((weights_path, None), weights_path)]  # alpha and beta alone
  alpha, beta = published_alpha_beta()
  for name, state in {"narrow": {"alpha": alpha[:, :1000], "beta": beta},
                      "zero": {"alpha": alpha * 0, "beta": beta * 0},
                      "no_beta": {"alpha": alpha},
                      "extra": {"alpha": alpha, "beta": beta, "gamma": beta}}.items():
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    cases.append(((path, backbone_path), path))
  backbone = torch.load(backbone_path, weights_only=True)
  del backbone["features.28.bias"]
  short = tmp_path / "short_vgg16.pth"
  torch.save(backbone, short)
  cases.append(((weights_path, short), short))
  for paths, culprit in cases:
    with pytest.raises(CheckpointError) as error:
      load_dists(*paths)
    assert_one_line_naming(error, culprit)
  with pytest.raises(CheckpointError, match="sum to 0.0"):
    load_dists(tmp_path / "zero.pt", backbone_path)
  with pytest.raises(CheckpointError, match="features.28.bias"):
    load_dists(weights_path, short)


def test_directories_round_trip_and_bad_ones_name_the_path(weight_files, tmp_path):
  _, weights_path, backbone_path = weight_files
  _, params = load_dists(weights_path, backbone_path)
  save_dists(tmp_path / "dists", params)
  _, loaded = load_dists_dir(tmp_path / "dists")
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  for path in (weights_path, tmp_path / "none", tmp_path):  # a .pth, nothing, no params/meta
    with pytest.raises(CheckpointError) as error:
      DistsMetric.from_dir(path)
    assert_one_line_naming(error, path)
  with pytest.raises(CheckpointError) as error:  # a tree of another shape
    save_dists(tmp_path / "other", {**params, "alpha": params["alpha"][:3]})
  assert_one_line_naming(error, tmp_path / "other")
