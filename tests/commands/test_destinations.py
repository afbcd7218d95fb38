"""Weights destinations under a file (issue #27): interpolate and convert refuse them in one line
before any work, naming the file in the way (was Orbax's or epath's FileExistsError, after)."""

import pytest

from esrgan_jax import convert, interpolate
from esrgan_jax.weights import store
from tests.tiny_generator import saved_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  return saved_tiny_checkpoint(tmp_path_factory)


@pytest.mark.parametrize("command", ["interpolate", "export_pth", "export_onnx"])
def test_destination_under_a_file_is_refused_before_the_work(tmp_path, capsys, checkpoint,
                                                             monkeypatch, command):
  (tmp_path / "afile").write_text("a file")
  destination = tmp_path / "afile" / "deeper" / {"interpolate": "out", "export_pth": "out.pth",
                                                 "export_onnx": "out.onnx"}[command]
  monkeypatch.setattr(store, "restore", lambda *a, **k: pytest.fail("read before the check"))
  if command == "interpolate":
    status = interpolate.main(["--psnr", checkpoint, "--gan", checkpoint, "--alpha", "0.5", "-o",
                               str(destination)])
  else:
    status = convert.main(["--export", checkpoint, str(destination)])
  assert status == 1
  assert capsys.readouterr().err == (f"esrgan_jax: error: {destination}: cannot write here "
                                     f"({tmp_path / 'afile'} is a file, not a folder)\n")
