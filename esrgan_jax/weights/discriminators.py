"""The discriminators on disk: BasicSR's VGG-style and Real-ESRGAN's U-Net (spectral norm).

Real-ESRGAN's fine-tuning recipe starts D from a released net_d file (RealESRGAN_x4plus_netD.pth);
`convert --discriminator` turns one into a store directory (`weights/store.py`) whose tree holds
both collections, {'params', 'batch_stats'}, and whose JSON `meta` is
{"model": "vgg_style" | "unet_sn", "arch": the module's fields}; `load_discriminator` reads it.
"""

import os
from typing import Any, Mapping

from esrgan_jax.models import DISCRIMINATORS, UNetDiscriminatorSN, VGGStyleDiscriminator
from esrgan_jax.weights import store, torch_io, trees
from esrgan_jax.weights.store import CheckpointError
from esrgan_jax.weights.torch_io import Entry, conv_kernel_from_torch, conv_kernel_to_torch, same

_BATCH_NORM_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                     "var": "running_var"}
_WRITTEN_BY = "python -m esrgan_jax.convert --discriminator"


def _vgg_linear1_layouts(channels):
  # torch flattens (C, H, W) and stores (out, in); Flax flattens (H, W, C) and stores (in, out).
  def to_flax(weight):
    out = weight.shape[0]
    return weight.reshape(out, channels, 4, 4).transpose(2, 3, 1, 0).reshape(-1, out)

  def to_torch(kernel):
    out = kernel.shape[-1]
    return kernel.reshape(4, 4, channels, out).transpose(3, 2, 0, 1).reshape(out, -1)

  return to_flax, to_torch


def vgg_discriminator_variables_from_torch(state_dict: Mapping[str, Any],
                                           source: str = "state dict"
                                           ) -> tuple[dict, dict[str, int]]:
  """({'params', 'batch_stats'}, arch) of VGGStyleDiscriminator from BasicSR's state dict."""
  num_feat, num_in_ch = torch_io.shape_of(state_dict, "conv0_0.weight", source,
                                          "VGGStyleDiscriminator")[:2]
  input_size = 256 if "conv5_0.weight" in state_dict else 128
  arch = {"num_in_ch": int(num_in_ch), "num_feat": int(num_feat), "input_size": input_size}
  shapes = trees.variable_shapes(VGGStyleDiscriminator(**arch),
                                 (1, input_size, input_size, num_in_ch), train=False)
  entries = []
  for path, shape in shapes.items():
    module, leaf = path[1], path[-1]
    if module.startswith("bn"):
      entries.append(Entry(path, f"{module}.{_BATCH_NORM_NAMES[leaf]}", shape, same, same))
    elif module == "linear1" and leaf == "kernel":
      entries.append(Entry(path, "linear1.weight", shape, *_vgg_linear1_layouts(shape[0] // 16)))
    else:
      entries.append(torch_io.leaf_entry(path, module, shape))
  variables = torch_io.import_entries(state_dict, entries, source,
                                      f"VGGStyleDiscriminator({arch})",
                                      ignore=lambda key: key.endswith(".num_batches_tracked"))
  return variables, arch


def _spectral_v_layouts(kernel_shape):
  # torch views the weight as (out, in * kh * kw); Flax's SpectralNormConv as (out, kh * kw * in).
  kh, kw, in_ch, _ = kernel_shape

  def to_flax(v):
    return v.reshape(in_ch, kh, kw).transpose(1, 2, 0).reshape(-1)

  def to_torch(v):
    return v.reshape(kh, kw, in_ch).transpose(2, 0, 1).reshape(-1)

  return to_flax, to_torch


def unet_discriminator_variables_from_torch(state_dict: Mapping[str, Any],
                                            source: str = "state dict",
                                            skip_connection: bool = True
                                            ) -> tuple[dict, dict[str, Any]]:
  """({'params', 'batch_stats'}, arch) of UNetDiscriminatorSN from Real-ESRGAN's state dict.

  Spectral-norm convs store weight_orig (the raw kernel) and the power-iteration vectors
  weight_u / weight_v, which land in `batch_stats` as u / v.
  """
  num_feat, num_in_ch = torch_io.shape_of(state_dict, "conv0.weight", source,
                                          "UNetDiscriminatorSN")[:2]
  arch = {"num_in_ch": int(num_in_ch), "num_feat": int(num_feat),
          "skip_connection": skip_connection}
  shapes = trees.variable_shapes(UNetDiscriminatorSN(**arch), (1, 16, 16, num_in_ch), train=False)
  entries = []
  for path, shape in shapes.items():
    collection, module, leaf = path
    if collection == "batch_stats" and leaf == "u":
      entries.append(Entry(path, f"{module}.weight_u", shape, same, same))
    elif collection == "batch_stats" and leaf == "v":
      kernel_shape = shapes[("params", module, "kernel")]
      entries.append(Entry(path, f"{module}.weight_v", shape, *_spectral_v_layouts(kernel_shape)))
    elif ("batch_stats", module, "u") in shapes:  # the raw kernel of a spectral-norm conv
      entries.append(Entry(path, f"{module}.weight_orig", shape, conv_kernel_from_torch,
                           conv_kernel_to_torch))
    else:
      entries.append(torch_io.leaf_entry(path, module, shape))
  variables = torch_io.import_entries(state_dict, entries, source, f"UNetDiscriminatorSN({arch})")
  return variables, arch


def discriminator_variables_from_torch(state_dict: Mapping[str, Any], source: str = "state dict"
                                       ) -> tuple[str, dict, dict[str, Any]]:
  """(config.discriminator.name, variables, arch) of either discriminator, told by its keys."""
  if "conv0_0.weight" in state_dict:
    return ("vgg_style", *vgg_discriminator_variables_from_torch(state_dict, source))
  if "conv0.weight" in state_dict:
    return ("unet_sn", *unet_discriminator_variables_from_torch(state_dict, source))
  raise CheckpointError(f"{source}: not a discriminator state dict: it has neither "
                        "conv0_0.weight (BasicSR's VGG-style) nor conv0.weight (Real-ESRGAN's "
                        f"U-Net) (keys: {trees.preview(state_dict)})")


def convert_discriminator(in_path, out_dir,
                          weights_key: str | None = None) -> tuple[str, dict[str, Any]]:
  """A BasicSR / Real-ESRGAN net_d .pth -> a store directory; returns (name, arch)."""
  store.refuse_existing(out_dir)
  name, variables, arch = discriminator_variables_from_torch(
      torch_io.read_state_dict(in_path, weights_key), str(in_path))
  store.save(out_dir, variables, "meta", {"model": name, "arch": arch})
  return name, arch


def load_discriminator(directory: str | os.PathLike) -> tuple[str, dict[str, Any], dict]:
  """(config.discriminator.name, arch, {'params', 'batch_stats'}) of a converted directory."""
  path = store.open_directory(directory, "meta", "discriminator", _WRITTEN_BY)
  variables, meta = store.restore(path, "meta", "discriminator weights")
  name, arch = meta.get("model"), meta.get("arch")
  if name not in DISCRIMINATORS or not isinstance(arch, Mapping):
    raise CheckpointError(f"{path}: holds {name!r}, not one of {sorted(DISCRIMINATORS)}")
  size = arch.get("input_size", 16)  # the U-Net takes any size; its variables do not depend on it
  expected = trees.shape_tree(DISCRIMINATORS[name](**arch), (1, size, size, arch["num_in_ch"]),
                              train=False)
  difference = trees.tree_difference(expected, variables, name, "directory")
  if difference:
    raise CheckpointError(f"{path}: does not fit {name} {dict(arch)}: {difference}")
  return name, dict(arch), variables
