"""What an evaluation writes: eval_results.json and pictures, TensorBoard events once per run,
and the comparison captions."""

import json
import os

import numpy as np

from esrgan_jax.evaluation import evaluate, reports


def _results():
  means = {"psnr_y": 30.0, "ssim_y": 0.9, "psnr_rgb": 28.0}
  picture = np.zeros((4, 18, 3), np.uint8)
  return {"one": reports.SetResult(means=means, per_image={"cat": means},
                                   comparisons={"cat": picture}, bicubic_means=means,
                                   bicubic_per_image={"cat": means})}


def _event_files(folder):
  return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
          if name.startswith("events.out.tfevents")]


def test_training_results_leave_tensorboard_to_the_trainers_run(tmp_path):
  """The trainer writes eval/... tags into WORKDIR's run; WORKDIR/eval must not repeat them as a
  second run."""
  reports.write_results(_results(), str(tmp_path), source="training step 3 (EMA)", step=3,
                        lr_sources={"one": "bicubic"})
  assert sorted(os.listdir(tmp_path / "eval")) == ["eval_results.json", "one_cat_comparison.png"]
  assert json.loads((tmp_path / "eval" / "eval_results.json").read_text())["step"] == 3
  assert not _event_files(tmp_path)


def test_eval_mode_results_keep_their_own_run(tmp_path):
  out_dir = reports.results_dir(str(tmp_path)).parent / "eval_mode" / "step_3"
  reports.write(_results(), out_dir, out_dir.parent, source="ckpt", step=3,
                lr_sources={"one": "bicubic"})
  assert [os.path.dirname(f) for f in _event_files(tmp_path)] == [str(out_dir.parent)]


def test_captions_name_psnr_y():
  row = {"psnr_y": 30.634, "ssim_y": 0.9, "psnr_rgb": 28.0}
  baseline = {"psnr_y": 29.991, "ssim_y": 0.8, "psnr_rgb": 27.0}
  # pylint: disable-next=protected-access
  labels = evaluate._labels(row, baseline, evaluate.METRIC_NAMES)
  assert labels == ("LR", "bicubic PSNR-Y 29.99 dB", "SR PSNR-Y 30.63 dB", "HR")
