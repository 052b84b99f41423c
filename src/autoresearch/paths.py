"""Where things live: the workspace around the current directory, and the prepared data of a setting.

Plain functions of Settings and the filesystem, kept out of `autoresearch.harness` so that commands which only
read the journal or the prepared data's meta.json (status, report, dashboard) never import the harness, whose
package imports torch (seconds of start-up). The harness re-exports them for train.py's process.
"""

from __future__ import annotations

import hashlib
import json
import os
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


# The embedded corpus's generator version (data/corpus.py): bump when the generator or its defaults change, so that
# prepared data cached under the old version is not reused. It lives here, not in data/, because the cache key is
# computed in train.py's process too (the harness finds the prepared data), which must load nothing of data/.
CORPUS_VERSION = 1


def dataset_key(s: Settings) -> str:
    """A directory name that identifies the raw data a setting produces (not the tokenizer)."""
    if s.dataset == "embedded":
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
# 3: the embedded corpus's val and test streams are salted with a secret only prepare and the scorer read
#    (heldout.salt): train.py can no longer regenerate them from the workspace's seed.
PREPARED_FORMAT = 3


def prepared_dir(s: Settings, cache: Path | None = None) -> Path:
    """Tokenizer and tokenized splits for a dataset, vocabulary size and tokenizer budget."""
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


# -- an agent's checkout: links it may have made, to have our unconfined process read or write elsewhere ----------

def through_link(root: Path, name: str) -> bool:
    """`name` (a path under `root`), or a directory on its way there, is a symbolic link, or it leads outside."""
    rel = Path(name)
    if any((Path(root) / q).is_symlink() for q in (rel, *rel.parents) if q != Path(".")):
        return True
    path = Path(root) / name
    return path.exists() and not path.resolve().is_relative_to(Path(root).resolve())


def restore_file(root: Path, name: str, original: bytes) -> None:
    """Put `name` of `root` back as `original`, never through a link: a link of the file is removed first, a file
    under a linked directory is left (the loop restores the checkout from git). Errors are ignored."""
    path = Path(root) / name
    try:
        if path.is_symlink():
            path.unlink()
        if not through_link(root, name) and (not path.exists() or path.read_bytes() != original):
            path.write_bytes(original)
    except (OSError, ValueError):
        pass
