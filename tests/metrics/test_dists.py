"""DISTS against the published dists-pytorch module and a PyTorch re-statement of its formula.

Both torch sides run on one random VGG16 (no ImageNet weights here) and the package's real alpha
and beta (tests/dists_files.py); images are small crops of a bundled photograph.
"""

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from esrgan_jax.metrics.dists import DistsMetric, dists_distance
from esrgan_jax.models.dists import min_image_size
from esrgan_jax.weights.dists import load_dists, save_dists
from tests.dists_files import published_dists, write_weight_files


def image_pairs(height, width, count=2, seed=0):
  """Crops of a photograph, and blurred, noisier versions of them: uint8 NHWC."""
  photo = skimage_data.astronaut()
  rng = np.random.default_rng(seed)
  clean = np.stack([photo[100 + 60 * i:100 + 60 * i + height, 180:180 + width]
                    for i in range(count)])
  blurred = (clean.astype(np.float64) + np.roll(clean, 1, axis=1) + np.roll(clean, 1, axis=2)) / 3
  noisy = blurred + rng.normal(0, 12, clean.shape) + 6
  return clean, np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def to_torch(images):
  return torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
  return write_weight_files(tmp_path_factory.mktemp("dists"), seed=0)


def test_distances_match_the_reference_and_the_published_module(weight_files):
  reference, weights_path, backbone_path = weight_files
  img0, img1 = image_pairs(64, 48)
  with torch.no_grad():
    expected = reference(to_torch(img0), to_torch(img1)).numpy()
    published = published_dists(reference.features)(to_torch(img0), to_torch(img1)).numpy()
  assert np.all(expected > 1e-2)  # the pairs differ, so the comparison means something
  np.testing.assert_allclose(published, expected, rtol=0, atol=1e-5)
  module, params = load_dists(weights_path, backbone_path)
  got = dists_distance(module, params, img0, img1)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got, published, rtol=0, atol=1e-5)
  # The order of the pair does not matter: every term is symmetric.
  np.testing.assert_allclose(dists_distance(module, params, img1, img0), got, rtol=0, atol=1e-6)


def test_identical_images_are_at_zero_and_uint8_equals_float(weight_files):
  _, weights_path, backbone_path = weight_files
  module, params = load_dists(weights_path, backbone_path)
  img0, img1 = image_pairs(64, 48, seed=1)
  np.testing.assert_allclose(dists_distance(module, params, img0, img0), 0, atol=1e-6)
  from_uint8 = dists_distance(module, params, img0, img1)
  from_float = dists_distance(module, params, img0 / 255.0, img1.astype(np.float32) / 255)
  assert np.all(from_uint8 > 0)
  np.testing.assert_allclose(from_float, from_uint8, rtol=1e-6)


def test_metric_from_a_saved_directory(weight_files, tmp_path):
  reference, weights_path, backbone_path = weight_files
  _, params = load_dists(weights_path, backbone_path)
  save_dists(tmp_path / "dists", params)
  metric = DistsMetric.from_dir(tmp_path / "dists")
  assert metric.name == "dists"
  img0, img1 = image_pairs(64, 48, count=1, seed=2)
  value = metric(img0[0], img1[0])
  assert isinstance(value, float)
  with torch.no_grad():
    expected = float(reference(to_torch(img0), to_torch(img1))[0])
  np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5)


def test_bad_images_are_one_line_value_errors(weight_files):
  _, weights_path, backbone_path = weight_files
  module, params = load_dists(weights_path, backbone_path)
  img0, img1 = image_pairs(64, 48, seed=3)
  with pytest.raises(ValueError, match="differ in shape"):
    dists_distance(module, params, img0, img1[:, :32])
  with pytest.raises(ValueError, match="uint8 or float"):
    dists_distance(module, params, img0.astype(np.int32), img1)
  with pytest.raises(ValueError, match="must be RGB"):
    dists_distance(module, params, img0[..., :1], img1[..., :1])
  size = min_image_size()
  small = img0[:, :size - 1, :]
  with pytest.raises(ValueError, match=f"at least {size}x{size} pixels, got {size - 1}x48"):
    dists_distance(module, params, small, small)
