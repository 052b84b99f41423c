"""What every command shares: the options that name a place, and known failures turned into one clear line."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from autoresearch.settings import CACHE_ENV, SETTINGS_FILE, WORKSPACE_ENV, SettingsError, cache_dir


def friendly_errors(fn):
    """Known failures become one clear line and exit code 1; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from autoresearch.data.sources import DataError
        from autoresearch.vcs import VcsError
        from autoresearch.workspace import WorkspaceError

        try:
            return fn(*args, **kwargs)
        except (SettingsError, WorkspaceError, DataError, VcsError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper


workspace_option = click.option(
    "--workspace", "-w", type=click.Path(file_okay=False, path_type=Path), envvar=WORKSPACE_ENV,
    help=f"Workspace directory (default: the current directory or a parent with {SETTINGS_FILE}). "
    f"Env: {WORKSPACE_ENV}.")
cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_ENV,
    help=f"Where datasets and prepared tokens live (default ~/.cache/autoresearch). Env: {CACHE_ENV}.")



def workspace_root(workspace: Path | None) -> Path:
    from autoresearch.paths import find_workspace

    if workspace is not None:
        root = workspace.expanduser().resolve()
        if not (root / SETTINGS_FILE).exists():
            raise SettingsError(f"{root} is not a workspace (no {SETTINGS_FILE}); create one with `autoresearch init`")
        return root
    return find_workspace()


def resolved_cache(flag: Path | None) -> Path:
    return cache_dir(flag).resolve()


def secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}s"

