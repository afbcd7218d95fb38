"""The figures of `python -m esrgan_jax.compare`: perception_distortion.png and crops.png.

perception_distortion: one panel per perceptual metric, every row (bicubic, each model) a labelled
point with its distortion (PSNR-Y) on x and the metric on y, the Pareto front (rows no other row
beats on both axes) as a pale band, the interpolation sweep as a line through its alphas: the ESRGAN
paper's perception-distortion trade-off (Blau and Michaeli's plane).

crops: the same few crops of every row, where the models' outputs disagree most (the largest
variance of their Y channel across models, summed over the crop), beside LR (nearest-neighbour
enlarged, so its pixels show) and HR.

Both are plain matplotlib Figures drawn on the Agg canvas, whatever backend pyplot would pick.
"""

from typing import Optional, Sequence

import numpy as np

from esrgan_jax.metrics import psnr_ssim

DISTORTION = "psnr"
BICUBIC_STYLE = dict(marker="s", color="gray")
SWEEP_COLOUR = "black"


def save(figure, path: str) -> None:
  # pylint: disable-next=import-outside-toplevel
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  FigureCanvasAgg(figure)
  figure.savefig(path)


def pareto_front(xs: Sequence[float], ys: Sequence[float], y_higher_is_better: bool) -> list[int]:
  """Indices of the points no other point beats on both axes (x: higher is better), by x."""
  sign = 1.0 if y_higher_is_better else -1.0
  points = [(x, sign * y) for x, y in zip(xs, ys)]
  front = []
  for i, (x, y) in enumerate(points):
    if np.isnan(x) or np.isnan(y):
      continue
    dominated = any(ox >= x and oy >= y and (ox > x or oy > y)
                    for j, (ox, oy) in enumerate(points) if j != i)
    if not dominated:
      front.append(i)
  return sorted(front, key=lambda i: xs[i])


def perception_distortion_figure(names: Sequence[str], means: Sequence[dict], kinds: Sequence[str],
                                 alphas: Sequence[Optional[float]], panels: Sequence[str],
                                 higher_is_better: dict[str, bool]):
  """A Figure with one panel per metric of `panels` against PSNR-Y.

  names, means, kinds ('bicubic', 'model' or 'sweep'), alphas: one entry per row.
  """
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  figure = Figure(figsize=(6.4 * len(panels), 5.2), dpi=100, layout="constrained")
  xs = [m[DISTORTION] for m in means]
  for k, metric in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), k + 1)
    ys = [m[metric] for m in means]
    front = pareto_front(xs, ys, higher_is_better[metric])
    # A wide pale band under the points: visible where the sweep's line runs along it.
    axes.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="tab:red",
              linewidth=7, alpha=0.25, solid_capstyle="round", label="Pareto front", zorder=1)
    sweep = [i for i, kind in enumerate(kinds) if kind == "sweep"]
    if sweep:
      axes.plot([xs[i] for i in sweep], [ys[i] for i in sweep], "-", color=SWEEP_COLOUR,
                marker=".", markersize=7, linewidth=1, label="interpolation sweep", zorder=2)
      for i in sweep:
        axes.annotate(f"\u03b1={alphas[i]:g}", (xs[i], ys[i]), textcoords="offset points",
                      xytext=(-6, -13), fontsize=9, ha="right", color=SWEEP_COLOUR)
    colour = 0
    for i, kind in enumerate(kinds):
      if kind == "sweep":
        continue
      if kind == "bicubic":
        style = BICUBIC_STYLE
      else:
        style = dict(marker="o", color=f"C{colour % 10}")
        colour += 1
      axes.plot([xs[i]], [ys[i]], linestyle="none", markersize=9, markeredgecolor="black",
                label=names[i], zorder=3, **style)
      axes.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=(6, 5),
                    fontsize=10)
    better = "up" if higher_is_better[metric] else "down"
    axes.set_xlabel("distortion: PSNR-Y (dB) \u2191", fontsize=11)
    arrow = "\u2191" if higher_is_better[metric] else "\u2193"
    axes.set_ylabel(f"{metric.upper()} {arrow}", fontsize=11)
    axes.set_title(f"{metric.upper()} against PSNR-Y (better: right and {better})", fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9, loc="best")
    axes.margins(0.15)
  return figure


def _luma(image: np.ndarray) -> np.ndarray:
  return psnr_ssim.rgb_to_y(image)[..., 0]


def _window_sums(values: np.ndarray, size: int, step: int):
  """(sum over the size x size window, top, left) of windows on a `step` grid."""
  total = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  tops = range(0, values.shape[0] - size + 1, step)
  lefts = range(0, values.shape[1] - size + 1, step)
  return [(total[t + size, l + size] - total[t, l + size] - total[t + size, l] + total[t, l],
           t, l) for t in tops for l in lefts]


def pick_crops(outputs: Sequence[Sequence[np.ndarray]], crop_size: int, count: int,
               scale: int) -> tuple[list[tuple[int, int, int]], int]:
  """([(image index, top, left)], side) of up to `count` non-overlapping HR crops of `crop_size`
  pixels (less on a smaller image; on the `scale` grid, so each is a whole LR crop too) where
  the outputs disagree most.

  outputs[r][i]: row r's output of image i (two rows at least).
  """
  windows = []
  size = min([crop_size] + [min(image.shape[:2]) for image in outputs[0]]) // scale * scale
  for i in range(len(outputs[0]) if size else 0):
    variance = np.var(np.stack([_luma(rows[i]) for rows in outputs]), axis=0)
    step = max(scale, size // 4 // scale * scale)
    windows += [(score, i, top, left, size)
                for score, top, left in _window_sums(variance, size, step)]
  windows.sort(key=lambda w: -w[0])
  chosen = []
  for _, i, top, left, _ in windows:
    if len(chosen) == count:
      break
    if all(i != j or abs(top - t) >= size or abs(left - l) >= size for j, t, l in chosen):
      chosen.append((i, top, left))
  return chosen, size


def crops_figure(image_names: Sequence[str], lrs, hrs, row_names: Sequence[str],
                 outputs: Sequence[Sequence[np.ndarray]], crops, size: int, scale: int):
  """A Figure: one line per crop, LR | each row's output | HR, every panel titled."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  columns = ["LR"] + list(row_names) + ["HR"]
  cell = 2.2
  figure = Figure(figsize=(cell * len(columns), (cell + 0.45) * max(1, len(crops))), dpi=100,
                  layout="constrained")
  grid = figure.subplots(max(1, len(crops)), len(columns), squeeze=False)
  for line, (i, top, left) in enumerate(crops):
    lr = lrs[i][top // scale:(top + size) // scale, left // scale:(left + size) // scale]
    panels = ([np.repeat(np.repeat(lr, scale, 0), scale, 1)]
              + [rows[i][top:top + size, left:left + size] for rows in outputs]
              + [hrs[i][top:top + size, left:left + size]])
    hr_crop = panels[-1]
    for column, (axes, panel, name) in enumerate(zip(grid[line], panels, columns)):
      axes.imshow(panel, interpolation="nearest")
      axes.set_xticks([]), axes.set_yticks([])
      title = name
      if 0 < column < len(columns) - 1:
        title += f"\n{psnr_ssim.psnr(panel, hr_crop, 0, True):.2f} dB"
      axes.set_title(title, fontsize=10)
    grid[line][0].set_ylabel(f"{image_names[i]}\n({left}, {top}) {size}px", fontsize=10)
  figure.suptitle("the crops where the models disagree most (PSNR-Y of each crop)", fontsize=12)
  return figure
