"""python -m esrgan_jax.compare: two tiny models, a sweep and a workdir, checked against the
metrics command on the same outputs; its figures; one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from esrgan_jax import compare
from esrgan_jax import metrics as metrics_lib
from esrgan_jax.metrics import cli as metrics_cli
from esrgan_jax.models.srvgg import SRVGGNetCompact
from esrgan_jax.weights import generator, torch_io
from tests import REPO_ROOT
from tests.tiny_generator import random_params, tiny_generator

FIXTURE_WORKDIR = os.path.join(REPO_ROOT, "tests", "fixtures", "gan_workdir_9ffb7e6")
# NIQE needs two 96x96 blocks inside the 4-pixel border: 104 x 200 leaves 96 x 192.
HR_SIZE = (104, 200)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("compare")
  hr = root / "hr"
  hr.mkdir()
  for name, photo in (("cat", skimage.data.chelsea()), ("cup", skimage.data.coffee())):
    Image.fromarray(photo[:HR_SIZE[0], :HR_SIZE[1]]).save(hr / f"{name}.png")
  for seed in (1, 2):
    model, params = tiny_generator(seed=seed)
    generator.save_generator(root / f"g{seed}", params, generator.arch_of(model))
  # Compact models add their nearest-upscaled input, so even random ones give textured
  # outputs, which NIQE needs (a random RRDBNet's are flat).
  compact = SRVGGNetCompact(num_feat=8, num_conv=2)
  for seed in (1, 2):
    generator.save_generator(root / f"c{seed}", random_params(compact, seed),
                             generator.arch_of(compact))
  niqe = root / "niqe.npz"
  metrics_lib.save_niqe_params(niqe, metrics_lib.fit_niqe_params(
      [skimage.data.rocket(), skimage.data.astronaut()], sharpness_threshold=0.0))
  return root


def run(argv, capsys):
  status = compare.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def metrics_command(sr_dir, hr_dir, tmp_path, niqe, capsys):
  out = tmp_path / f"{os.path.basename(sr_dir)}.json"
  assert metrics_cli.main(["--sr", str(sr_dir), "--hr", str(hr_dir), "--crop_border", "4",
                           "--test_y_channel", "--metrics", "psnr,ssim,niqe", "--niqe_params",
                           str(niqe), "--json", str(out)]) == 0
  capsys.readouterr()
  return json.loads(out.read_text())


def test_two_models_and_a_sweep_equal_the_metrics_command(setup, tmp_path, capsys):
  out = tmp_path / "out"
  status, printed, err = run(
      [setup / "c1", setup / "c2", "-o", out, "--hr", setup / "hr", "--metrics", "niqe",
       "--niqe_params", setup / "niqe.npz", "--interpolate", setup / "c1", setup / "c2",
       "--alphas", "0,0.5,1", "--save_sr", "--crop_size", "32", "--num_crops", "2"], capsys)
  assert status == 0, err
  report = json.loads((out / "report.json").read_text())
  rows = report["models"]
  assert [r["name"] for r in rows] == ["bicubic", "c1", "c2", "alpha=0", "alpha=0.5", "alpha=1"]
  assert rows[1]["checkpoint"] == str(setup / "c1") and rows[1]["arch"] == "srvgg_compact"
  params, _ = generator.load_generator(setup / "c1")
  assert rows[1]["params"] == sum(np.size(x) for x in jax.tree.leaves(params))
  assert rows[0]["params"] is None and rows[4]["alpha"] == 0.5
  for row in rows:
    expected = metrics_command(out / "sr" / row["name"], setup / "hr", tmp_path,
                               setup / "niqe.npz", capsys)
    for image in expected["images"]:
      for metric in ("psnr", "ssim", "niqe"):
        assert row["per_image"][image["name"]][metric] == image[metric], (row["name"], metric)
    for metric in ("psnr", "ssim", "niqe"):
      assert row[metric] == pytest.approx(expected["mean"][metric], rel=1e-12)
    assert row["seconds_per_mp"] > 0
  # The sweep's end points are the models themselves, bit for bit.
  for end, model_row in ((rows[3], rows[1]), (rows[5], rows[2])):
    assert end["per_image"] == model_row["per_image"]
  assert report["directions"] == {"psnr": "↑", "ssim": "↑", "niqe": "↓"}
  table = (out / "report.md").read_text()
  assert "| model | arch | params | psnr ↑ | ssim ↑ | niqe ↓ | s/MP ↓ |" in table
  assert table.count("**") >= 8  # four columns, each with a best value in bold
  assert "psnr ↑" in printed and "alpha=0.5" in printed
  assert (out / "perception_distortion.png").stat().st_size > 10_000
  assert (out / "crops.png").stat().st_size > 10_000
  assert not (out / "curves.png").exists()  # no workdir among the models
  # A second run into the same folder is refused, then allowed with --overwrite.
  status, _, err = run([setup / "c1", "-o", out, "--hr", setup / "hr"], capsys)
  assert status == 1 and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_a_workdir_its_step_and_a_safetensors_file(setup, tmp_path, capsys):
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "gan_run"
  shutil.copytree(FIXTURE_WORKDIR, workdir)
  writer = metric_writers.SummaryWriter(str(workdir))  # as training writes its evaluation
  for step, psnr in ((1, 21.5), (2, 22.25)):
    writer.write_scalars(step, {"eval/bundled/psnr_y": psnr, "eval/bundled/bicubic_psnr_y": 24.0,
                                "eval/bundled/ssim_y": psnr / 30})
  writer.close()
  params, arch = generator.load_generator(setup / "g2")
  weights = tmp_path / "g2.safetensors"
  torch_io.write_state_dict(weights, generator.params_to_torch(params, arch))
  out = tmp_path / "out"
  status, _, err = run([workdir, f"{workdir}@2", weights, "-o", out, "--hr", setup / "hr",
                        "--overwrite"], capsys)
  assert status == 0, err
  rows = json.loads((out / "report.json").read_text())["models"]
  assert [r["name"] for r in rows] == ["bicubic", "gan_run@2", "gan_run@2 (2)", "g2"]
  assert rows[2]["checkpoint"] == f"{workdir}@2" and rows[1]["step"] == 2
  assert rows[1]["per_image"] == rows[2]["per_image"]
  for name in ("report.md", "perception_distortion.png", "crops.png", "curves.png"):
    assert (out / name).is_file(), name


@pytest.mark.parametrize("case, message", [
    ("missing", "MODEL {root}/nothing: neither a training workdir"),
    ("arch", "different architectures: arch rrdbnet vs srvgg_compact"),
    ("lr", "no LR image"),
    ("lr_alone", "--lr {root}/hr needs --hr"),
    ("metric", "--metrics: unknown metric 'sharpness'"),
    ("alpha", "alpha must lie in [0, 1], got 1.5"),
    ("report", "holds the report of an earlier comparison"),
    ("step", "no checkpoint of step 7 (found steps [2])"),
    # An AttributeError traceback before compare checked the sets as training does (issue #27).
    ("eval_sets", "config.data.eval_sets.a must be a dict of hr_dir (and lr_dir), got 5"),
    ("out_unmakeable", "-o {root}/hr/cat.png/out: cannot create the folder (Not a directory)"),
])
def test_bad_input_is_one_line(setup, tmp_path, capsys, case, message):
  root, out = setup, tmp_path / "out"
  base = [root / "g1", "-o", out]
  if case == "lr":
    lr = tmp_path / "lr"
    lr.mkdir()
    Image.fromarray(np.zeros((26, 50, 3), np.uint8)).save(lr / "cat.png")  # cup's is missing
    base += ["--hr", root / "hr", "--lr", lr]
  argv = {
      "missing": [root / "nothing", "-o", out],
      "arch": base + ["--interpolate", root / "g1", root / "c1"],
      "lr": base,
      "lr_alone": base + ["--lr", root / "hr"],
      "metric": base + ["--metrics", "sharpness"],
      "alpha": base + ["--interpolate", root / "g1", root / "g2", "--alphas", "0,1.5"],
      "report": base,
      "step": [f"{FIXTURE_WORKDIR}@7", "-o", out],
      "eval_sets": base + ["--config", tmp_path / "sets.py"],
      "out_unmakeable": [root / "g1", "-o", root / "hr" / "cat.png" / "out", "--hr", root / "hr"],
  }[case]
  if case == "eval_sets":
    (tmp_path / "sets.py").write_text(
        "from configs import esrgan_psnr\ndef get_config():\n"
        "  config = esrgan_psnr.get_config('demo')\n  config.data.eval_sets = {'a': 5}\n"
        "  return config\n")
  if case == "report":
    out.mkdir()
    (out / "report.json").write_text("{}")
  status, _, err = run(argv, capsys)
  lines = err.strip().splitlines()
  assert status == 1 and len(lines) == 1, err
  assert message.format(root=root) in lines[0]


def test_the_eval_sets_of_a_config(setup, tmp_path, capsys):
  out = tmp_path / "out"
  config = os.path.join(REPO_ROOT, "configs", "esrgan_psnr.py") + ":demo"
  status, _, err = run([setup / "c1", "-o", out, "--config", config, "--num_crops", "1"], capsys)
  assert status == 0, err
  report = json.loads((out / "report.json").read_text())
  # The demo config names no eval set: the bundled held-out photos, LR by MATLAB bicubic.
  assert report["settings"]["images"] == ["chelsea", "rocket"]
  assert report["settings"]["lr"] == "bundled: bicubic"
  assert [r["name"] for r in report["models"]] == ["bicubic", "c1"]


def test_a_metric_registered_with_its_flag_reaches_compare(setup, tmp_path, capsys, monkeypatch):
  # How DISTS (or any new metric) arrives: a METRICS entry and its flag in the metrics parser.
  original = metrics_cli._parser  # pylint: disable=protected-access

  def parser():
    extended = original()
    extended.add_argument("--brightness_weight", type=float, default=1.0)
    return extended

  monkeypatch.setattr(metrics_cli, "_parser", parser)
  monkeypatch.setitem(metrics_cli.METRICS, "brightness", metrics_cli.Metric(
      "brightness", False, True,
      lambda args: lambda sr, hr: args.brightness_weight * float(np.mean(sr))))
  out = tmp_path / "out"
  status, printed, err = run([setup / "c1", "-o", out, "--hr", setup / "hr", "--metrics",
                              "brightness", "--brightness_weight", "2", "--save_sr"], capsys)
  assert status == 0, err
  row = json.loads((out / "report.json").read_text())["models"][1]
  for name, values in row["per_image"].items():
    sr = np.asarray(Image.open(out / "sr" / "c1" / f"{name}.png"))
    assert values["brightness"] == 2 * float(np.mean(sr))
  assert "brightness ↓" in printed


def test_importing_compare_prints_no_tensorflow_lines():
  # compare imports the evaluation modules, whose TensorBoard writers import TensorFlow; its
  # start-up notices (the oneDNN one) must stay off a user's console, as main keeps them.
  env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
  done = subprocess.run([sys.executable, "-c", "import sys, esrgan_jax.compare; "
                         "print('tensorflow' in sys.modules)"], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, check=True)
  assert done.stdout.strip() == "True"  # the case the quieting is for
  assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr
