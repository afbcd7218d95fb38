"""Tiled inference is the model's output: exact for images within one window and for a context
covering the receptive field, and within a measured few levels for Real-ESRGAN's default."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from esrgan_jax.inference import tiling
from esrgan_jax.inference.tiling import upscale_tiled
from esrgan_jax.metrics import psnr
from tests.tiny_generator import tiny_generator

NUM_BLOCK = 1


def trunk_radius(num_block):
  """LR pixels on each side that the x4 network's output at one LR pixel depends on.

  Every 3x3 conv at LR resolution adds one pixel: conv_first, 15 per RRDB (three dense blocks of
  five convs in sequence) and conv_body. The convs after the two nearest x2 upsamplings (one at
  2x, three at 4x) reach two more: an output pixel at HR column p sees HR columns p-3..p+3 through
  conv_up2/conv_hr/conv_last, 2x columns floor((p-3)/2)-1 .. floor((p+3)/2)+1 through conv_up1,
  that is LR columns floor(p/4)-2 .. floor(p/4)+2 at worst (p = 4k and p = 4k+3).
  """
  return 1 + 15 * num_block + 1 + 2


def receptive_radius(scale, num_block):
  """Input pixels on each side that one output pixel may depend on.

  x1/x2 models run the same trunk on a pixel-unshuffled input (factor f = 4 / scale): the trunk's
  radius counts unshuffled pixels of f input pixels each, and the input pixel itself may sit
  anywhere in its unshuffled block, which adds up to f - 1.
  """
  factor = 4 // scale
  return factor * trunk_radius(num_block) + factor - 1


def apply_fn_of(model, params):
  return jax.jit(lambda x: model.apply({"params": params}, x))


def photo(height, width):
  return (skimage.data.astronaut()[100:100 + height, 150:150 + width] / 255.0).astype(np.float32)


# x1/x2 use a trunk without RRDBs (num_block 0) to keep their receptive field, and the images
# needed to tile it, small.
@pytest.mark.parametrize("scale, num_block, size, start", [(4, 1, 48, 20), (2, 0, 32, 12),
                                                           (1, 0, 48, 20)])
def test_trunk_radius_matches_the_gradient_support(scale, num_block, size, start):
  model, params = tiny_generator(scale, num_block, seed=scale)
  image = jnp.asarray(np.random.RandomState(0).rand(1, size, size, 3), jnp.float32)

  def block_sum(x):
    # Every output pixel of the 4x4 input pixels at `start`: one whole unshuffle block (x1, x2)
    # and every position of an output pixel within its upsampling block (x4).
    out = model.apply({"params": params}, x)
    return out[0, start * scale:(start + 4) * scale, start * scale:(start + 4) * scale].sum()

  grad = np.abs(np.asarray(jax.grad(block_sum)(image)[0])).sum(-1)
  rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
  reach = (4 // scale) * trunk_radius(num_block)  # In input pixels, from the aligned block.
  assert rows.min() == cols.min() == start - reach
  assert rows.max() == cols.max() == start + 3 + reach


@pytest.fixture(scope="module")
def x4_setup():
  model, params = tiny_generator(4, NUM_BLOCK, seed=4)
  apply_fn = apply_fn_of(model, params)
  # 3 x 3 regions of 40 px (the last column 24 px wide), windows of 40 + 2 * 20 = 80 px.
  image = photo(120, 104)
  untiled = np.asarray(model.apply({"params": params}, image[None]))[0]
  return apply_fn, image, untiled


def test_whole_image_mode_is_plain_inference(x4_setup):
  apply_fn, image, untiled = x4_setup
  # Jitted and eager XLA programs fuse differently: equal up to float rounding.
  np.testing.assert_allclose(upscale_tiled(apply_fn, image, 4, tile=0), untiled, rtol=0, atol=1e-6)


def test_tiled_equals_untiled_when_pad_covers_receptive_field(x4_setup):
  apply_fn, image, untiled = x4_setup
  pad = receptive_radius(4, NUM_BLOCK)
  for batch_size in (1, 4):  # 9 windows: 9 batches of one, or 3 batches with 3 blanks.
    tiled = upscale_tiled(apply_fn, image, 4, tile=40, tile_pad=pad, batch_size=batch_size)
    assert tiled.shape == untiled.shape == (480, 416, 3)
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale, height, width, tile", [(2, 41, 39, 13), (1, 67, 65, 21)])
def test_tiled_unshuffling_models_on_odd_sizes_equal_whole_image_mode(scale, height, width, tile):
  # x2 and x1 models unshuffle 2x2 and 4x4 pixel blocks: windows must start on that grid (the
  # odd tile size is rounded up to it), and an odd-sized image is padded in both modes alike.
  model, params = tiny_generator(scale, num_block=0, seed=scale)
  apply_fn = apply_fn_of(model, params)
  image = photo(height, width)
  whole = upscale_tiled(apply_fn, image, scale, tile=0)
  pad = receptive_radius(scale, num_block=0)
  tiled = upscale_tiled(apply_fn, image, scale, tile=tile, tile_pad=pad, batch_size=2)
  assert tiled.shape == whole.shape == (height * scale, width * scale, 3)
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
  # On a size the model accepts as is, whole-image mode is plain inference.
  aligned = image[:height - height % 4, :width - width % 4]
  np.testing.assert_allclose(upscale_tiled(apply_fn, aligned, scale, tile=0),
                             np.asarray(model.apply({"params": params}, aligned[None]))[0],
                             rtol=0, atol=1e-6)


def _seam_jump(tiled, untiled, borders):
  """Largest change at a region border of the output's finite differences, along both axes."""
  jumps = []
  for axis in (0, 1):
    diff = np.abs(np.diff(tiled, axis=axis) - np.diff(untiled, axis=axis))
    jumps.append(np.take(diff, borders - 1, axis=axis).max())
  return max(jumps)


def test_no_seam_in_gradients_across_tile_borders(x4_setup):
  apply_fn, image, untiled = x4_setup
  tile, scale = 40, 4
  borders = np.arange(tile, 104, tile) * scale  # Output rows/columns where a new region starts.
  typical_gradient = np.abs(np.diff(untiled, axis=1)).mean()

  def jump(pad):
    # batch_size 4 as above: the jitted function is then already compiled for the full pad.
    tiled = upscale_tiled(apply_fn, image, scale, tile=tile, tile_pad=pad, batch_size=4)
    return _seam_jump(tiled, untiled, borders)

  # Control: without context the regions disagree at their borders, visibly.
  assert jump(0) > typical_gradient
  # Real-ESRGAN's default context (10 px, half the receptive field here): no visible step.
  assert jump(10) < 0.01 * typical_gradient
  # Context covering the receptive field: the gradients are those of the untiled output.
  assert jump(receptive_radius(scale, NUM_BLOCK)) < 1e-5


def test_generator_radius_dispatches_on_the_architecture_record():
  rrdbnet = dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=3, num_grow_ch=4)
  assert tiling.generator_radius(rrdbnet) == tiling.receptive_radius(2, 3)
  compact = {"arch": "srvgg_compact", "scale": 4, "num_conv": 16}
  assert tiling.generator_radius(compact) == 18  # every 3x3 conv at LR: 16 + first + last
  assert tiling.generator_radius({"arch": "span", "scale": 2}) == 21
  with pytest.raises(ValueError, match="unknown architecture 'swinir'"):
    tiling.generator_radius({"arch": "swinir"})


def test_package_receptive_radius_is_the_derived_one():
  for scale in (1, 2, 4):
    for num_block in (0, 1, 23):
      assert tiling.receptive_radius(scale, num_block) == receptive_radius(scale, num_block)


def to_levels(image):
  return np.floor(np.clip(image, 0, 1) * 255 + 0.5).astype(np.int64)


def test_image_within_one_window_is_the_untiled_output_exactly(x4_setup):
  apply_fn, image, untiled = x4_setup
  whole = upscale_tiled(apply_fn, image, 4, tile=0)
  # Real-ESRGAN's defaults (tile 256, pad 10): this 120x104 image is one window of its own size.
  np.testing.assert_array_equal(upscale_tiled(apply_fn, image, 4, tile=256, tile_pad=10,
                                              batch_size=4), whole)
  # One axis within a window, the other tiled: the short axis is never padded.
  wide = image[:60]  # 60 rows < one window of 40 + 2 * 19 px; 104 columns > it.
  tiled = upscale_tiled(apply_fn, wide, 4, tile=40, tile_pad=receptive_radius(4, NUM_BLOCK))
  assert np.abs(to_levels(tiled) - to_levels(upscale_tiled(apply_fn, wide, 4, tile=0))).max() == 0


def test_default_tile_pad_against_untiled_and_the_exact_pad(x4_setup):
  _, image, _ = x4_setup
  model, params = tiny_generator(4, NUM_BLOCK, seed=4)
  # Random weights at PyTorch's default scale barely reach 10 px: the default pad loses nothing
  # visible on them. Three times larger kernels carry far pixels further, as trained ones do.
  params = jax.tree.map(lambda x: 3 * x if x.ndim == 4 else x, params)
  apply_fn = jax.jit(lambda x: model.apply({"params": params}, x))
  reference = to_levels(upscale_tiled(apply_fn, image, 4, tile=0))
  # 3 x 3 regions of 40 px: the tiny model's receptive field (19 px) exceeds the default 10 px
  # of context, as a 23-block model's (349 px) exceeds it on larger images.
  default = to_levels(upscale_tiled(apply_fn, image, 4, tile=40, tile_pad=10, batch_size=4))
  max_levels = np.abs(default - reference).max()
  equal = (default == reference).mean()
  default_psnr = psnr(default.astype(np.uint8), reference.astype(np.uint8), crop_border=0,
                      test_y_channel=False)
  print(f"tile 40, tile_pad 10 (default) vs untiled: max {max_levels} levels, "
        f"{equal:.3%} of values equal, PSNR {default_psnr:.1f} dB")
  assert 0 < max_levels <= 8 and default_psnr > 45
  exact = to_levels(upscale_tiled(apply_fn, image, 4, tile=40,
                                  tile_pad=tiling.receptive_radius(4, NUM_BLOCK), batch_size=4))
  print(f"tile 40, tile_pad {tiling.receptive_radius(4, NUM_BLOCK)} (exact) vs untiled: max "
        f"{np.abs(exact - reference).max()} levels")
  assert np.abs(exact - reference).max() == 0


def test_small_images_run_at_their_own_size(x4_setup):
  apply_fn, image, _ = x4_setup
  seen = []

  def recording(batch):
    seen.append(batch.shape)
    return apply_fn(batch)

  for height, width in ((1, 1), (1, 7), (30, 21)):
    out = upscale_tiled(recording, image[:height, :width], 4, tile=16, tile_pad=4)
    assert out.shape == (4 * height, 4 * width, 3) and np.isfinite(out).all()
  # 1x1 and 1x7 fit in one 24 px window; 30x21 is tiled in rows only (width 21 < 24).
  assert seen[:2] == [(1, 1, 1, 3), (1, 1, 7, 3)]
  assert set(seen[2:]) == {(1, 24, 21, 3)}


def test_compiles_once_per_window_shape_and_batch_never_per_tile():
  model, params = tiny_generator(4, NUM_BLOCK, seed=4)
  traced_shapes = []

  def counted_apply(x):
    traced_shapes.append(x.shape)  # Runs only while jax traces, i.e. once per compilation.
    return model.apply({"params": params}, x)

  apply_fn = jax.jit(counted_apply)
  # 40x56: 3 x 4 windows of 24 px, batches of 4; 33x27 and 24x40: 3 x 2 and 2 x 3 windows,
  # batches of 4 then 2 (a power of two); 10x7: one window of its own size.
  for height, width in ((40, 56), (33, 27), (24, 40), (10, 7)):
    out = upscale_tiled(apply_fn, photo(height, width), 4, tile=16, tile_pad=4, batch_size=4)
    assert out.shape == (4 * height, 4 * width, 3)
  assert traced_shapes == [(4, 24, 24, 3), (2, 24, 24, 3), (1, 10, 7, 3)]


def test_windows_of_different_images_share_calls_and_results(x4_setup):
  apply_fn, _, _ = x4_setup
  images = [photo(20, 20) * (1 - 0.1 * i) for i in range(5)]
  alone = [upscale_tiled(apply_fn, image, 4, tile=0) for image in images]
  batcher = tiling.Batcher(apply_fn, batch_size=4)
  outputs = [np.zeros((80, 80, 3), np.float32) for _ in images]
  for image, output in zip(images, outputs):

    def paste(job, block, output=output):
      output[job.y0 * 4:job.y1 * 4, job.x0 * 4:job.x1 * 4] = block

    tiling.submit_image(batcher, lambda y, x, h, w, image=image: image[y:y + h, x:x + w],
                        20, 20, 4, 0, 10, paste)
  batcher.flush()
  assert batcher.calls == 2  # 4 images in one call, then the fifth.
  for output, expected in zip(outputs, alone):
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-6)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="HxWxC"):
    upscale_tiled(lambda x: x, np.zeros((4, 4)), 4)
  with pytest.raises(ValueError, match="batch_size"):
    upscale_tiled(lambda x: x, np.zeros((4, 4, 3)), 4, tile=8, batch_size=0)
