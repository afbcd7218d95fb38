"""benchmarks/upscale.py runs end to end on tiny sizes and prints its figures."""

import importlib.util
import os
import re

from tests import REPO_ROOT


def _benchmark():
  spec = importlib.util.spec_from_file_location(
      "upscale_benchmark", os.path.join(REPO_ROOT, "benchmarks", "upscale.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_memory_mode_prints_peak_rss(capsys):
  _benchmark().main(["memory", "--size", "48", "--tile", "16"])
  out = capsys.readouterr().out
  assert "exit 0" in out
  peak = float(re.search(r"peak RSS ([0-9.]+) GiB", out).group(1))
  assert peak > 0


def test_throughput_mode_prints_images_per_second(capsys):
  _benchmark().main(["throughput", "--count", "3", "--image", "16", "--batch_sizes", "1", "2"])
  rates = re.findall(r"--batch_size (\d+): ([0-9.]+) images/s \(exit 0\)", capsys.readouterr().out)
  assert [size for size, _ in rates] == ["1", "2"] and all(float(r) > 0 for _, r in rates)
