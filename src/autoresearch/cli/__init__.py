"""The `autoresearch` command line: a package of commands, one module per family. The only place that turns
errors into messages and exit codes (common.friendly_errors)."""

from __future__ import annotations

import click

from autoresearch.cli.run import run
from autoresearch.cli.see import dashboard, report, status
from autoresearch.cli.setup import init, prepare
from autoresearch.cli.studies import ablate, transfer
from autoresearch.cli.track import track
from autoresearch.cli.train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autoresearch")
def cli() -> None:
    """autoresearch: an agent edits train.py, a fixed harness measures val_bpb, git keeps what helps."""


for command in (init, prepare, train, run, status, report, dashboard, ablate, transfer, track):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="autoresearch")
