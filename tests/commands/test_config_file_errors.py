"""A config file whose own code raises (a SyntaxError, a NameError in get_config): one line
naming the file and line, exit 1, in every command that loads configs (main, plan); it was
ml_collections' traceback (issue #27)."""

import subprocess
import sys

import pytest

from esrgan_jax import cli, plan
from tests import REPO_ROOT

BROKEN = {
    "syntax": ("def get_config():\n  return dict(\n", "line 2: SyntaxError: '(' was never closed"),
    "name": ("def get_config():\n  return undefined_name\n",
             "line 2: NameError: name 'undefined_name' is not defined"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken_config(request, tmp_path):
  text, message = BROKEN[request.param]
  path = tmp_path / "broken.py"
  path.write_text(text)
  return str(path), message


def test_plan_names_the_file_and_line(broken_config, capsys):
  path, message = broken_config
  assert plan.main([f"--config={path}", "--topology=v5e:2x2"]) == cli.EXIT_ERROR
  assert capsys.readouterr().err == f"esrgan_jax: error: --config={path}, {message}\n"


def test_main_names_the_file_and_line(broken_config, tmp_path):
  path, message = broken_config
  done = subprocess.run([sys.executable, "-m", "esrgan_jax.main", "--config", path,
                         f"--workdir={tmp_path / 'work'}"], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == cli.EXIT_ERROR
  assert done.stderr == f"esrgan_jax: error: --config={path}, {message}\n"
  assert not (tmp_path / "work").exists()


def test_a_variant_after_the_path_is_not_part_of_it():
  error = NameError("name 'x' is not defined")
  assert cli.config_file_error(["main", "--config=configs/x.py:demo"], error) == (
      "--config=configs/x.py: NameError: name 'x' is not defined")
