"""python -m benchmarks.upscale runs end to end on tiny sizes and prints its figures."""

import re

from benchmarks import upscale as benchmark


def test_memory_mode_prints_peak_rss(capsys):
  benchmark.main(["memory", "--size", "48", "--tile", "16"])
  out = capsys.readouterr().out
  assert "exit 0" in out
  peak = float(re.search(r"peak RSS ([0-9.]+) GiB", out).group(1))
  assert peak > 0


def test_throughput_mode_prints_images_per_second(capsys):
  benchmark.main(["throughput", "--count", "3", "--image", "16", "--batch_sizes", "1", "2"])
  rates = re.findall(r"--batch_size (\d+): ([0-9.]+) images/s \(exit 0\)", capsys.readouterr().out)
  assert [size for size, _ in rates] == ["1", "2"] and all(float(r) > 0 for _, r in rates)
