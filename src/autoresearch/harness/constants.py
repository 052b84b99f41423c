"""The workspace's fixed constants, as train.py sees them, and where its prepared data lives.

train.py runs with the workspace as its working directory (or with $AUTORESEARCH_WORKSPACE set by the runner);
the constants are read from that workspace's autoresearch.toml on first use, never from anything train.py can
change at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

from autoresearch.settings import (
    SETTINGS_FILE,
    WORKSPACE_ENV,
    Settings,
    SettingsError,
    cache_dir,
    default_tokenizer_chars,
)


def find_workspace(start: Path | None = None) -> Path:
    """$AUTORESEARCH_WORKSPACE, else the nearest directory upwards from `start` (or cwd) with autoresearch.toml."""
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / SETTINGS_FILE).exists():
            raise SettingsError(f"${WORKSPACE_ENV}={env} has no {SETTINGS_FILE}; unset it or point it at a workspace")
        return root
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / SETTINGS_FILE).exists():
            return d
    raise SettingsError(
        f"not inside an autoresearch workspace (no {SETTINGS_FILE} in {here} or its parents); "
        "create one with `autoresearch init DIR` and run from there"
    )


SETTINGS_ENV = "AUTORESEARCH_SETTINGS"  # the runner hands an experiment its settings (JSON): no workspace access
_launcher_settings = os.environ.pop(SETTINGS_ENV, None)


@cache
def workspace_settings() -> Settings:
    if _launcher_settings:
        return Settings(**json.loads(_launcher_settings))
    return Settings.load(find_workspace() / SETTINGS_FILE)


def dataset_key(s: Settings) -> str:
    """A directory name that identifies the raw data a setting produces (not the tokenizer)."""
    if s.dataset == "embedded":
        from autoresearch.data.corpus import CORPUS_VERSION

        return f"embedded{CORPUS_VERSION}-s{s.seed}-{s.embedded_train_mb:g}mb"
    if s.dataset in ("climbmix", "tinystories"):
        return s.dataset  # shards are shared: preparing with more training shards downloads only the new ones
    # A local path or glob: name it by its resolved spelling so two corpora never share a directory.
    spec = str(Path(s.dataset).expanduser().resolve()) if not any(c in s.dataset for c in "*?[") else s.dataset
    digest = hashlib.blake2b(spec.encode(), digest_size=6).hexdigest()
    return f"local-{Path(spec).name or 'corpus'}-{digest}"


def raw_dir(s: Settings, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "raw" / dataset_key(s)


# Bump when what prepare writes changes meaning, so that older prepared directories are rebuilt, not reused.
# 2: climbmix as the original (tokenizer budget and special tokens, whole val shard, test shard 06541),
#    refills of 128 documents in the packing (eval windows and entropy floors move), row groups stored.
PREPARED_FORMAT = 2


def prepared_dir(s: Settings | None = None, cache: Path | None = None) -> Path:
    """Tokenizer and tokenized splits for the workspace's dataset, vocabulary size and tokenizer budget."""
    s = s or workspace_settings()
    shards = f"-{s.train_shards}sh" if s.dataset == "climbmix" else ""
    chars = "" if s.tokenizer_train_chars == default_tokenizer_chars(s.dataset) else f"-c{s.tokenizer_train_chars}"
    name = f"{dataset_key(s)}{shards}-v{s.vocab_size}{chars}-p{PREPARED_FORMAT}"
    return (cache or cache_dir()) / "prepared" / name


META_FILE = "meta.json"


def eval_key(s: Settings) -> str:
    return f"T{s.max_seq_len}-E{s.eval_tokens}"


def load_meta(directory: Path) -> dict:
    path = directory / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


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
