"""A config file whose own code raises (a SyntaxError, a NameError in get_config, a field of the
wrong type or one its config lacks), or that has no get_config or one returning no ConfigDict: one
line naming the file (and line), exit 1, in every command that loads configs (main, plan); it was
ml_collections' traceback or a line without the file (issue #27)."""

import subprocess
import sys

import pytest

from esrgan_jax import cli, plan
from tests import REPO_ROOT

# What the line says after '--config=PATH'.
BROKEN = {
    "syntax": ("def get_config():\n  return dict(\n",
               ", line 2: SyntaxError: '(' was never closed"),
    "name": ("def get_config():\n  return undefined_name\n",
             ", line 2: NameError: name 'undefined_name' is not defined"),
    "no get_config": ("x = 1\n", ": defines no get_config() (a config file's get_config() "
                      "returns its ml_collections.ConfigDict)"),
    "not a ConfigDict": ("def get_config():\n  return 5\n",
                         ": get_config() returned a value of type int, not an "
                         "ml_collections.ConfigDict"),
    "missing field": ("import ml_collections\ndef get_config():\n"
                      "  return ml_collections.ConfigDict({'a': 1}).b\n",
                      ", line 3: no config field 'b'"),
    "wrong type": ("import ml_collections\ndef get_config():\n"
                   "  config = ml_collections.ConfigDict({'a': 1})\n  config.a = 'x'\n"
                   "  return config\n",
                   ", line 4: TypeError: Could not override field 'a' (reference). x is of "
                   "original type <class 'str'> and cannot be casted to type <class 'int'>"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken_config(request, tmp_path, monkeypatch):
  # ml_collections loads every config file as module 'config_config', into the one already in
  # sys.modules if any: an in-process plan would see the previous file's get_config.
  monkeypatch.delitem(sys.modules, "config_config", raising=False)
  text, message = BROKEN[request.param]
  path = tmp_path / "broken.py"
  path.write_text(text)
  return str(path), message


def test_plan_names_the_file_and_line(broken_config, capsys):
  path, message = broken_config
  assert plan.main([f"--config={path}", "--topology=v5e:2x2"]) == cli.EXIT_ERROR
  assert capsys.readouterr().err == f"esrgan_jax: error: --config={path}{message}\n"


def test_main_names_the_file_and_line(broken_config, tmp_path):
  path, message = broken_config
  done = subprocess.run([sys.executable, "-m", "esrgan_jax.main", "--config", path,
                         f"--workdir={tmp_path / 'work'}"], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == cli.EXIT_ERROR
  assert done.stderr == f"esrgan_jax: error: --config={path}{message}\n"
  assert not (tmp_path / "work").exists()


def test_a_variant_after_the_path_is_not_part_of_it():
  error = NameError("name 'x' is not defined")
  assert cli.config_file_error(["main", "--config=configs/x.py:demo"], error) == (
      "--config=configs/x.py: NameError: name 'x' is not defined")
