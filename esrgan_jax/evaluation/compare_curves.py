"""curves.png of `python -m esrgan_jax.compare`: each training workdir's periodic evaluation against
step, read from its TensorBoard event files, so a user sees where a GAN run went wrong.

Training writes `eval/<set>/<metric>` and `eval/<set>/bicubic_<metric>` scalars into the event
files at the workdir's top level (training/train.py); eval mode's own go to WORKDIR/eval_mode
and are not read. The files are TFRecords of `Event` protos, read here directly with
TensorBoard's proto classes: TensorBoard's EventAccumulator imports TensorFlow when it is
installed, tens of seconds for a few numbers.
"""

import os
import struct
from typing import Optional, Sequence

import numpy as np

EVAL_PREFIX = "eval/"
BICUBIC_PREFIX = "bicubic_"
# TensorProto dtypes of the scalars clu and tf.summary write.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


def _records(path: str):
  """The payloads of a TFRecord file; a truncated last record (a run still writing) ends it."""
  with open(path, "rb") as f:
    while True:
      header = f.read(12)  # uint64 length, uint32 masked CRC of it
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:  # the data's CRC follows it
        return
      yield data


def _scalar(value) -> Optional[float]:
  """The number of one Summary.Value: tf.summary's v2 tensor or v1 simple_value."""
  if value.HasField("tensor"):
    tensor = value.tensor
    if tensor.tensor_content and tensor.dtype in _DTYPES:
      return float(np.frombuffer(tensor.tensor_content, _DTYPES[tensor.dtype]).reshape(-1)[0])
    for values in (tensor.float_val, tensor.double_val, tensor.int_val, tensor.int64_val):
      if len(values) == 1:
        return float(values[0])
    return None
  if value.HasField("simple_value"):
    return float(value.simple_value)
  return None


def event_files(workdir: str) -> list[str]:
  return sorted(os.path.join(workdir, n) for n in os.listdir(workdir)
                if n.startswith("events.out.tfevents.")
                and os.path.isfile(os.path.join(workdir, n)))


def read_eval_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value)] sorted by step, of every `eval/...` scalar in the workdir's event
  files; a step written twice (a resumed run) keeps its last value."""
  from tensorboard.compat.proto import event_pb2  # Only the curves need protobuf's classes.
  found: dict[str, dict[int, float]] = {}
  for path in event_files(workdir):
    for record in _records(path):
      event = event_pb2.Event.FromString(record)
      for value in event.summary.value:
        if value.tag.startswith(EVAL_PREFIX):
          number = _scalar(value)
          if number is not None:
            found.setdefault(value.tag, {})[int(event.step)] = number
  return {tag: sorted(points.items()) for tag, points in found.items()}


def metric_panels(curves: Sequence[dict]) -> list[tuple[str, str]]:
  """(set, metric) of every model metric found, in first-seen order; spreads left out."""
  panels = []
  for tags in curves:
    for tag in tags:
      _, set_name, metric = tag.split("/", 2)
      if not metric.startswith(BICUBIC_PREFIX) and not metric.endswith("_std"):
        if (set_name, metric) not in panels:
          panels.append((set_name, metric))
  return panels


def curves_figure(runs: Sequence[tuple[str, dict, Optional[int]]], directions: dict[str, str]):
  """A matplotlib Figure with one panel per (eval set, metric): each run's values against step
  (marked at the step that was compared) and its bicubic baseline dashed.

  `runs`: (label, read_eval_scalars(...), compared step); `directions`: metric -> arrow.
  """
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  panels = metric_panels([tags for _, tags, _ in runs])
  columns = min(3, max(1, len(panels)))
  rows = max(1, -(-len(panels) // columns))
  figure = Figure(figsize=(5.2 * columns, 3.6 * rows), dpi=100, layout="constrained")
  colours = [f"C{k % 10}" for k in range(len(runs))]
  for k, (set_name, metric) in enumerate(panels):
    axes = figure.add_subplot(rows, columns, k + 1)
    baseline_drawn = False
    for (label, tags, compared), colour in zip(runs, colours):
      points = tags.get(f"{EVAL_PREFIX}{set_name}/{metric}")
      if not points:
        continue
      steps, values = zip(*points)
      axes.plot(steps, values, "-o", color=colour, markersize=3, label=label)
      if compared in steps:
        axes.plot([compared], [values[steps.index(compared)]], "*", color=colour,
                  markersize=12, markeredgecolor="black")
      baseline = tags.get(f"{EVAL_PREFIX}{set_name}/{BICUBIC_PREFIX}{metric}")
      if baseline and not baseline_drawn:
        axes.axhline(baseline[-1][1], color="gray", linestyle="--", linewidth=1,
                     label="bicubic")
        baseline_drawn = True
    arrow = directions.get(metric, "")
    axes.set_title(f"{set_name}: {metric} {arrow}".rstrip(), fontsize=11)
    axes.set_xlabel("training step", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
  if not panels:
    axes = figure.add_subplot(1, 1, 1)
    axes.text(0.5, 0.5, "no periodic evaluation in the workdirs' event files",
              ha="center", va="center", fontsize=11)
    axes.set_axis_off()
  figure.suptitle("periodic evaluation during training (\u2605: the step compared)",
                  fontsize=12)
  return figure
