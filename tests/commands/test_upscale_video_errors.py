"""Bad video inputs and flags: one line each naming the file or flag, exit status 1, and nothing
lost (the other inputs are upscaled, what decodes of a damaged file is upscaled); frames past
--max_pixels or --tile 0's memory refused from the header before any work."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from esrgan_jax.data.images import write_image
from esrgan_jax.inference import video_decode, video_encode, whole_image
from tests.commands.test_upscale_video import checkpoint, upscale  # pylint: disable=unused-import
from tests.video_clips import decoded, frame_times_ms, make_clip, panned_frames


def error_lines(err):
  return [line for line in err.splitlines() if line.startswith("esrgan_jax: error: ")]


def test_a_file_without_video_is_one_line_and_the_others_are_upscaled(tmp_path, capsys,
                                                                      checkpoint):
  folder = tmp_path / "in"
  folder.mkdir()
  with av.open(str(folder / "a_sound.mkv"), "w") as out:
    sound = out.add_stream("aac", rate=8000, layout="mono")
    frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
    frame.sample_rate, frame.pts = 8000, 0
    for plane in frame.planes:
      plane.update(bytes(plane.buffer_size))
    for packet in sound.encode(frame) + sound.encode():
      out.mux(packet)
  make_clip(folder / "b_clip.mkv", count=4, audio=False)
  write_image(folder / "c_photo.png", panned_frames(1)[0])
  code, out_text, err = upscale([str(folder), "-o", str(tmp_path / "out"), "--vcodec", "ffv1"],
                                capsys, checkpoint)
  assert code == 1
  assert error_lines(err) == [
      f"esrgan_jax: error: {folder / 'a_sound.mkv'}: no video stream to upscale (audio only)",
      f"esrgan_jax: error: 1 of 3 file(s) failed; the other 2 are in {tmp_path / 'out'}"]
  assert "Traceback" not in err and "b_clip.mkv: 4 frames" in out_text
  assert sorted(os.listdir(tmp_path / "out")) == ["b_clip_out.mkv", "c_photo_out.png"]


def test_a_truncated_file_is_upscaled_as_far_as_it_decodes(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=24, audio=False)
  data = (tmp_path / "clip.mkv").read_bytes()
  (tmp_path / "cut.mkv").write_bytes(data[:len(data) * 6 // 10])
  code, _, err = upscale([str(tmp_path / "cut.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                          "ffv1"], capsys, checkpoint)
  kept = decoded(tmp_path / "out" / "cut_out.mkv")
  assert code == 1 and 5 < len(kept) < 24
  assert [t for t, _ in kept] == [ms / 1000 for ms in frame_times_ms(len(kept))]
  assert error_lines(err)[0] == (
      f"esrgan_jax: error: {tmp_path / 'cut.mkv'}: the video stream ends after {len(kept)} "
      f"frames (the last at {kept[-1][0]:.2f} s of 0.97 s): the file is truncated or damaged; "
      f"the {len(kept)} frames are upscaled")


def test_a_frame_that_fails_to_decode_ends_the_video_there(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=24, audio=False)
  with av.open(str(tmp_path / "clip.mkv")) as container:
    where = [(p.pos, p.size) for p in container.demux(video=0) if p.size][12]
  data = bytearray((tmp_path / "clip.mkv").read_bytes())
  for k in range(where[0] + where[1] - 4, where[0] + where[1]):  # FFV1's slice footer
    data[k] ^= 0xFF
  (tmp_path / "bad.mkv").write_bytes(bytes(data))
  code, _, err = upscale([str(tmp_path / "bad.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                          "ffv1"], capsys, checkpoint)
  kept = decoded(tmp_path / "out" / "bad_out.mkv")
  assert code == 1 and len(kept) == 12
  assert error_lines(err)[0] == (
      f"esrgan_jax: error: {tmp_path / 'bad.mkv'}: decoding failed after 12 frames (the last "
      f"at {kept[-1][0]:.2f} s of 0.97 s) (Invalid data found when processing input); the 12 "
      "frames before it are upscaled")


def test_unreadable_and_undecodable_videos_are_one_line_each(tmp_path, capsys, checkpoint):
  (tmp_path / "text.mp4").write_text("not a video")
  with av.open(str(tmp_path / "avs2.mkv"), "w") as out:  # a codec this FFmpeg cannot decode
    stream = out.add_mux_stream("avs2", width=32, height=24)
    stream.time_base = Fraction(1, 1000)
    for i in range(3):
      packet = av.Packet(b"\x00\x00\x01\xb0" + bytes(60))
      packet.stream, packet.pts, packet.dts, packet.time_base = stream, 40 * i, 40 * i, \
          Fraction(1, 1000)
      out.mux(packet)
  code, _, err = upscale([str(tmp_path / "text.mp4"), str(tmp_path / "avs2.mkv"), "-o",
                          str(tmp_path / "out")], capsys, checkpoint)
  lines = error_lines(err)
  assert code == 1 and len(lines) == 3 and "Traceback" not in err
  assert lines[0].startswith(f"esrgan_jax: error: {tmp_path / 'text.mp4'}: not a readable "
                             "video (")
  assert lines[1] == (f"esrgan_jax: error: {tmp_path / 'avs2.mkv'}: its video codec avs2 cannot "
                      "be decoded (this FFmpeg build has no decoder for it)")
  assert not os.path.exists(tmp_path / "out")  # nothing written: the folder made for it is gone


def test_an_existing_output_is_refused_before_any_work_unless_overwrite(tmp_path, capsys,
                                                                       checkpoint):
  make_clip(tmp_path / "a.mkv", count=3, audio=False)
  make_clip(tmp_path / "b.mkv", count=3, audio=False)
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "b_out.mkv").write_bytes(b"precious")
  args = [str(tmp_path / "a.mkv"), str(tmp_path / "b.mkv"), "-o", str(tmp_path / "out"),
          "--vcodec", "ffv1"]
  code, _, err = upscale(args, capsys, checkpoint)
  assert code == 1 and err.splitlines() == [
      f"esrgan_jax: error: {tmp_path / 'out' / 'b_out.mkv'}: exists; add --overwrite to "
      "replace it"]
  assert sorted(os.listdir(tmp_path / "out")) == ["b_out.mkv"]
  code, _, err = upscale(args + ["--overwrite"], capsys, checkpoint)
  assert code == 0, err
  assert len(decoded(tmp_path / "out" / "b_out.mkv")) == 3


@pytest.mark.parametrize("flags, message", [
    (["--vcodec", "nonesuch"], "--vcodec nonesuch: not a video encoder of this FFmpeg build"),
    (["--vcodec", "aac"], "--vcodec aac: not a video encoder of this FFmpeg build"),
    (["--vcodec", "ffv1", "--preset", "slow"], "--preset: ffv1 takes no preset"),
    (["--fps", "0"], "--fps must be a positive number, got 0.0"),
    (["--preset", "warp9"], "cannot encode libx264"),
    (["--outscale", "2.5"], "frames cannot be written as yuv420p (its chroma needs even sides)"),
])
def test_bad_video_flags_are_one_line(tmp_path, capsys, checkpoint, flags, message):
  make_clip(tmp_path / "clip.mkv", count=3, audio=False, height=25, width=33)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out")] + flags,
                         capsys, checkpoint)
  lines = error_lines(err)
  assert code == 1 and message in lines[0], err
  assert "Traceback" not in err


def test_a_video_that_fails_mid_way_leaves_nothing_and_the_next_is_right(
    tmp_path, capsys, checkpoint, monkeypatch):
  make_clip(tmp_path / "a.mkv", count=6, audio=False)
  make_clip(tmp_path / "b.mkv", count=6, audio=False, height=32, width=24)
  flags = ["--vcodec", "ffv1", "--batch_size", "4"]
  code, _, err = upscale([str(tmp_path / "b.mkv"), "-o", str(tmp_path / "alone")] + flags,
                         capsys, checkpoint)
  assert code == 0, err
  real_put = video_encode.SegmentWriter.put

  def put(self, pixels, pts, index):
    if index == 3 and "a_out" in self.path:
      raise video_encode.VideoWriteError(f"{self.path}: no space left on device")
    real_put(self, pixels, pts, index)

  monkeypatch.setattr(video_encode.SegmentWriter, "put", put)
  code, _, err = upscale([str(tmp_path / "a.mkv"), str(tmp_path / "b.mkv"), "-o",
                          str(tmp_path / "out")] + flags, capsys, checkpoint)
  assert code == 1 and "a_out.part.mkv: no space left on device" in error_lines(err)[0]
  assert os.listdir(tmp_path / "out") == ["b_out.mkv"]  # no partial of a, no segment left
  together, alone = decoded(tmp_path / "out" / "b_out.mkv"), decoded(tmp_path / "alone" /
                                                                      "b_out.mkv")
  assert len(together) == 6 and all(
      np.array_equal(x, y) for (_, x), (_, y) in zip(together, alone))


@pytest.mark.parametrize("flags, settings", [
    (["--preset", "warp9"], "--crf 18 --preset warp9"),
])
def test_an_encoder_refusal_names_the_frame_size_and_the_flags(tmp_path, capsys, checkpoint,
                                                                flags, settings):
  make_clip(tmp_path / "clip.mkv", count=3, audio=False)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out")] + flags,
                         capsys, checkpoint)
  lines = error_lines(err)
  assert code == 1 and "Traceback" not in err
  assert lines[0].startswith(f"esrgan_jax: error: {tmp_path / 'out' / 'clip_out.part.mkv'}: "
                             f"cannot encode libx264 128x96 frames with {settings} (")
  assert lines[0].endswith("); check those flags and --outscale")
  assert lines[1] == (f"esrgan_jax: error: 1 of 1 video(s) failed; nothing was written to "
                      f"{tmp_path / 'out'}")


def test_videos_and_images_end_with_how_many_were_written_where(tmp_path, capsys, checkpoint):
  """A video's own line names its output; with images too, one line counts them all."""
  make_clip(tmp_path / "clip.mkv", count=3, audio=False)
  write_image(tmp_path / "photo.png", panned_frames(1)[0])
  code, out, err = upscale([str(tmp_path / "clip.mkv"), str(tmp_path / "photo.png"), "-o",
                            str(tmp_path / "out"), "--vcodec", "ffv1"], capsys, checkpoint)
  assert code == 0, err
  lines = out.splitlines()
  assert len(lines) == 2 and lines[0].endswith(f"-> {tmp_path / 'out' / 'clip_out.mkv'}")
  assert lines[1] == f"wrote 2 file(s) to {tmp_path / 'out'}"


@pytest.mark.parametrize("vcodec, crf, expected", [
    ("libx264", "52", "--crf 52: libx264 takes 0 to 51"),  # clamped silently before
    ("libx265", "-1", "--crf -1: libx265 takes 0 to 51"),  # taken silently before
    ("libvpx-vp9", "64", "--crf 64: libvpx-vp9 takes 0 to 63"),
])
def test_crf_out_of_the_encoders_range_is_refused_at_once(tmp_path, capsys, checkpoint, vcodec,
                                                          crf, expected):
  make_clip(tmp_path / "clip.mkv", count=3, audio=False)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--vcodec",
                          vcodec, "--crf", crf], capsys, checkpoint)
  assert code == 1
  assert err == f"esrgan_jax: error: {expected} (lower is better quality)\n"
  assert not os.path.exists(tmp_path / "out")


def test_a_video_past_max_pixels_is_refused_before_any_work(tmp_path, capsys, checkpoint,
                                                            monkeypatch):
  """From the container's header, with the images' wording; nothing decoded, no output begun,
  the other inputs upscaled."""
  make_clip(tmp_path / "clip.mkv", count=4, audio=False)  # 32x24 frames: 128x96 out
  write_image(tmp_path / "photo.png", panned_frames(1, 8, 8)[0])  # 32x32 out
  monkeypatch.setattr(video_decode, "probe", lambda *a: pytest.fail("decoded before refusal"))
  code, out_text, err = upscale([str(tmp_path / "clip.mkv"), str(tmp_path / "photo.png"), "-o",
                                 str(tmp_path / "out"), "--max_pixels", "5000"], capsys,
                                checkpoint)
  assert code == 1 and "Traceback" not in err and out_text == ""
  assert err.splitlines() == [
      f"esrgan_jax: error: {tmp_path / 'clip.mkv'}: 32x24 -> 128x96 is 12288 output pixels "
      "(0.0 MiB in memory), more than --max_pixels 5000; raise --max_pixels to upscale it, or "
      "lower --outscale",
      f"esrgan_jax: error: 1 of 2 file(s) failed; the other 1 are in {tmp_path / 'out'}"]
  assert os.listdir(tmp_path / "out") == ["photo_out.png"]


def test_a_refused_video_alone_leaves_no_output_folder(tmp_path, capsys, checkpoint):
  make_clip(tmp_path / "clip.mkv", count=4, audio=False)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"),
                          "--max_pixels", "5000"], capsys, checkpoint)
  assert code == 1
  assert err.splitlines()[-1] == (
      f"esrgan_jax: error: 1 of 1 video(s) failed; nothing was written to {tmp_path / 'out'}")
  assert sorted(os.listdir(tmp_path)) == ["clip.mkv"]


def test_whole_frames_past_the_memory_available_are_refused(tmp_path, capsys, checkpoint,
                                                            monkeypatch):
  """--tile 0 with an injected 100 kB: two 32x24 frames a call do not fit; tiles do."""
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 100_000)
  make_clip(tmp_path / "clip.mkv", count=4, audio=False)
  flags = ["--tile", "0", "--batch_size", "2", "--vcodec", "ffv1"]
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out")] + flags,
                         capsys, checkpoint)
  assert code == 1 and not os.path.exists(tmp_path / "out")
  line = error_lines(err)[0]
  assert line.startswith(f"esrgan_jax: error: {tmp_path / 'clip.mkv'}: --tile 0 runs each 32x24 "
                         "frame whole through the network (2 a call), which needs about ")
  assert line.endswith(" MiB available; use --tile 32 to upscale it in tiles")
  monkeypatch.setattr(whole_image, "available_bytes", lambda: 2**30)
  code, _, err = upscale([str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out")] + flags,
                         capsys, checkpoint)
  assert code == 0, err
  assert len(decoded(tmp_path / "out" / "clip_out.mkv")) == 4
