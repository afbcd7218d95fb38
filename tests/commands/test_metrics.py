"""python -m esrgan_jax.metrics on folders: known PSNR, BasicSR's naming, NIQE, JSON, errors."""

import json
import math

import numpy as np
import pytest
import skimage.data
from PIL import Image

from esrgan_jax import metrics
from esrgan_jax.metrics import cli
from tests.random_inception import random_inception_variables


def photo(k):
  return [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()][k][:192, :200]


def with_known_error(image, seed):
  """image +3 or -3 at every pixel (signs fixed by the seed, flipped to stay in range): RGB MSE 9."""
  rng = np.random.default_rng(seed)
  signs = rng.permutation(np.repeat([3, -3], image.size // 2)).reshape(image.shape)
  signs = np.where(image.astype(int) + signs > 255, -3, signs)
  signs = np.where(image.astype(int) + signs < 0, 3, signs)
  return (image.astype(int) + signs).astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
  sr, hr = tmp_path / "sr", tmp_path / "hr"
  sr.mkdir(), hr.mkdir()
  for k, name in enumerate(["a", "b_x", "c"]):
    Image.fromarray(photo(k)).save(hr / f"{name}.png")
    # BasicSR's naming for one file, another extension for another.
    out = {"a": "a_ESRGAN.png", "b_x": "b_x_ESRGAN.png", "c": "c.bmp"}[name]
    Image.fromarray(with_known_error(photo(k), k)).save(sr / out)
  return sr, hr


def test_psnr_of_a_known_error_and_the_json(folders, tmp_path, capsys):
  sr, hr = folders
  out = tmp_path / "out.json"
  assert cli.main(["--sr", str(sr), "--hr", str(hr), "--metrics", "psnr,ssim", "--suffix",
                   "ESRGAN", "--json", str(out)]) == 0
  table = capsys.readouterr().out
  assert "psnr ↑" in table and "ssim ↑" in table and "mean" in table
  result = json.loads(out.read_text())
  assert [r["name"] for r in result["images"]] == ["a", "b_x", "c"]
  expected = 10 * math.log10(255**2 / 9)
  for row in result["images"]:
    assert row["psnr"] == pytest.approx(expected, abs=1e-9)
    hr_image = np.asarray(Image.open(row["hr"]))
    sr_image = np.asarray(Image.open(row["sr"]))
    assert row["ssim"] == pytest.approx(metrics.ssim(sr_image, hr_image, 0, False), abs=1e-12)
  assert result["mean"]["psnr"] == pytest.approx(expected, abs=1e-9)
  assert result["metrics"]["psnr"]["higher_is_better"] is True


def test_niqe_needs_only_sr_and_is_lower_better(folders, tmp_path, capsys):
  sr, _ = folders
  params = tmp_path / "model.npz"
  metrics.save_niqe_params(params, metrics.fit_niqe_params(
      [skimage.data.rocket(), skimage.data.astronaut()], sharpness_threshold=0.0))
  out = tmp_path / "niqe.json"
  assert cli.main(["--sr", str(sr), "--metrics", "niqe", "--niqe_params", str(params),
                   "--crop_border", "4", "--json", str(out)]) == 0
  assert "niqe ↓" in capsys.readouterr().out
  result = json.loads(out.read_text())
  loaded = metrics.load_niqe_params(params)
  for row in result["images"]:
    image = np.asarray(Image.open(row["sr"]).convert("RGB"))
    assert row["niqe"] == metrics.niqe(image, loaded, crop_border=4)
  assert result["metrics"]["niqe"]["higher_is_better"] is False


def run_error(argv, capsys):
  status = cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert status == 1 and len(err.splitlines()) == 1 and err.startswith("esrgan_jax: error: ")
  return err


def test_missing_pair_size_mismatch_and_bad_flags(folders, tmp_path, capsys):
  sr, hr = folders
  Image.fromarray(photo(0)).save(sr / "orphan.png")
  assert "orphan.png: no HR image named 'orphan'" in run_error(
      ["--sr", str(sr), "--hr", str(hr)], capsys)
  (sr / "orphan.png").unlink()
  Image.fromarray(photo(2)[:100]).save(sr / "c.bmp")
  err = run_error(["--sr", str(sr), "--hr", str(hr)], capsys)
  assert "c.bmp is 200x100 but" in err and "c.png is 200x192" in err
  assert "unknown metric 'fd'" in run_error(["--sr", str(sr), "--hr", str(hr), "--metrics",
                                             "psnr,fd"], capsys)
  assert "--niqe_params" in run_error(["--sr", str(sr), "--metrics", "niqe"], capsys)
  assert "missing.npz: NIQE model file does not exist" in run_error(
      ["--sr", str(sr), "--metrics", "niqe", "--niqe_params", str(tmp_path / "missing.npz")],
      capsys)
  assert "needs --hr" in run_error(["--sr", str(sr)], capsys)
  assert "--hr " in run_error(["--sr", str(sr), "--hr", str(tmp_path / "none")], capsys)
  with pytest.raises(SystemExit) as usage:
    cli.main(["--hr", str(hr)])
  assert usage.value.code == 2


def test_lpips_from_a_converted_directory(folders, tmp_path, capsys):
  import jax  # pylint: disable=import-outside-toplevel
  from esrgan_jax.metrics.lpips import LpipsMetric  # pylint: disable=import-outside-toplevel
  from esrgan_jax.weights.lpips import lpips_param_shapes, save_lpips  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda shape: np.abs(rng.normal(0, 0.05, shape)).astype(np.float32),
                        lpips_param_shapes("alex"), is_leaf=lambda x: isinstance(x, tuple))
  save_lpips(tmp_path / "lpips_alex", "alex", params)
  sr, hr = folders
  out = tmp_path / "out.json"
  assert cli.main(["--sr", str(sr), "--hr", str(hr), "--metrics", "lpips", "--suffix", "ESRGAN",
                   "--lpips_weights", str(tmp_path / "lpips_alex"), "--json", str(out)]) == 0
  assert "lpips ↓" in capsys.readouterr().out
  row = json.loads(out.read_text())["images"][0]
  metric = LpipsMetric.from_dir(tmp_path / "lpips_alex")
  expected = metric(np.asarray(Image.open(row["sr"])), np.asarray(Image.open(row["hr"])))
  assert row["lpips"] == pytest.approx(expected, rel=1e-6) and expected > 0


def random_inception_dir(path):
  """Random FID Inception weights (He-normal convs, identity BatchNorm), saved as convert does."""
  from esrgan_jax.weights import inception as inception_weights  # pylint: disable=import-outside-toplevel
  variables = random_inception_variables(0)
  inception_weights.save_inception_variables(path, variables)
  return variables


def test_fid_is_a_set_level_metric_below_the_table(folders, tmp_path, capsys):
  from esrgan_jax.metrics import fid  # pylint: disable=import-outside-toplevel
  sr, hr = folders
  weights = tmp_path / "inception"
  variables = random_inception_dir(weights)
  out = tmp_path / "out.json"
  assert cli.main(["--sr", str(sr), "--hr", str(hr), "--metrics", "psnr,fid", "--suffix",
                   "ESRGAN", "--inception_weights", str(weights), "--fid_crop_size", "64",
                   "--fid_grid", "1", "--is_splits", "1", "--crop_border", "4",
                   "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  table, below = printed.split("set of 3 images:")
  assert "psnr ↑" in table and "mean" in table and "fid" not in table
  assert "fid ↓" in below and "kid ↓" in below and "is ↑" in below and "±" in below
  result = json.loads(out.read_text())
  assert "fid" not in result["mean"] and "fid" not in result["images"][0]
  assert result["metrics"]["fid"] == {"higher_is_better": False, "set_level": True}
  assert result["metrics"]["is"]["higher_is_better"] is True

  metric = fid.FidMetric(variables, crop_size=64, grid=1, is_splits=1)
  for row in result["images"]:
    metric.add(np.asarray(Image.open(row["sr"]))[4:-4, 4:-4],
               np.asarray(Image.open(row["hr"]))[4:-4, 4:-4])
  expected = metric.result()
  assert expected["fid"] > 0
  assert result["set"] == pytest.approx(expected, rel=1e-6)
  for name in ("fid", "kid", "is"):
    assert f"{expected[name]:.4f}" in below

  base = ["--sr", str(sr), "--hr", str(hr), "--metrics", "fid", "--suffix", "ESRGAN"]
  assert "--inception_weights DIR" in run_error(base, capsys)
  assert "none: no such Inception weights" in run_error(
      base + ["--inception_weights", str(tmp_path / "none")], capsys)
  err = run_error(base + ["--inception_weights", str(weights), "--fid_crop_size", "300"], capsys)
  assert "a_ESRGAN.png: fid: FID crops are 300x300" in err
