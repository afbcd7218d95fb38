"""output_names.first_clash: the check degrade and upscale share (their wording is tested in
tests/commands/test_degrade.py and test_upscale.py)."""

import os

from esrgan_jax.data.output_names import Clash, first_clash


def test_no_clash(tmp_path):
  assert first_clash([str(tmp_path / "a.png")], [str(tmp_path / "out" / "a.png")]) is None


def test_an_output_onto_an_input_is_found_through_links(tmp_path):
  (tmp_path / "a.png").write_bytes(b"")
  os.symlink(tmp_path, tmp_path / "link")
  paths = [str(tmp_path / "a.png")]
  out = str(tmp_path / "link" / "a.png")
  assert first_clash(paths, [out]) == Clash(True, out, paths[0], paths[0])


def test_two_outputs_in_one_place_name_the_earlier_input(tmp_path):
  paths = [str(tmp_path / "a.jpg"), str(tmp_path / "a.png")]
  outputs = [str(tmp_path / "o" / "a.png")] * 2
  assert first_clash(paths, outputs) == Clash(False, outputs[1], paths[1], paths[0])


def test_the_key_decides_what_clashes(tmp_path):
  paths = [str(tmp_path / "a.jpg"), str(tmp_path / "a.gif")]
  outputs = [str(tmp_path / "o" / "a.jpg"), str(tmp_path / "o" / "a.png")]
  assert first_clash(paths, outputs) is None
  assert first_clash(paths, outputs, key=lambda real: os.path.splitext(real)[0]) == Clash(
      False, outputs[1], paths[1], paths[0])
