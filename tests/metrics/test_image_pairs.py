"""metrics/image_pairs.py's PairMetric: what LPIPS and DISTS share past their inputs (weights
loaded from their folder onto the first local device, one value per call), and evaluation's one
load per weights folder."""

import jax
import numpy as np

from esrgan_jax.evaluation import evaluate
from esrgan_jax.metrics import image_pairs
from esrgan_jax.metrics.dists import DistsMetric
from esrgan_jax.metrics.lpips import LpipsMetric


class _Mean(image_pairs.PairMetric):
  """A stand-in metric: the folder's name is its offset; the distance a mean difference."""

  loaded = []
  load_dir = staticmethod(lambda path: _Mean.loaded.append(path) or ("module", np.float32(path)))
  distance = staticmethod(lambda module, params, sr, hr: np.array(
      [np.mean(sr) - np.mean(hr) + params, -1.0]))


def test_a_pair_metric_loads_its_folder_and_gives_the_first_value():
  metric = _Mean.from_dir(2.0)
  assert metric.module == "module"
  assert metric.params.devices() == {jax.local_devices()[0]}
  assert metric(np.full((4, 4, 3), 3.0), np.ones((4, 4, 3))) == 4.0


def test_lpips_and_dists_are_pair_metrics():
  for metric in (LpipsMetric, DistsMetric):
    assert issubclass(metric, image_pairs.PairMetric) and metric.load_dir and metric.distance


def test_evaluation_loads_a_folder_once_per_metric():
  _Mean.loaded.clear()
  first = evaluate._pair_metric(_Mean, 1.0)  # pylint: disable=protected-access
  assert evaluate._pair_metric(_Mean, 1.0) is first  # pylint: disable=protected-access
  assert evaluate._pair_metric(_Mean, 5.0) is not first  # pylint: disable=protected-access
  assert _Mean.loaded == [1.0, 5.0]
