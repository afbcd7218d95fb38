"""metrics: says where its JSON went, refuses grayscale against colour (issue #27)."""

import numpy as np
import pytest
from PIL import Image

from esrgan_jax.metrics import cli


def _save(path, mode):
  path.parent.mkdir(exist_ok=True)
  pixels = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
  image = Image.fromarray(pixels)
  (image.convert("L") if mode == "L" else image).save(path)


def test_json_says_it_was_written(tmp_path, capsys):
  _save(tmp_path / "sr" / "a.png", "RGB")
  _save(tmp_path / "hr" / "a.png", "RGB")
  out = tmp_path / "scores.json"
  assert cli.main(["--sr", str(tmp_path / "sr"), "--hr", str(tmp_path / "hr"), "--json",
                   str(out)]) == 0
  assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"
  assert out.exists()


@pytest.mark.parametrize("sr_mode, hr_mode", [("L", "RGB"), ("RGB", "L")])
def test_grayscale_against_colour_is_refused_naming_both(tmp_path, capsys, sr_mode, hr_mode):
  _save(tmp_path / "sr" / "a.png", sr_mode)
  _save(tmp_path / "hr" / "a.png", hr_mode)
  status = cli.main(["--sr", str(tmp_path / "sr"), "--hr", str(tmp_path / "hr")])
  err = capsys.readouterr().err
  kinds = {"L": "grayscale", "RGB": "colour"}
  assert status == 1
  assert err == (f"esrgan_jax: error: {tmp_path / 'sr' / 'a.png'} is {kinds[sr_mode]} but "
                 f"{tmp_path / 'hr' / 'a.png'} is {kinds[hr_mode]}; scores would measure the "
                 "colour, not the SR: convert one to match\n")


def test_grayscale_against_grayscale_is_scored(tmp_path, capsys):
  _save(tmp_path / "sr" / "a.png", "L")
  _save(tmp_path / "hr" / "a.png", "L")
  assert cli.main(["--sr", str(tmp_path / "sr"), "--hr", str(tmp_path / "hr")]) == 0
  assert "inf" in capsys.readouterr().out


@pytest.mark.parametrize("where, reason", [
    ("afile/scores.json", "afile is not a folder"), ("missing/scores.json", "missing is not a "
                                                     "folder"), (".", "Is a directory")])
def test_json_that_cannot_be_written_is_refused_before_the_scores(tmp_path, capsys, monkeypatch,
                                                                  where, reason):
  """Found only after every score (FID can take long) before; the scores were lost."""
  monkeypatch.chdir(tmp_path)
  (tmp_path / "afile").write_text("a file")
  _save(tmp_path / "sr" / "a.png", "RGB")
  _save(tmp_path / "hr" / "a.png", "RGB")
  monkeypatch.setattr(cli, "match_pairs", lambda *args: pytest.fail("scored before the check"))
  assert cli.main(["--sr", "sr", "--hr", "hr", "--json", where]) == 1
  assert capsys.readouterr().err == f"esrgan_jax: error: --json {where}: cannot write ({reason})\n"
