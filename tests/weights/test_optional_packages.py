"""weights/store.py's `import_for` and `has_suffix`, which the .pth, .safetensors and .onnx
readers and writers share: a missing optional package is one line naming the file."""

import sys

import pytest

from esrgan_jax.weights import onnx_export, torch_io
from esrgan_jax.weights.store import CheckpointError, has_suffix, import_for


@pytest.mark.parametrize("module, load, message", [
    ("torch", lambda: torch_io.read_torch_checkpoint("w.pth"),
     "w.pth: reading or writing .pth files needs PyTorch (pip install torch); nothing else in "
     "esrgan_jax does"),
    ("safetensors.numpy", lambda: torch_io.read_safetensors("w.safetensors"),
     "w.safetensors: reading or writing .safetensors files needs the safetensors package "
     "(pip install safetensors)"),
    ("onnx", lambda: onnx_export.onnx_model({}, {}, path="g.onnx"),
     "g.onnx: writing .onnx files needs the onnx package (pip install onnx)"),
])
def test_a_missing_package_is_one_line_naming_the_file(monkeypatch, module, load, message):
  monkeypatch.setitem(sys.modules, module, None)  # `import module` then raises ImportError
  with pytest.raises(CheckpointError) as error:
    load()
  assert str(error.value) == message


def test_import_for_returns_the_top_level_package_and_suffixes_ignore_case():
  import safetensors  # pylint: disable=import-outside-toplevel
  assert import_for("x", "safetensors.numpy", "unused") is safetensors
  assert hasattr(safetensors, "numpy")
  assert has_suffix("A/B.ONNX", ".onnx") and not has_suffix("b.onnx.bak", ".onnx")
  assert torch_io.is_safetensors_path("w.SafeTensors") and onnx_export.is_onnx_path("g.Onnx")
