"""Every command is documented, and docs/cli.md matches the --help texts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gencli.cli.main import cli

REPO = Path(__file__).resolve().parent.parent


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "make_cli_reference", REPO / "docs" / "make_cli_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    expected = _reference_module().render()
    assert (REPO / "docs" / "cli.md").read_text() == expected, (
        "docs/cli.md is stale: run python docs/make_cli_reference.py"
    )


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_a_summary_and_examples(name: str) -> None:
    command = cli.commands[name]
    assert isinstance(command, click.Command)
    text = CliRunner().invoke(cli, [name, "-h"]).output
    assert command.help and "Examples:" in text
    for option in command.params:
        if isinstance(option, click.Option) and not option.hidden:
            assert option.help, f"gencli {name} {option.opts[0]} has no help text"
