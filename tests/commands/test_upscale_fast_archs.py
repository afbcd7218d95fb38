"""The upscaler on Real-ESRGAN compact and SPAN checkpoints: `--tile_pad exact` (each
architecture's receptive radius) equals whole-image inference, which equals the module's output."""

import numpy as np
import pytest

from esrgan_jax.data.images import read_image_any, write_image
from esrgan_jax.inference import tiling
from esrgan_jax.models.span import SPAN
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.weights.generator import arch_of, save_generator
from tests.commands.test_upscale import photo, run_main, to_uint
from tests.tiny_generator import random_params


@pytest.mark.parametrize("model, size", [
    (SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4), (64, 80)),
    (SPAN(feature_channels=8, upscale=4), (64, 80)),  # a branch-form checkpoint, run folded
    # Odd sizes at x2: unlike a x2 RRDBNet these take any size, so nothing is padded.
    (SRVGGNetCompact(num_feat=8, num_conv=3, upscale=2), (63, 81)),
    (SPAN(feature_channels=8, upscale=2), (63, 81)),
], ids=["srvgg", "span", "srvgg_x2_odd", "span_x2_odd"])
def test_compact_and_span_tile_exactly_and_equal_plain_inference(tmp_path, capsys, model, size):
  params = random_params(model, seed=3)
  checkpoint = str(tmp_path / "ckpt")
  save_generator(checkpoint, params, arch_of(model))
  image = photo(*size)
  write_image(tmp_path / "photo.png", image)
  # 16 px tiles: windows of 16 + 2 * radius px are smaller than the image, so it is tiled.
  assert 16 + 2 * tiling.generator_radius(arch_of(model)) < 64
  for name, flags in (("exact", ["--tile", "16", "--tile_pad", "exact"]),
                      ("whole", ["--tile", "0"])):
    code, err = run_main(["-i", str(tmp_path / "photo.png"), "-o", str(tmp_path / name),
                          "--checkpoint", checkpoint] + flags, capsys)
    assert code == 0, err
  exact = read_image_any(tmp_path / "exact" / "photo_out.png").astype(np.int64)
  whole = read_image_any(tmp_path / "whole" / "photo_out.png").astype(np.int64)
  assert exact.shape == (size[0] * model.upscale, size[1] * model.upscale, 3)
  assert np.abs(exact - whole).max() == 0
  plain = model.apply({"params": params}, image[None].astype(np.float32) / 255.0)[0]
  assert np.abs(whole - to_uint(np.asarray(plain), np.uint8)).max() <= 1
