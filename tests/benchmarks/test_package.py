"""The benchmarks are one package, run as `python -m benchmarks.NAME` from the repository root:
nothing edits the import path, and every file stays one job's size."""

import os

from tests import REPO_ROOT

MAX_LINES = 450
# Spelled in two halves so that this file is not itself a hit.
IMPORT_PATH = "sys." + "path"


def _source_files(*folders):
  for folder in folders:
    for directory, dirs, files in os.walk(os.path.join(REPO_ROOT, folder)):
      dirs[:] = [d for d in dirs if d != "__pycache__"]
      for name in files:
        if name.endswith((".py", ".sh")):
          yield os.path.join(directory, name)


def test_no_benchmark_or_test_edits_the_import_path():
  offenders = []
  for path in _source_files("benchmarks", "tests"):
    with open(path, encoding="utf-8") as f:
      offenders += [f"{os.path.relpath(path, REPO_ROOT)}:{number}"
                    for number, line in enumerate(f, 1) if IMPORT_PATH in line]
  assert not offenders, f"import path edited (import through the packages instead): {offenders}"


def test_no_benchmark_file_exceeds_the_size_limit():
  sizes = {}
  for path in _source_files("benchmarks"):
    with open(path, encoding="utf-8") as f:
      sizes[os.path.relpath(path, REPO_ROOT)] = sum(1 for _ in f)
  too_long = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
  assert not too_long, f"over {MAX_LINES} lines: {too_long}"
