"""compare's figures and report pieces: their panels, the Pareto front, where crops are picked,
the best-value marks, and event files read back."""

import numpy as np

from esrgan_jax.evaluation import compare_curves, compare_plots, compare_report
from esrgan_jax.evaluation.compare_models import Candidate, Result


def test_pareto_front_keeps_the_points_nothing_beats():
  psnr = [30.0, 28.0, 26.0, 27.0, 25.0]
  niqe = [7.0, 5.0, 3.0, 6.0, 3.5]  # lower is better: (27, 6) and (25, 3.5) are beaten
  assert compare_plots.pareto_front(psnr, niqe, y_higher_is_better=False) == [2, 1, 0]
  assert compare_plots.pareto_front(psnr, niqe, y_higher_is_better=True) == [0]


def test_perception_distortion_has_one_panel_per_metric():
  means = [{"psnr": 30.0, "niqe": 7.0, "lpips": 0.3}, {"psnr": 28.0, "niqe": 5.0, "lpips": 0.2},
           {"psnr": 29.0, "niqe": 6.0, "lpips": 0.25}, {"psnr": 27.0, "niqe": 4.0, "lpips": 0.1}]
  figure = compare_plots.perception_distortion_figure(
      ["bicubic", "psnr", "alpha=0.5", "alpha=1"], means, ["bicubic", "model", "sweep", "sweep"],
      [None, None, 0.5, 1.0], ["niqe", "lpips"], {"niqe": False, "lpips": False})
  assert len(figure.axes) == 2
  assert [a.get_ylabel() for a in figure.axes] == ["NIQE \u2193", "LPIPS \u2193"]
  labels = [t.get_text() for t in figure.axes[0].texts]
  assert labels == ["\u03b1=0.5", "\u03b1=1", "bicubic", "psnr"]


def test_crops_are_where_the_outputs_differ_and_each_row_is_shown():
  rng = np.random.default_rng(0)
  hr = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
  first = [h.copy() for h in hr]
  second = [h.copy() for h in hr]
  second[1][32:48, 60:76] = 255 - second[1][32:48, 60:76]  # they differ only here
  crops, size = compare_plots.pick_crops([first, second], crop_size=16, count=1, scale=4)
  assert (crops, size) == ([(1, 32, 60)], 16)
  lr = [h[::4, ::4] for h in hr]
  figure = compare_plots.crops_figure(["a", "b"], lr, hr, ["one", "two"], [first, second],
                                      crops, size, scale=4)
  assert len(figure.axes) == 1 * (2 + 2)
  assert [a.get_title().split("\n")[0] for a in figure.axes] == ["LR", "one", "two", "HR"]


def test_best_values_are_marked_by_direction():
  rows = [Result(Candidate(name, name, None), {"psnr": psnr, "niqe": niqe}, {}, speed, [])
          for name, psnr, niqe, speed in (("a", 30.0, 6.0, 2.0), ("b", 28.0, 4.0, 1.0))]
  directions = {"psnr": True, "niqe": False}
  assert compare_report.best_rows(rows, directions) == {"psnr": {0}, "niqe": {1},
                                                        "seconds_per_mp": {1}}
  table = compare_report.markdown(rows, directions)
  assert "| a | bicubic | - | **30.0000** | 6.0000 | 2.000 |" in table
  assert "| b | bicubic | - | 28.0000 | **4.0000** | **1.000** |" in table


def test_event_files_are_read_back_and_drawn(tmp_path):
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  writer = metric_writers.SummaryWriter(str(tmp_path))  # as training writes them
  for step in (10, 20, 30):
    writer.write_scalars(step, {"eval/set5/psnr_y": 20.0 + step / 10, "train/l_pix": 0.5,
                                "eval/set5/bicubic_psnr_y": 22.0,
                                "eval/set5/niqe": 9.0 - step / 10})
  writer.close()
  scalars = compare_curves.read_eval_scalars(str(tmp_path))
  assert scalars["eval/set5/psnr_y"] == [(10, 21.0), (20, 22.0), (30, 23.0)]
  assert "train/l_pix" not in scalars
  assert compare_curves.metric_panels([scalars]) == [("set5", "psnr_y"), ("set5", "niqe")]
  figure = compare_curves.curves_figure([("run@20", scalars, 20)], {"psnr_y": "\u2191"})
  assert [a.get_title() for a in figure.axes] == ["set5: psnr_y \u2191", "set5: niqe"]
