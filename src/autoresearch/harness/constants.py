"""The workspace's fixed constants, as train.py sees them, and where its prepared data lives.

train.py runs with the workspace as its working directory (or with $AUTORESEARCH_WORKSPACE set by the runner);
the constants are read from that workspace's autoresearch.toml on first use, never from anything train.py can
change at run time.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from autoresearch.paths import (  # noqa: F401  (re-exported: the harness's names for them)
    META_FILE,
    PREPARED_FORMAT,
    dataset_key,
    eval_key,
    find_workspace,
    load_meta,
    raw_dir,
)
from autoresearch.paths import prepared_dir as _prepared_dir
from autoresearch.settings import SETTINGS_FILE, Settings

SETTINGS_ENV = "AUTORESEARCH_SETTINGS"  # the runner hands an experiment its settings (JSON): no workspace access
_launcher_settings = os.environ.pop(SETTINGS_ENV, None)


@cache
def workspace_settings() -> Settings:
    if _launcher_settings:
        return Settings(**json.loads(_launcher_settings))
    return Settings.load(find_workspace() / SETTINGS_FILE)


def prepared_dir(s: Settings | None = None, cache: Path | None = None) -> Path:
    """Tokenizer and tokenized splits for the workspace's dataset, vocabulary size and tokenizer budget."""
    return _prepared_dir(s or workspace_settings(), cache)


def eval_rows(split: str, s: Settings | None = None, directory: Path | None = None) -> int:
    """Rows of `split` that evaluate_bpb scores under these settings (fixed once, at prepare time)."""
    s = s or workspace_settings()
    directory = directory or prepared_dir(s)
    try:
        return int(load_meta(directory)["eval"][eval_key(s)][split]["rows"])
    except KeyError:
        raise FileNotFoundError(
            f"{directory} is not prepared for max_seq_len={s.max_seq_len}, eval_tokens={s.eval_tokens}: "
            "run `autoresearch prepare` in the workspace"
        ) from None


_CONSTANTS = {
    "MAX_SEQ_LEN": lambda s: s.max_seq_len,
    "TIME_BUDGET": lambda s: float(s.time_budget),
    "TOKEN_BUDGET": lambda s: s.token_budget,
    "EVAL_TOKENS": lambda s: s.eval_tokens,
    "VOCAB_SIZE": lambda s: s.vocab_size,
    "DATASET": lambda s: s.dataset,
    "PROFILE": lambda s: s.profile,
}


def __getattr__(name: str):  # PEP 562: constants are read lazily, so importing the harness never needs a workspace
    if name not in _CONSTANTS:
        raise AttributeError(name)
    return _CONSTANTS[name](workspace_settings())
