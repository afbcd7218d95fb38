"""The upscaler CLI: pixel formats kept, results equal to plain inference, one-line errors,
animations, batching across images, bounded memory."""

import os
import signal
import subprocess
import sys
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageSequence

from esrgan_jax import cli, upscale
from esrgan_jax.data import bicubic, png
from esrgan_jax.data.images import read_image_any, to_pixels, write_image
from esrgan_jax.inference import image_files, upscaler
from esrgan_jax.weights.generator import arch_of, save_generator
from tests.tiny_generator import tiny_generator

from tests import REPO_ROOT
# Tiles of 24 px with 20 px of context (more than the tiny model's receptive field of 19 px):
# 64x64 inputs are cut into 3 x 3 windows of 64 px, and the result equals whole-image inference.
TILING = ["--tile", "24", "--tile_pad", "20", "--batch_size", "4"]
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
  """(checkpoint dir, float reference: HxWxC [0, 1] image -> model output in float64)."""
  model, params = tiny_generator(scale=4, num_block=1, seed=0)
  checkpoint = str(tmp_path_factory.mktemp("ckpt") / "tiny_x4")
  save_generator(checkpoint, params, arch_of(model))
  forward = jax.jit(lambda x: model.apply({"params": params}, x))

  def reference(image):
    return np.asarray(forward(jnp.asarray(image, jnp.float32)[None]), np.float64)[0]

  return checkpoint, reference


def photo(height=64, width=64):
  return skimage.data.astronaut()[120:120 + height, 180:180 + width]


def run_main(args, capsys):
  code = upscale.main(args)
  return code, capsys.readouterr().err


def to_uint(image, dtype):
  return to_pixels(image, dtype).astype(np.int64)


def test_rgb_equals_whole_image_inference(generator, tmp_path, capsys):
  checkpoint, reference = generator
  image = photo()
  write_image(tmp_path / "in" / "photo.png", image)
  code, err = run_main([str(tmp_path / "in" / "photo.png"), "-o", str(tmp_path / "out"),
                        "--checkpoint", checkpoint] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "out" / "photo_out.png")
  assert result.dtype == np.uint8 and result.shape == (256, 256, 3)
  expected = to_uint(reference(image / 255.0), np.uint8)
  assert np.abs(result.astype(np.int64) - expected).max() <= 1


def test_grayscale_stays_grayscale(generator, tmp_path, capsys):
  checkpoint, reference = generator
  gray = skimage.data.camera()[200:264, 200:264]
  write_image(tmp_path / "gray.png", gray)
  code, err = run_main([str(tmp_path / "gray.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                        checkpoint, "--suffix", ""] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "out" / "gray.png")
  assert result.dtype == np.uint8 and result.shape == (256, 256, 1)
  rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
  expected = to_uint(reference(rgb) @ LUMA, np.uint8)
  assert np.abs(result[..., 0].astype(np.int64) - expected).max() <= 1


def _rgba():
  yy, xx = np.mgrid[:64, :64]
  alpha = np.where((yy - 32) ** 2 + (xx - 30) ** 2 < 20 ** 2, 255, 40).astype(np.uint8)
  return np.concatenate([photo(), alpha[..., None]], axis=-1)


@pytest.mark.parametrize("alpha_upsampler", ["model", "bicubic"])
def test_rgba_upscales_alpha_separately(generator, tmp_path, capsys, alpha_upsampler):
  checkpoint, reference = generator
  rgba = _rgba()
  write_image(tmp_path / "logo.png", rgba)
  code, err = run_main([str(tmp_path / "logo.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                        checkpoint, "--alpha-upsampler", alpha_upsampler] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "out" / "logo_out.png").astype(np.int64)
  assert result.shape == (256, 256, 4)
  expected_rgb = to_uint(reference(rgba[..., :3] / 255.0), np.uint8)
  assert np.abs(result[..., :3] - expected_rgb).max() <= 1
  alpha = rgba[..., 3:] / 255.0
  if alpha_upsampler == "model":
    expected_alpha = reference(np.repeat(alpha, 3, axis=-1)) @ LUMA
  else:
    expected_alpha = bicubic.imresize(alpha[..., 0], scale=4)
  assert np.abs(result[..., 3] - to_uint(expected_alpha, np.uint8)).max() <= 1


def test_opaque_alpha_stays_exactly_opaque(generator, tmp_path, capsys):
  checkpoint, _ = generator
  rgba = _rgba()
  rgba[..., 3] = 255
  write_image(tmp_path / "opaque.png", rgba)
  code, err = run_main([str(tmp_path / "opaque.png"), "-o", str(tmp_path), "--checkpoint",
                        checkpoint, "--outscale", "2"] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "opaque_out.png")
  assert result.shape == (128, 128, 4) and (result[..., 3] == 255).all()


def test_16bit_png_stays_16bit(generator, tmp_path, capsys):
  checkpoint, reference = generator
  rng = np.random.RandomState(0)
  # Values between the 8-bit levels, which an 8-bit round trip would lose.
  deep = np.clip(photo().astype(np.int64) * 257 + rng.randint(-100, 100, (64, 64, 3)), 0, 65535)
  deep = deep.astype(np.uint16)
  write_image(tmp_path / "deep.png", deep)
  code, err = run_main([str(tmp_path / "deep.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                        checkpoint] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "out" / "deep_out.png")
  assert result.dtype == np.uint16 and result.shape == (256, 256, 3)
  expected = to_uint(reference(deep / 65535.0), np.uint16)
  assert np.abs(result.astype(np.int64) - expected).max() <= 3  # float32 model, 16-bit output.
  assert (result % 257 != 0).mean() > 0.9


def test_outscale_uses_matlab_bicubic(generator, tmp_path, capsys):
  checkpoint, reference = generator
  image = photo()
  write_image(tmp_path / "photo.jpg", image)
  code, err = run_main([str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                        checkpoint, "--outscale", "3.5", "--ext", "png"] + TILING, capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "out" / "photo_out.png")
  assert result.shape == (224, 224, 3)
  decoded = read_image_any(tmp_path / "photo.jpg") / 255.0  # JPEG is lossy: use what is stored.
  expected = to_uint(bicubic.imresize(reference(decoded), output_shape=(224, 224)), np.uint8)
  assert np.abs(result.astype(np.int64) - expected).max() <= 1


def test_half_precision_is_close_to_float32(generator, tmp_path, capsys):
  checkpoint, reference = generator
  image = photo(32, 32)
  write_image(tmp_path / "small.png", image)
  code, err = run_main([str(tmp_path / "small.png"), "-o", str(tmp_path), "--checkpoint",
                        checkpoint, "--half", "--tile", "0"], capsys)
  assert code == 0, err
  result = read_image_any(tmp_path / "small_out.png").astype(np.int64)
  difference = np.abs(result - to_uint(reference(image / 255.0), np.uint8))
  # bfloat16 keeps 8 significant bits: a few levels at worst, about one on average.
  assert difference.mean() < 1.5 and difference.max() <= 8


def test_checkpoint_of_another_scale_is_refused(generator, tmp_path, capsys):
  checkpoint, _ = generator
  write_image(tmp_path / "photo.png", photo(8, 8))
  code, err = run_main([str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                        "--checkpoint", checkpoint, "--model-scale", "2"], capsys)
  assert code == cli.EXIT_ERROR  # Was 2 before the shared convention: 2 is argparse's only.
  assert err.strip() == (f"esrgan_jax: error: {checkpoint}: checkpoint is a x4 model, but "
                         "--model_scale 2 was given")
  assert not os.path.exists(tmp_path / "out")  # checked before -o is created


def test_missing_checkpoint_and_colliding_outputs_are_one_line_errors(tmp_path, capsys):
  for folder in ("a", "b"):
    write_image(tmp_path / folder / "photo.png", photo(8, 8))
  code, err = run_main([str(tmp_path / "a"), "-o", str(tmp_path / "out"), "--checkpoint",
                        str(tmp_path / "nowhere")], capsys)
  assert code == 1 and len(err.strip().splitlines()) == 1
  assert str(tmp_path / "nowhere") in err
  code, err = run_main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"),
                        "--checkpoint", str(tmp_path / "nowhere")], capsys)
  assert code == 1 and len(err.strip().splitlines()) == 1
  assert "would both be written to" in err
  code, err = run_main([str(tmp_path / "a"), "-o", str(tmp_path / "a"), "--suffix", "",
                        "--checkpoint", str(tmp_path / "nowhere")], capsys)
  assert code == 1 and "would overwrite its input" in err


def _run_cli(args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "esrgan_jax.upscale", *args], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def test_bad_image_in_folder_is_reported_and_the_rest_processed(generator, tmp_path):
  checkpoint, _ = generator
  folder = tmp_path / "in"
  write_image(folder / "a.png", photo(16, 16))
  (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
  write_image(folder / "c.png", photo(16, 12))
  done = _run_cli([str(folder), "-o", str(tmp_path / "out"), "--checkpoint", checkpoint,
                   "--tile", "0"])
  assert done.returncode == 1
  assert "Traceback" not in done.stderr
  errors = [line for line in done.stderr.splitlines() if "error" in line]
  assert len(errors) == 2, done.stderr
  assert str(folder / "b.png") in errors[0] and "1 of 3 image(s) failed" in errors[1]
  assert sorted(os.listdir(tmp_path / "out")) == ["a_out.png", "c_out.png"]
  assert read_image_any(tmp_path / "out" / "c_out.png").shape == (64, 48, 3)


def test_unwritable_output_folder_fails_before_any_work(tmp_path, capsys):
  write_image(tmp_path / "photo.png", photo(8, 8))
  (tmp_path / "file").write_text("a file where the output folder should go")
  outdir = tmp_path / "file" / "out"
  # The checkpoint does not exist either: the output folder must be checked first.
  code, err = run_main([str(tmp_path / "photo.png"), "-o", str(outdir), "--checkpoint",
                        str(tmp_path / "missing")], capsys)
  assert code == 1
  assert err.strip().splitlines() == [
      f"esrgan_jax: error: {outdir}: output folder is not writable (Not a directory)"]


def test_image_smaller_than_a_tile_with_default_flags_equals_tile_0(generator, tmp_path, capsys):
  checkpoint, _ = generator
  image = photo(45, 37)  # Odd sizes, far below one default window of 256 + 2 * 10 px.
  write_image(tmp_path / "small.png", image)
  outputs = {}
  for name, flags in (("default", []), ("whole", ["--tile", "0"])):
    code, err = run_main([str(tmp_path / "small.png"), "-o", str(tmp_path / name),
                          "--checkpoint", checkpoint] + flags, capsys)
    assert code == 0, err
    outputs[name] = read_image_any(tmp_path / name / "small_out.png").astype(np.int64)
  assert outputs["default"].shape == (180, 148, 3)
  assert np.abs(outputs["default"] - outputs["whole"]).max() == 0


def test_exact_tile_pad_equals_whole_image_inference(generator, tmp_path, capsys):
  checkpoint, _ = generator
  write_image(tmp_path / "photo.png", photo(64, 80))
  for name, flags in (("exact", ["--tile", "16", "--tile_pad", "exact"]),
                      ("whole", ["--tile", "0"])):
    code, err = run_main(["-i", str(tmp_path / "photo.png"), "-o", str(tmp_path / name),
                          "--checkpoint", checkpoint] + flags, capsys)
    assert code == 0, err
  exact = read_image_any(tmp_path / "exact" / "photo_out.png").astype(np.int64)
  whole = read_image_any(tmp_path / "whole" / "photo_out.png").astype(np.int64)
  assert np.abs(exact - whole).max() == 0


def test_batched_folder_equals_one_image_at_a_time(generator, tmp_path, capsys):
  checkpoint, _ = generator
  rng = np.random.RandomState(3)
  for i in range(6):
    size = (16, 16) if i % 3 else (12, 20)  # Two sizes, interleaved.
    write_image(tmp_path / "in" / f"{i}.png", rng.randint(0, 256, size + (3,), np.uint8))
  for batch in ("1", "4"):
    code, err = run_main([str(tmp_path / "in"), "-o", str(tmp_path / batch), "--checkpoint",
                          checkpoint, "--batch_size", batch], capsys)
    assert code == 0, err
  for i in range(6):
    one = read_image_any(tmp_path / "1" / f"{i}_out.png").astype(np.int64)
    batched = read_image_any(tmp_path / "4" / f"{i}_out.png").astype(np.int64)
    assert one.shape == batched.shape and np.abs(one - batched).max() == 0


def test_batching_shares_calls_across_images(generator):
  checkpoint, _ = generator
  model, params = upscale.load_model(checkpoint, None, False)
  calls = []

  def counted(batch):
    calls.append(batch.shape[0])
    return upscale.make_apply_fn(model, params)(batch)

  runner = upscaler.Upscaler(counted, 4, None, tile=256, tile_pad=10, batch_size=8)
  for i in range(20):
    runner.submit(photo(16, 16), i)
  runner.flush()
  assert calls == [8, 8, 4] and [tag for tag, _ in runner.finished()] == list(range(20))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("outscale", [None, 2.0])
def test_halfway_outputs_round_to_even(dtype, outscale):
  """Outputs that land exactly on k + 0.5 levels round to even (images.to_pixels), through the
  resize too (a constant stays constant): levels 2.5, 4.5, 6.5 -> 2, 4, 6."""
  levels = np.array([2.5, 4.5, 6.5]) / np.iinfo(dtype).max

  def constant(batch):
    n, h, w, _ = batch.shape
    return np.broadcast_to(levels.astype(np.float32), (n, 4 * h, 4 * w, 3))

  runner = upscaler.Upscaler(constant, 4, outscale, tile=0, tile_pad=0, batch_size=1)
  result = runner(np.zeros((8, 8, 3), dtype))
  assert result.dtype == dtype
  np.testing.assert_array_equal(result, np.broadcast_to([2, 4, 6], result.shape))


@pytest.mark.parametrize("ext", ["gif", "png", "webp"])
def test_animation_upscales_every_frame_and_keeps_timing(generator, tmp_path, capsys, ext):
  checkpoint, reference = generator
  frames = [photo(16, 16), photo(16, 16)[::-1].copy(), photo(16, 16)[:, ::-1].copy()]
  durations = [70, 120, 200]
  pil = [Image.fromarray(f) for f in frames]
  options = {"lossless": True} if ext == "webp" else {}
  pil[0].save(tmp_path / f"anim.{ext}", save_all=True, append_images=pil[1:],
              duration=durations, loop=3, **options)
  code, err = run_main([str(tmp_path / f"anim.{ext}"), "-o", str(tmp_path / "out"),
                        "--checkpoint", checkpoint], capsys)
  assert code == 0, err
  with Image.open(tmp_path / "out" / f"anim_out.{ext}") as result:
    assert result.n_frames == 3 and result.size == (64, 64)
    assert result.info.get("loop") == 3
    for index, frame in enumerate(ImageSequence.Iterator(result)):
      frame.load()  # WebP reports a frame's duration once it is decoded.
      assert frame.info["duration"] == durations[index]
      if ext != "gif":  # GIF keeps 256 colours; APNG and lossless input keep every value.
        with Image.open(tmp_path / f"anim.{ext}") as source:
          source.seek(index)
          decoded = np.asarray(source.convert("RGB")) / 255.0
        got = np.asarray(frame.convert("RGB")).astype(np.int64)
        tolerance = 1 if ext == "png" else 12  # WebP output is lossy (quality 95).
        assert np.abs(got - to_uint(reference(decoded), np.uint8)).mean() <= tolerance


def test_animation_into_a_still_format_is_one_line_error(generator, tmp_path, capsys):
  checkpoint, _ = generator
  pil = [Image.fromarray(photo(8, 8)), Image.fromarray(photo(8, 8)[::-1].copy())]
  pil[0].save(tmp_path / "anim.gif", save_all=True, append_images=pil[1:], duration=50)
  code, err = run_main([str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out"),
                        "--checkpoint", checkpoint, "--ext", "jpg"], capsys)
  assert code == 1
  assert err.strip().splitlines()[0] == (
      f"esrgan_jax: error: {tmp_path / 'anim.gif'}: an animation of 2 frames cannot be written "
      "as .jpg; use --ext gif, png or webp")


@pytest.mark.parametrize("flags, message", [
    (["--tile", "-1"], "--tile must be >= 0"),
    (["--tile_pad", "wide"], "--tile_pad must be a number of pixels or 'exact'"),
    (["--batch-size", "0"], "--batch_size must be >= 1"),
    (["--outscale", "-2"], "--outscale must be a positive number"),
])
def test_bad_flag_values_are_one_line_errors_with_status_1(tmp_path, capsys, flags, message):
  write_image(tmp_path / "photo.png", photo(8, 8))
  code, err = run_main([str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                        "--checkpoint", str(tmp_path / "missing")] + flags, capsys)
  assert code == 1 and len(err.strip().splitlines()) == 1
  assert err.startswith(f"esrgan_jax: error: {message}")


def test_no_input_is_a_usage_error_and_help_states_bound_and_statuses(capsys):
  with pytest.raises(SystemExit) as stop:
    upscale.main(["-o", "out", "--checkpoint", "ckpt"])
  assert stop.value.code == cli.EXIT_USAGE
  with pytest.raises(SystemExit) as stop:
    upscale.main(["--help"])
  assert stop.value.code == 0
  text = " ".join(capsys.readouterr().out.split())
  assert "about its input plus its output" in text and "--tile_pad exact" in text
  assert text.endswith(" ".join(cli.EXIT_STATUS_HELP.split()))


def test_ctrl_c_is_one_line_and_status_130(generator, tmp_path, capsys, monkeypatch):
  checkpoint, _ = generator
  write_image(tmp_path / "photo.png", photo(8, 8))

  def interrupted(path):
    raise KeyboardInterrupt

  monkeypatch.setattr(upscale, "read_image_any", interrupted)
  code, err = run_main([str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"),
                        "--checkpoint", checkpoint], capsys)
  assert code == cli.EXIT_INTERRUPTED
  assert err.strip().splitlines() == [
      "esrgan_jax: stopped by Ctrl-C; the images written before it are complete"]


def test_sigterm_mid_write_is_one_line_status_143_and_leaves_no_partial_file(
    generator, tmp_path, capsys, monkeypatch):
  """A real SIGTERM while the second output is being written: the first output is whole, the
  second absent (its temporary file removed), and the process ends with one line and 143."""
  checkpoint, _ = generator
  folder = tmp_path / "in"
  for name in ("a", "b"):
    write_image(folder / f"{name}.png", photo(8, 8))
  monkeypatch.setattr(png, "STRIP_BYTES", 64 * png.SCRATCH_PER_BYTE)  # The signal lands mid-file.
  real_filter = png.filter_rows
  calls = {"b": 0}

  def filtered_rows(rows, above, bpp):
    rows = real_filter(rows, above, bpp)
    if any(p.name.startswith("b_out.png.tmp") for p in (tmp_path / "out").iterdir()):
      calls["b"] += 1
      if calls["b"] == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return rows

  monkeypatch.setattr(png, "filter_rows", filtered_rows)
  previous_handler = signal.getsignal(signal.SIGTERM)
  code, err = run_main([str(folder), "-o", str(tmp_path / "out"), "--checkpoint", checkpoint],
                       capsys)
  assert code == cli.EXIT_TERMINATED and calls["b"] == 2
  assert err.strip().splitlines() == [
      "esrgan_jax: stopped by SIGTERM; the images written before it are complete"]
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_out.png"]
  assert read_image_any(tmp_path / "out" / "a_out.png").shape == (32, 32, 3)
  assert signal.getsignal(signal.SIGTERM) is previous_handler


def test_output_too_large_for_its_format_is_refused_before_the_work(generator, tmp_path, capsys,
                                                                     monkeypatch):
  """A 4100-wide WebP input would give a 16400-wide output, over WebP's 16383: one line naming the
  file, before the network runs; the other input is still upscaled."""
  checkpoint, _ = generator
  folder = tmp_path / "in"
  write_image(folder / "wide.webp", np.tile(photo(2, 100), (1, 41, 1)))
  write_image(folder / "small.webp", photo(8, 8))
  submitted = []
  real_submit = upscaler.Upscaler.submit
  monkeypatch.setattr(upscaler.Upscaler, "submit",
                      lambda self, image, tag=None: (submitted.append(image.shape),
                                                     real_submit(self, image, tag)))
  code, err = run_main([str(folder), "-o", str(tmp_path / "out"), "--checkpoint", checkpoint],
                       capsys)
  lines = err.strip().splitlines()
  assert code == cli.EXIT_ERROR and len(lines) == 2, err
  assert lines[0] == (f"esrgan_jax: error: {tmp_path / 'out' / 'wide_out.webp'}: 16400x8 is "
                      "larger than WEBP can hold (16383 pixels a side); write PNG or TIFF "
                      "instead (--ext png)")
  assert submitted == [(8, 8, 3)]
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small_out.webp"]


def test_streamed_png_reads_back_exactly(tmp_path, monkeypatch):
  monkeypatch.setattr(png, "STRIP_BYTES", 500 * png.SCRATCH_PER_BYTE)  # Several strips, IDATs.
  rng = np.random.RandomState(0)
  for dtype, channels in ((np.uint8, 3), (np.uint8, 1), (np.uint8, 4), (np.uint16, 3)):
    image = rng.randint(0, np.iinfo(dtype).max + 1, (37, 23, channels)).astype(dtype)
    write_image(tmp_path / "x.png", image)
    np.testing.assert_array_equal(read_image_any(tmp_path / "x.png"), image)


@pytest.mark.parametrize("outscale", [None, 3.0])
def test_output_buffer_is_the_only_large_allocation(generator, monkeypatch, tmp_path, outscale):
  checkpoint, _ = generator
  model, params = upscale.load_model(checkpoint, None, False)
  monkeypatch.setattr(bicubic, "RESIZE_STRIP_BYTES", 1 << 18)
  monkeypatch.setattr(png, "STRIP_BYTES", 1 << 18)
  # Tall and narrow, so that one row band of tiles (which the resize assembles) is small
  # against the whole output, as it is for any large image.
  strip = skimage.data.astronaut()[:480, 200:264]
  image = np.concatenate([strip, strip[::-1]])  # 960 x 64.
  runner = upscaler.Upscaler(upscale.make_apply_fn(model, params), 4, outscale, tile=16,
                             tile_pad=8, batch_size=2)
  # Compile the 32 px windows first: XLA's compiler allocates through Python too.
  runner(photo(48, 48))
  tracemalloc.start()
  try:
    result = runner(image)
    image_files.write_output(str(tmp_path / "big.png"), result)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert result.dtype == np.uint8 and result.nbytes >= 1_600_000
  # Beyond the output: windows, one row band of tiles, resize scratch (RESIZE_STRIP_BYTES) and
  # its tap tables, a few MB at most. A float32 copy of the output alone would add 4x its size.
  extra = peak - result.nbytes
  print(f"output {result.nbytes / 2**20:.2f} MiB, traced peak {peak / 2**20:.2f} MiB")
  assert extra < 3 * 2**20 and extra < 1.5 * result.nbytes, (peak, result.nbytes)
