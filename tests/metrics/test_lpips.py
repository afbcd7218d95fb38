"""LPIPS against a PyTorch reference written here from the lpips package's structure.

The reference (`ReferenceLPIPS`) has the package's module names, so its state_dict() carries the
real key names (scaling_layer.*, net.sliceK.N.*, linK.model.1.weight); the backbone file is saved
in torchvision's `features.N.*` layout. Weights are random (no ImageNet weights here); images are
small crops of a bundled photograph.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from skimage import data as skimage_data
from torch import nn

from esrgan_jax import convert
from esrgan_jax.metrics.lpips import LpipsMetric, lpips_distance
from esrgan_jax.models.lpips import LPIPS, min_image_size
from esrgan_jax.weights.lpips import load_lpips, lpips_param_shapes
from esrgan_jax.weights.store import CheckpointError

M = "M"  # a max-pool in the layer lists below
# torchvision's alexnet().features and vgg16().features, and the lpips package's slice ends.
ALEXNET_FEATURES = [(3, 64, 11, 4, 2), "R", (3, 2), (64, 192, 5, 1, 2), "R", (3, 2),
                    (192, 384, 3, 1, 1), "R", (384, 256, 3, 1, 1), "R", (256, 256, 3, 1, 1), "R",
                    (3, 2)]
VGG16_WIDTHS = [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M]
SLICE_ENDS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def torchvision_features(net):
  layers = []
  if net == "alex":
    for spec in ALEXNET_FEATURES:
      if spec == "R":
        layers.append(nn.ReLU())
      elif len(spec) == 2:
        layers.append(nn.MaxPool2d(*spec))
      else:
        in_ch, out_ch, kernel, stride, pad = spec
        layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, pad))
  else:
    in_ch = 3
    for width in VGG16_WIDTHS:
      if width == M:
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
        in_ch = width
  return nn.Sequential(*layers)


class ScalingLayer(nn.Module):

  def __init__(self):
    super().__init__()
    self.register_buffer("shift", torch.tensor([-.030, -.088, -.188])[None, :, None, None])
    self.register_buffer("scale", torch.tensor([.458, .448, .450])[None, :, None, None])

  def forward(self, x):
    return (x - self.shift) / self.scale


class TapNet(nn.Module):
  """The package's pretrained_networks.alexnet / vgg16: `features` cut into five slices."""

  def __init__(self, net, features):
    super().__init__()
    start = 0
    for k, end in enumerate(SLICE_ENDS[net], 1):
      block = nn.Sequential()
      for index in range(start, end):
        block.add_module(str(index), features[index])
      setattr(self, f"slice{k}", block)
      start = end

  def forward(self, x):
    taps = []
    for k in range(1, 6):
      x = getattr(self, f"slice{k}")(x)
      taps.append(x)
    return taps


class NetLinLayer(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class ReferenceLPIPS(nn.Module):
  """LPIPS(net, version='0.1') in eval mode, with the package's attribute names."""

  def __init__(self, net):
    super().__init__()
    self.features = torchvision_features(net)
    self.scaling_layer = ScalingLayer()
    self.net = TapNet(net, self.features)
    for k, channels in enumerate(CHANNELS[net]):
      setattr(self, f"lin{k}", NetLinLayer(channels))
    with torch.no_grad():  # learned lin weights are non-negative and small
      for k in range(5):
        weight = getattr(self, f"lin{k}").model[1].weight
        weight.copy_(torch.rand(weight.shape) * 0.2)
    self.eval()

  def forward(self, in0, in1):
    taps0 = self.net(self.scaling_layer(in0))
    taps1 = self.net(self.scaling_layer(in1))
    total = 0
    for k, (f0, f1) in enumerate(zip(taps0, taps1)):
      f0 = f0 / (torch.sqrt(torch.sum(f0**2, dim=1, keepdim=True)) + 1e-10)
      f1 = f1 / (torch.sqrt(torch.sum(f1**2, dim=1, keepdim=True)) + 1e-10)
      total = total + getattr(self, f"lin{k}").model((f0 - f1)**2).mean([2, 3], keepdim=True)
    return total

  def lpips_state_dict(self):
    """What LPIPS.state_dict() holds: no `features.` copy of the backbone."""
    return {k: v for k, v in self.state_dict().items() if not k.startswith("features.")}

  def lin_state_dict(self):
    return {k: v for k, v in self.state_dict().items() if k.startswith("lin")}

  def torchvision_state_dict(self):
    state = {f"features.{k}": v for k, v in self.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # torchvision files carry a classifier
    state["classifier.1.bias"] = torch.zeros(4)
    return state


def reference_distance(reference, img0, img1):
  """NHWC uint8 -> the reference's per-image distance, with inputs mapped to [-1, 1]."""
  def to_torch(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0 * 2 - 1).permute(0, 3, 1, 2)
  with torch.no_grad():
    return reference(to_torch(img0), to_torch(img1)).reshape(-1).numpy()


def image_pairs(size, count=2, seed=0):
  """Crops of a photograph and noisier, shifted versions of them: uint8 NHWC."""
  photo = skimage_data.astronaut()
  rng = np.random.default_rng(seed)
  clean = np.stack([photo[100 + 60 * i:100 + 60 * i + size, 180:180 + size] for i in range(count)])
  noisy = clean.astype(np.float64) + rng.normal(0, 12, clean.shape) + 6
  return clean, np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=["alex", "vgg"])
def weight_files(request, tmp_path_factory):
  net = request.param
  torch.manual_seed(1 if net == "alex" else 2)
  reference = ReferenceLPIPS(net)
  directory = tmp_path_factory.mktemp(f"lpips_{net}")
  lin_path, backbone_path = directory / f"{net}.pth", directory / "backbone.pth"
  torch.save(reference.lin_state_dict(), lin_path)
  torch.save(reference.torchvision_state_dict(), backbone_path)
  return net, reference, lin_path, backbone_path


def test_distances_match_torch_reference(weight_files):
  net, reference, lin_path, backbone_path = weight_files
  img0, img1 = image_pairs(64 if net == "alex" else 32)
  expected = reference_distance(reference, img0, img1)
  module, params = load_lpips(net, lin_path, backbone_path)
  got = lpips_distance(module, params, img0, img1)
  assert got.shape == (2,)
  assert np.all(expected > 1e-3)  # the pairs differ, so the comparison means something
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_converted_directory_gives_the_same_metric(weight_files, tmp_path):
  net, reference, lin_path, backbone_path = weight_files
  img0, img1 = image_pairs(64 if net == "alex" else 32, count=1, seed=3)
  out_dir = tmp_path / "converted"
  assert convert.main(["--lpips", net, str(lin_path), str(out_dir), "--backbone",
                       str(backbone_path)]) == 0
  metric = LpipsMetric.from_dir(out_dir)
  assert metric.name == f"lpips_{net}"
  value = metric(img0[0], img1[0])
  assert isinstance(value, float)
  np.testing.assert_allclose(value, reference_distance(reference, img0, img1)[0],
                             rtol=1e-5, atol=1e-6)


def test_full_lpips_state_dict_holds_the_backbone(weight_files, tmp_path):
  net, reference, _, _ = weight_files
  full_path = tmp_path / "full.pth"
  torch.save(reference.lpips_state_dict(), full_path)
  img0, img1 = image_pairs(64 if net == "alex" else 32, count=1, seed=4)
  module, params = load_lpips(net, full_path, None)
  np.testing.assert_allclose(lpips_distance(module, params, img0, img1),
                             reference_distance(reference, img0, img1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_param_shapes_are_the_modules_own(net):
  size = min_image_size(net)
  variables = jax.eval_shape(lambda: LPIPS(net).init(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), jnp.zeros((1, size, size, 3))))
  shapes = jax.tree.map(lambda x: tuple(x.shape), variables["params"])
  assert shapes == lpips_param_shapes(net)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_min_image_size_is_where_torch_stops(net):
  up_to_last_tap = torchvision_features(net)[:SLICE_ENDS[net][-1]]
  size = min_image_size(net)
  with torch.no_grad():
    up_to_last_tap(torch.zeros(1, 3, size, size))
    with pytest.raises(RuntimeError):
      up_to_last_tap(torch.zeros(1, 3, size - 1, size - 1))
  module = LPIPS(net)
  params = jax.tree.map(lambda s: np.zeros(s, np.float32), lpips_param_shapes(net),
                        is_leaf=lambda x: isinstance(x, tuple))
  small = np.zeros((1, size - 1, size - 1, 3), np.uint8)
  with pytest.raises(ValueError, match=f"at least {size}x{size}"):
    lpips_distance(module, params, small, small)


def test_identical_images_are_at_zero_and_uint8_equals_float():
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.uniform(0, 0.3, s).astype(np.float32),
                        lpips_param_shapes("alex"), is_leaf=lambda x: isinstance(x, tuple))
  module = LPIPS("alex")
  img0, img1 = image_pairs(40, count=2, seed=5)
  # Zero up to rounding: XLA on CPU fuses x * (1 / |x|) - y * (1 / |y|) into an FMA, which
  # leaves ~1e-16 where the two sides are equal; real distances are above ~1e-3.
  np.testing.assert_array_less(lpips_distance(module, params, img0, img0), 1e-12)
  from_uint8 = lpips_distance(module, params, img0, img1)
  from_float = lpips_distance(module, params, img0 / 255.0, img1.astype(np.float32) / 255)
  assert np.all(from_uint8 > 0)
  np.testing.assert_allclose(from_float, from_uint8, rtol=1e-6)
  with pytest.raises(ValueError, match="differ in shape"):
    lpips_distance(module, params, img0, img1[:, :32])
  with pytest.raises(ValueError, match="uint8 or float"):
    lpips_distance(module, params, img0.astype(np.int32), img1)


def assert_one_line_naming(error, path):
  message = str(error.value)
  assert "\n" not in message and str(path) in message, message


def test_bad_weight_files_name_the_file(weight_files, tmp_path):
  net, reference, lin_path, backbone_path = weight_files
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(lin_path.read_bytes()[:200])
  with pytest.raises(CheckpointError) as error:
    load_lpips(net, truncated, backbone_path)
  assert_one_line_naming(error, truncated)

  missing = tmp_path / "missing.pth"
  with pytest.raises(CheckpointError) as error:
    load_lpips(net, lin_path, missing)
  assert_one_line_naming(error, missing)

  other_net = "vgg" if net == "alex" else "alex"
  with pytest.raises(CheckpointError) as error:  # lin file of one net, backbone of the other
    load_lpips(other_net, lin_path, backbone_path)
  assert_one_line_naming(error, lin_path)
  lin_for_other = tmp_path / "other_lin.pth"
  torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1)
              for k, c in enumerate(CHANNELS[other_net])}, lin_for_other)
  with pytest.raises(CheckpointError) as error:  # right lin file, wrong backbone
    load_lpips(other_net, lin_for_other, backbone_path)
  assert_one_line_naming(error, backbone_path)

  with pytest.raises(CheckpointError) as error:  # lin layers alone cannot stand in for both
    load_lpips(net, lin_path, None)
  assert_one_line_naming(error, lin_path)


def test_cli_and_directory_errors_are_one_line(weight_files, tmp_path, capsys):
  net, _, lin_path, backbone_path = weight_files
  with pytest.raises(CheckpointError) as error:
    LpipsMetric.from_dir(lin_path)  # a .pth, not a converted directory
  assert_one_line_naming(error, lin_path)
  with pytest.raises(CheckpointError) as error:
    LpipsMetric.from_dir(tmp_path)  # a directory without params/meta
  assert_one_line_naming(error, tmp_path)

  truncated = tmp_path / "backbone_truncated.pth"
  truncated.write_bytes(backbone_path.read_bytes()[:4096])
  out_dir = tmp_path / "out"
  code = convert.main(["--lpips", net, str(lin_path), str(out_dir), "--backbone", str(truncated)])
  stderr = capsys.readouterr().err.strip()
  assert code == 1 and not out_dir.exists()
  assert "\n" not in stderr and str(truncated) in stderr, stderr
