"""docs/design.md matches the code: every module it names exists, every module is named there."""

import os
import re

from tests import REPO_ROOT as ROOT
NOTE = os.path.join(ROOT, "docs", "design.md")


def _modules_on_disk() -> set[str]:
  found = set()
  for package in ("esrgan_jax", "configs"):
    for directory, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py") and name not in ("__init__.py", "__main__.py"):
          found.add(os.path.relpath(os.path.join(directory, name), ROOT))
  return found


def _modules_in_note() -> set[str]:
  with open(NOTE, encoding="utf-8") as f:
    text = f.read()
  return set(re.findall(r"`((?:esrgan_jax|configs)/[\w/]+\.py)`", text))


def test_every_named_module_exists():
  missing = sorted(_modules_in_note() - _modules_on_disk())
  assert not missing, f"docs/design.md names modules that do not exist: {missing}"


def test_every_module_is_in_the_note():
  unnamed = sorted(_modules_on_disk() - _modules_in_note())
  assert not unnamed, f"modules missing from docs/design.md's table: {unnamed}"


def test_no_project_file_points_outside_the_repository():
  offenders = []
  for directory, dirs, files in os.walk(ROOT):
    dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("workdir", "__pycache__")]
    for name in files:
      if name.endswith((".py", ".md", ".sh", ".txt", ".ini")):
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8", errors="replace") as f:
          if "ARCHITECTURE" + ".md" in f.read():
            offenders.append(os.path.relpath(path, ROOT))
  assert not offenders, f"files citing a document outside the repository: {offenders}"
