"""DISTS test weights: the dists-pytorch package's real alpha/beta, a random VGG16, the package.

No ImageNet VGG16 can be downloaded here, so the backbone is random, in torchvision's vgg16
`features` layout, with He-normal convs (torch's default init shrinks activations ~2x per layer,
which would leave relu5_3 near zero and the comparison toothless). alpha and beta are the
published ones, read from the installed wheel.

The published module (`DISTS_pytorch.DISTS`) imports torchvision at module level and calls
`models.vgg16(pretrained=True).features` when built; torchvision's compiled ops do not load beside
this torch, so `published_dists` imports the package with stand-in `torchvision`,
`torchvision.models` and `torchvision.transforms` modules whose `vgg16` returns our random
features, then puts sys.modules' torchvision entries back (as tests/spandrel_loader.py does).
"""

import importlib.util
import os
import sys
import types

import torch
from torch import nn

from reference.torch_dists import ReferenceDISTS, vgg16_features

STAND_IN_DOC = "test stand-in (tests/dists_files.py)"


def package_weights_path() -> str:
  """The published weights.pt inside the installed DISTS_pytorch package (found without
  importing it, as the import needs torchvision)."""
  spec = importlib.util.find_spec("DISTS_pytorch")
  return os.path.join(os.path.dirname(spec.origin), "weights.pt")


def published_alpha_beta() -> tuple[torch.Tensor, torch.Tensor]:
  weights = torch.load(package_weights_path(), weights_only=True)
  return weights["alpha"], weights["beta"]


def random_vgg16_features(seed: int) -> nn.Sequential:
  """torchvision's vgg16().features layout with He-normal kernels and small random biases."""
  torch.manual_seed(seed)
  features = vgg16_features()
  with torch.no_grad():
    for layer in features:
      if isinstance(layer, nn.Conv2d):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        layer.bias.uniform_(-0.05, 0.05)
  return features.eval()


def reference_dists(seed: int) -> ReferenceDISTS:
  return ReferenceDISTS(random_vgg16_features(seed), *published_alpha_beta())


def torchvision_state_dict(features: nn.Sequential) -> dict[str, torch.Tensor]:
  """What torchvision's vgg16 .pth holds: `features.N.*`, and a classifier (small here)."""
  state = {f"features.{k}": v for k, v in features.state_dict().items()}
  state["classifier.0.weight"] = torch.zeros(4, 25088)
  state["classifier.0.bias"] = torch.zeros(4)
  return state


def write_weight_files(directory, seed: int = 0):
  """(reference, alpha/beta path, vgg16 backbone path), both files written in `directory`."""
  reference = reference_dists(seed)
  weights_path, backbone_path = directory / "weights.pt", directory / "vgg16.pth"
  torch.save({"alpha": reference.alpha.view(1, -1, 1, 1), "beta": reference.beta.view(1, -1, 1, 1)},
             weights_path)
  torch.save(torchvision_state_dict(reference.features), backbone_path)
  return reference, weights_path, backbone_path


def _stand_ins(features: nn.Sequential) -> dict[str, types.ModuleType]:
  modules = {name: types.ModuleType(name, STAND_IN_DOC) for name in
             ("torchvision", "torchvision.models", "torchvision.transforms")}

  def vgg16(pretrained=False):
    del pretrained  # the ImageNet weights are our random ones
    return types.SimpleNamespace(features=features)

  modules["torchvision.models"].vgg16 = vgg16
  modules["torchvision"].models = modules["torchvision.models"]
  modules["torchvision"].transforms = modules["torchvision.transforms"]
  return modules


def _torchvision_entries() -> dict[str, types.ModuleType]:
  return {name: module for name, module in sys.modules.items()
          if name == "torchvision" or name.startswith("torchvision.")}


def published_dists(features: nn.Sequential) -> nn.Module:
  """DISTS_pytorch.DISTS built on `features`, with the package's alpha and beta, in eval mode.

  It is built with load_weights=False and given the wheel's weights.pt by hand: version 0.1 reads
  that file from sys.prefix, which holds a copy only where pip installed into that prefix.
  """
  saved = _torchvision_entries()
  for name in saved:
    del sys.modules[name]
  for name in [n for n in sys.modules if n.startswith("DISTS_pytorch")]:
    del sys.modules[name]  # a module imported with other stand-ins holds their vgg16
  sys.modules.update(_stand_ins(features))
  try:
    from DISTS_pytorch import DISTS  # pylint: disable=import-outside-toplevel
  finally:
    for name in _torchvision_entries():
      del sys.modules[name]
    sys.modules.update(saved)
  model = DISTS(load_weights=False)
  alpha, beta = published_alpha_beta()
  with torch.no_grad():
    model.alpha.copy_(alpha)
    model.beta.copy_(beta)
  return model.eval()
