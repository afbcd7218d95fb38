"""A command-line parser's refusal as the tests check it: argparse's usage error (exit status 2)
with the expected words on stderr."""

import pytest


def assert_refused(parse_args, argv, message, capsys):
  """`parse_args(argv)` exits with status 2 and `message` in what it wrote to stderr."""
  with pytest.raises(SystemExit) as exit_:
    parse_args(argv)
  assert exit_.value.code == 2
  assert message in capsys.readouterr().err
