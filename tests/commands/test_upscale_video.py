"""python -m esrgan_jax.upscale on videos: frame-exact against the image upscaler, timestamps,
audio, subtitles, rotation and colour kept, --fps, and the codecs."""

import re

import av
import numpy as np
import pytest

from esrgan_jax import upscale as upscale_command
from esrgan_jax.data.images import read_image_any, write_image
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.weights.generator import arch_of, save_generator
from tests.tiny_generator import random_params
from tests.video_clips import decoded, frame_times_ms, make_clip, packets

# 16 px tiles with 4 px of context: a 32x24 frame is two windows wide, one high, so frames are
# tiled and two frames share each batch of 4 windows.
TILING = ["--tile", "16", "--tile_pad", "4", "--batch_size", "4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  model = SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4)
  path = str(tmp_path_factory.mktemp("ckpt") / "compact_x4")
  save_generator(path, random_params(model, seed=3), arch_of(model))
  return path


def upscale(args, capsys, checkpoint):
  """(exit status, stdout, stderr) of the command in this process."""
  code = upscale_command.main(args + ["--checkpoint", checkpoint])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def image_upscaler_outputs(frames, tmp_path, capsys, checkpoint, flags):
  """The image command's output for each frame, written as PNGs and upscaled as a folder."""
  folder = tmp_path / "frames"
  for i, pixels in enumerate(frames):
    write_image(folder / f"{i:03d}.png", pixels)
  code, _, err = upscale([str(folder), "-o", str(tmp_path / "frames_out")] + flags, capsys,
                      checkpoint)
  assert code == 0, err
  return [read_image_any(tmp_path / "frames_out" / f"{i:03d}_out.png") for i in
          range(len(frames))]


def test_lossless_video_equals_the_image_upscaler_frame_by_frame(tmp_path, capsys, checkpoint):
  frames = make_clip(tmp_path / "clip.mkv", count=24, subtitles=True)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                       "ffv1"] + TILING, capsys, checkpoint)
  assert code == 0, err
  out = tmp_path / "out" / "clip_out.mkv"
  video = decoded(out)
  expected = image_upscaler_outputs(frames, tmp_path, capsys, checkpoint, TILING)
  assert len(video) == len(frames) == 24
  for i, ((_, pixels), reference) in enumerate(zip(video, expected)):
    assert pixels.shape == (96, 128, 3)
    assert np.array_equal(pixels, reference), f"frame {i}"
  # Variable frame durations, the audio and the subtitles, unchanged.
  assert [t for t, _ in video] == [ms / 1000 for ms in frame_times_ms(24)]
  for kind in ("audio", "subtitle"):
    assert packets(out, kind) == packets(tmp_path / "clip.mkv", kind) != []
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_out.mkv"]


def test_summary_line_names_rates_and_output(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=8, audio=False)
  code, out, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"),
                            "--vcodec", "ffv1"], capsys, checkpoint)
  assert code == 0 and err == ""  # no terminal: no progress bar
  assert re.fullmatch(rf"{tmp_path / 'clip.mkv'}: 8 frames 32x24 -> 128x96 in [\d.]+ s, "
                      rf"[\d.]+ frames/s, [\d.]+x realtime -> {tmp_path / 'out/clip_out.mkv'}\n",
                      out), out


def test_h264_keeps_timestamps_rotation_colour_and_audio(tmp_path, capsys, checkpoint):
  bt709 = (1, 1, 1, 1)  # limited range, BT.709 matrix, primaries and transfer
  make_clip(tmp_path / "clip.mp4", count=24, codec="libx264", pix_fmt="yuv420p", rotation=90,
            colour=bt709)
  code, _, err = upscale([str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out")] + TILING,
                      capsys, checkpoint)
  assert code == 0, err
  out = tmp_path / "out" / "clip_out.mp4"
  with av.open(str(out)) as container:
    stream = container.streams.video[0]
    assert stream.codec_context.name == "h264"
    frame = next(container.decode(stream))
    assert frame.rotation == 90 and frame.format.name == "yuv420p"
    assert (frame.color_range, frame.colorspace, frame.color_primaries, frame.color_trc) == bt709
  source, video = decoded(tmp_path / "clip.mp4"), decoded(out)
  assert [t for t, _ in video] == [t for t, _ in source]
  assert packets(out, "audio") == packets(tmp_path / "clip.mp4", "audio") != []
  # Lossy, but converted back to YUV with the matrix it came in with: the luma stays close to
  # the image upscaler's output of the decoded input frames (4:2:0 chroma of a random network's
  # output does not).
  expected = image_upscaler_outputs([p for _, p in source], tmp_path, capsys, checkpoint, TILING)
  luma = np.array([0.2126, 0.7152, 0.0722])  # BT.709
  error = np.mean([np.abs((v.astype(int) - e) @ luma).mean() for (_, v), e in zip(video,
                                                                                   expected)])
  assert error < 3, error


def test_fps_sets_the_frame_times(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=6)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                       "ffv1", "--fps", "10"], capsys, checkpoint)
  assert code == 0, err
  assert [t for t, _ in decoded(tmp_path / "out" / "clip_out.mkv")] == [
      i / 10 for i in range(6)]


@pytest.mark.parametrize("vcodec, ext", [("libx265", "mp4"), ("libvpx-vp9", "webm"),
                                         ("libsvtav1", "mkv")])
def test_other_codecs_write_every_frame(tmp_path, capsys, checkpoint, vcodec, ext):
  make_clip(tmp_path / "clip.mkv", count=5, audio=False)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                       vcodec, "--ext", ext], capsys, checkpoint)
  assert code == 0, err
  assert len(decoded(tmp_path / "out" / f"clip_out.{ext}")) == 5
