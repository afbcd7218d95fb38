"""whole_image: the memory of a `--tile 0` network call, from one small compile, and its refusal
past what is available (the figure injected: a real shortage would need a machine's worth)."""

import jax
import jax.numpy as jnp
import pytest

from esrgan_jax.inference import whole_image
from esrgan_jax.inference.apply import jitted_apply
from esrgan_jax.models import RRDBNet
from esrgan_jax.models.span import SPAN
from esrgan_jax.models.srvgg import SRVGGNetCompact
from tests.tiny_generator import random_params, tiny_generator


def _compiled_bytes(model, params, batch, height, width):
  shape = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
  stats = jitted_apply(model).lower(model, params, shape).compile().memory_analysis()
  return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


@pytest.mark.parametrize("name", ["rrdbnet_x2", "compact_x4"])
def test_scaled_figure_equals_the_compile_at_another_size(name):
  if name == "rrdbnet_x2":
    (model, params), multiple = tiny_generator(scale=2), 2
  else:
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    params, multiple = random_params(model), 1
  memory = whole_image.call_memory(model, params, multiple)
  assert memory.multiple == multiple and memory.fixed > 0
  assert memory.need(2, 30, 50) == _compiled_bytes(model, params, 2, 30, 50)


def test_a_size_is_padded_to_the_model_multiple():
  memory = whole_image.CallMemory(100, 2.0, multiple=4)
  assert memory.need(1, 5, 8) == 100 + 2 * 8 * 8
  assert memory.need(3, 4, 4) == 100 + 2 * 3 * 16


def test_past_the_memory_available_is_refused_with_a_tile_that_fits(monkeypatch):
  memory = whole_image.CallMemory(0, 1000.0)
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 2 * 2**30)
  whole_image.check("a.png", "image", memory, 1, 1000, 2000, tile_pad=10)  # 1.9 GiB: fits
  with pytest.raises(whole_image.NotEnoughMemoryError) as error:
    whole_image.check("a.mkv", "frame", memory, 2, 1000, 2000, tile_pad=10)
  # 512 + 2 * 10 px windows, two a call: 0.53 GiB, under half the 2 GiB; 1024 + 20 is not.
  assert str(error.value) == (
      "a.mkv: --tile 0 runs each 2000x1000 frame whole through the network (2 a call), which "
      "needs about 3.7 GiB of memory, more than the 2.0 GiB available; use --tile 512 to "
      "upscale it in tiles")


def test_memory_that_cannot_be_told_refuses_nothing(monkeypatch):
  monkeypatch.setattr(whole_image, "available_bytes", lambda: None)
  whole_image.check("a.png", "image", whole_image.CallMemory(0, 1e9), 4, 1000, 1000, 10)


def test_cpu_memory_available_is_meminfo():
  with open("/proc/meminfo", encoding="ascii") as meminfo:
    assert any(line.startswith("MemAvailable:") for line in meminfo)
  assert jax.devices()[0].platform == "cpu"
  assert 0 < whole_image.available_bytes() < 2**50


@pytest.mark.parametrize("output_bytes, same_size, expected", [
    (2**30, 9, 1),  # larger than what is held for batching: alone
    (2**27, 9, 2), (2**26, 9, 4), (3 * 2**25, 9, 2), (2**20, 9, 4),
    (2**20, 1, 1), (2**20, 3, 4),  # three windows: a call of four, one of them zeros
])
def test_whole_images_a_call(output_bytes, same_size, expected):
  assert whole_image.image_batch(4, output_bytes, 2**28, same_size) == expected


# The patch matrix of the k x k (k > 1) convolution that has the largest, by hand: RRDBNet 8
# features x4 (conv_hr and conv_last, 3x3, take 8 channels at 4x4 the pixels: 128 values a pixel;
# its dense convs take up to 24 at 1x); Compact 8 features (each body conv takes 8); SPAN 8
# features deployed (its 3x3 convs take 8; conv_cat's 32 are a 1x1 convolution, no patches).
@pytest.mark.parametrize("name, per_pixel", [("rrdbnet_x4", 128), ("compact_x4", 8),
                                             ("span_x4", 8)])
def test_largest_patch_matrix_is_counted_from_the_jaxpr(name, per_pixel):
  if name == "rrdbnet_x4":
    model, params = tiny_generator(scale=4)
  elif name == "compact_x4":
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    params = random_params(model)
  else:
    model = SPAN(feature_channels=8, upscale=4, deploy=True)
    params = random_params(model)
  shape = jax.ShapeDtypeStruct((2, 6, 10, 3), jnp.float32)
  assert whole_image.largest_patches(model, params, shape) == (per_pixel * 2 * 6 * 10, 9 * 4)
  memory = whole_image.call_memory(model, params)
  assert memory.conv_per_pixel == per_pixel and memory.patch_bytes == 36
  assert memory.conv_values(2, 6, 10) == per_pixel * 2 * 6 * 10


def test_a_patch_matrix_past_one_allocation_is_refused_with_a_tile_under_it(monkeypatch):
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 2**40)
  memory = whole_image.CallMemory(0, 1.0, conv_per_pixel=64.0, patch_bytes=36,
                                  conv_limit=36 * 40_000_000)
  whole_image.check("a.png", "image", memory, 1, 600, 1000, tile_pad=10)  # 38.4M values: runs
  with pytest.raises(whole_image.ConvolutionTooLargeError) as error:
    whole_image.check("a.mkv", "frame", memory, 2, 600, 1000, tile_pad=10)
  # 512 + 2 * 10 px windows, two a call: 36.2M values, under the limit; 1024 + 20 are not.
  assert str(error.value) == (
      "a.mkv: --tile 0 runs each 1000x600 frame whole through the network (2 a call), whose "
      "largest convolution takes 76,800,000 input values: XLA:CPU's convolution kernels abort "
      "the process past 40,000,000 (their 2.6 GiB patch matrix, one allocation, more than the "
      "1.3 GiB of memory and swap); use --tile 512 to upscale it in tiles")
  unlimited = memory._replace(conv_limit=None)
  whole_image.check("a.mkv", "frame", unlimited, 2, 600, 1000, tile_pad=10)


def test_memory_is_refused_first_with_a_tile_that_fits_both(monkeypatch):
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 2**30)
  memory = whole_image.CallMemory(0, 1000.0, conv_per_pixel=64.0, patch_bytes=36,
                                  conv_limit=36 * 10_000_000)
  with pytest.raises(whole_image.NotEnoughMemoryError, match="use --tile 256 "):
    whole_image.check("a.png", "image", memory, 2, 1000, 2000, tile_pad=10)


def test_one_allocation_limit_is_memory_and_swap_under_heuristic_overcommit():
  with open("/proc/sys/vm/overcommit_memory", encoding="ascii") as policy:
    heuristic = policy.read().strip() == "0"
  total, swap = whole_image._meminfo("MemTotal", "SwapTotal")  # pylint: disable=protected-access
  assert whole_image.one_allocation_limit() == (total + swap if heuristic else None)
  assert 0 < total < 2**50


TRAINERS_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_only_the_eigen_convolution_path_is_limited(monkeypatch):
  rrdbnet, _ = tiny_generator(scale=4)
  compact = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
  assert jax.default_backend() == "cpu"
  monkeypatch.setenv("XLA_FLAGS", TRAINERS_FLAGS)  # the project's default: Eigen but Compact
  assert whole_image.eigen_convolutions(rrdbnet)
  assert not whole_image.eigen_convolutions(compact)  # apply's LIBRARY_CONVOLUTIONS
  monkeypatch.setenv("XLA_FLAGS", "")  # XLA's own defaults: YNNPACK convolutions
  assert not whole_image.eigen_convolutions(rrdbnet)
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-reduce")
  assert not whole_image.eigen_convolutions(rrdbnet)
  # A user's own setting that takes the convolutions away (then Compact keeps it too).
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type="
                     "-individual_dot,-individual_convolution")
  assert whole_image.eigen_convolutions(rrdbnet) and whole_image.eigen_convolutions(compact)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not whole_image.eigen_convolutions(rrdbnet)


def test_call_memory_takes_the_patch_limit_on_the_eigen_path_only(monkeypatch):
  rrdbnet, params = tiny_generator(scale=4, seed=1)
  compact = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
  monkeypatch.setenv("XLA_FLAGS", TRAINERS_FLAGS)
  monkeypatch.setattr(whole_image, "_measured", {})
  monkeypatch.setattr(whole_image, "one_allocation_limit", lambda: 1000)
  assert whole_image.call_memory(rrdbnet, params).conv_limit == 999  # PATCH_SHARE
  assert whole_image.call_memory(compact, random_params(compact)).conv_limit is None


def test_half_precision_patches_are_counted_in_float32():
  """XLA:CPU converts a bfloat16 convolution's operands to float32 around it (its compiled HLO)."""
  model = RRDBNet(scale=4, num_feat=8, num_block=1, num_grow_ch=4, dtype=jnp.bfloat16)
  params = random_params(model)
  shape = jax.ShapeDtypeStruct((1, 6, 10, 3), jnp.float32)
  assert whole_image.largest_patches(model, params, shape) == (128 * 6 * 10, 9 * 4)
