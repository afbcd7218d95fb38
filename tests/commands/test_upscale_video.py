"""python -m esrgan_jax.upscale on videos: frame-exact against the image upscaler, timestamps,
audio, subtitles, rotation and colour kept, --fps, and the codecs."""

import functools
import io
import json
import os
import re
import signal
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import tqdm

from esrgan_jax import cli
from esrgan_jax import upscale as upscale_command
from esrgan_jax.data.images import read_image_any, write_image
from esrgan_jax.inference import video, video_encode
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
  with av.open(str(out)) as container:  # lossless 8-bit RGB
    assert container.streams.video[0].codec_context.name == "ffv1"
    assert container.streams.video[0].codec_context.pix_fmt == "bgr0"


def test_outscale_resizes_video_frames_as_it_does_images(tmp_path, capsys, checkpoint):
  frames = make_clip(tmp_path / "clip.mkv", count=4, audio=False)
  flags = TILING + ["--outscale", "2.5"]
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                          "ffv1"] + flags, capsys, checkpoint)
  assert code == 0, err
  video = decoded(tmp_path / "out" / "clip_out.mkv")
  expected = image_upscaler_outputs(frames, tmp_path, capsys, checkpoint, flags)
  assert [p.shape for _, p in video] == [(60, 80, 3)] * 4
  assert all(np.array_equal(p, e) for (_, p), e in zip(video, expected))


def test_summary_line_names_rates_and_output(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=8, audio=False)
  code, out, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"),
                            "--vcodec", "ffv1"], capsys, checkpoint)
  assert code == 0 and err == ""  # no terminal: no progress bar
  assert re.fullmatch(rf"{tmp_path / 'clip.mkv'}: 8 frames 32x24 -> 128x96 in [\d.]+ s, "
                      rf"[\d.]+ frames/s, [\d.]+x realtime -> {tmp_path / 'out/clip_out.mkv'}\n",
                      out), out


def test_h264_keeps_timestamps_rotation_colour_aspect_and_audio(tmp_path, capsys, checkpoint):
  bt709 = (1, 1, 1, 1)  # limited range, BT.709 matrix, primaries and transfer
  make_clip(tmp_path / "clip.mp4", count=24, codec="libx264", pix_fmt="yuv420p", rotation=90,
            colour=bt709, sample_aspect_ratio=Fraction(8, 9))
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
    assert stream.sample_aspect_ratio == Fraction(8, 9)
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


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, cli.EXIT_TERMINATED),
                                            (signal.SIGINT, cli.EXIT_INTERRUPTED)])
def test_stop_leaves_a_playable_partial_and_resume_equals_an_uninterrupted_run(
    tmp_path, capsys, checkpoint, monkeypatch, signum, status):
  make_clip(tmp_path / "clip.mkv", count=24, subtitles=True)
  args = [str(tmp_path / "clip.mkv"), "--vcodec", "ffv1"] + TILING
  code, _, err = upscale(args + ["-o", str(tmp_path / "whole")], capsys, checkpoint)
  assert code == 0, err
  whole = tmp_path / "whole" / "clip_out.mkv"

  real_put = video_encode.SegmentWriter.put

  def put(self, pixels, pts, index):
    if index == 9:  # a real signal, mid-video, while batches are in flight
      os.kill(os.getpid(), signum)
    real_put(self, pixels, pts, index)

  monkeypatch.setattr(video_encode.SegmentWriter, "put", put)
  out = tmp_path / "out" / "clip_out.mkv"
  previous = signal.getsignal(signum)
  code, _, err = upscale(args + ["-o", str(tmp_path / "out")], capsys, checkpoint)
  assert code == status and signal.getsignal(signum) is previous
  note = json.loads((tmp_path / "out" / "clip_out.mkv.resume.json").read_text())
  held = note["frames"]
  # The batch in flight is finished (two frames per batch of 4 windows): 10 frames or a few
  # more, all of them in a whole, playable file with their timestamps.
  assert 10 <= held < 24 and held % 2 == 0
  name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
  assert err.strip().splitlines()[-1] == (
      f"esrgan_jax: stopped by {name} after frame {held} of {tmp_path / 'clip.mkv'}: {out} is "
      f"playable and holds its first {held} frames; the same command with --resume continues")
  partial = decoded(out)
  assert len(partial) == held
  assert [t for t, _ in partial] == [t for t, _ in decoded(whole)[:held]]
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
      "clip_out.mkv", "clip_out.mkv.resume.json"]

  # The same command again is refused, naming --resume; a changed setting is refused too.
  code, _, err = upscale(args + ["-o", str(tmp_path / "out")], capsys, checkpoint)
  assert code == 1 and "add --resume to continue it or --overwrite" in err
  code, _, err = upscale(args + ["-o", str(tmp_path / "out"), "--resume", "--batch_size", "2"],
                         capsys, checkpoint)
  assert code == 1 and "batch_size was 4, now 2" in err, err

  monkeypatch.setattr(video_encode.SegmentWriter, "put", real_put)
  code, out_text, err = upscale(args + ["-o", str(tmp_path / "out"), "--resume"], capsys,
                                checkpoint)
  assert code == 0, err
  assert f"24 frames (from frame {held})" not in out_text  # frames of this run only
  assert f"{24 - held} frames (from frame {held})" in out_text
  resumed, expected = decoded(out), decoded(whole)
  assert len(resumed) == 24
  for i, ((t, pixels), (t_whole, pixels_whole)) in enumerate(zip(resumed, expected)):
    assert t == t_whole and np.array_equal(pixels, pixels_whole), f"frame {i}"
  for kind in ("audio", "subtitle"):
    assert packets(out, kind) == packets(whole, kind)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_out.mkv"]
  # Resuming a finished output does nothing.
  code, out_text, err = upscale(args + ["-o", str(tmp_path / "out"), "--resume"], capsys,
                                checkpoint)
  assert code == 0 and out_text == f"{out}: complete, skipped (--resume)\n"


def test_progress_bar_on_a_terminal_shows_frames_realtime_and_eta(tmp_path, capsys, checkpoint,
                                                                  monkeypatch):
  make_clip(tmp_path / "clip.mkv", count=12, audio=False)

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  terminal = Terminal()
  monkeypatch.setattr(sys, "stderr", terminal)
  # Every update drawn (a bar is otherwise redrawn at most every 0.1 s).
  monkeypatch.setattr(video, "tqdm", functools.partial(tqdm.tqdm, mininterval=0, miniters=1))
  code, _, _ = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                        "ffv1", "--batch_size", "1"], capsys, checkpoint)
  assert code == 0
  bar = terminal.getvalue().split("\r")
  drawn = [line for line in bar if "clip.mkv" in line and "11/12" in line]
  assert drawn, terminal.getvalue()
  # frames/s, the realtime factor and the time left, as tqdm draws them.
  assert re.search(r"11/12 \[[\d:]+<[\d:]+, +[\d.]+frame/s, [\d.]+x realtime\]", drawn[-1]), \
      drawn[-1]


def test_h264_resume_joins_the_parts_into_one_stream(tmp_path, capsys, checkpoint, monkeypatch):
  """x264 with B-frames: the parts join without re-encoding into one stream with every frame
  and timestamp (lossy: the pixels are not compared)."""
  make_clip(tmp_path / "clip.mp4", count=12, codec="libx264", pix_fmt="yuv420p")
  args = [str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out"), "--tile", "0",
          "--batch_size", "2"]
  real_put = video_encode.SegmentWriter.put

  def put(self, pixels, pts, index):
    if index == 4:
      os.kill(os.getpid(), signal.SIGTERM)
    real_put(self, pixels, pts, index)

  monkeypatch.setattr(video_encode.SegmentWriter, "put", put)
  code, _, err = upscale(args, capsys, checkpoint)
  assert code == cli.EXIT_TERMINATED, err
  out = tmp_path / "out" / "clip_out.mp4"
  held = json.loads((tmp_path / "out" / "clip_out.mp4.resume.json").read_text())["frames"]
  assert len(decoded(out)) == held < 12
  monkeypatch.setattr(video_encode.SegmentWriter, "put", real_put)
  code, _, err = upscale(args + ["--resume"], capsys, checkpoint)
  assert code == 0, err
  source, video = decoded(tmp_path / "clip.mp4"), decoded(out)
  assert [t for t, _ in video] == [t for t, _ in source]
  assert packets(out, "audio") == packets(tmp_path / "clip.mp4", "audio")
