"""The fixed settings of a research run: profiles and `autoresearch.toml`.

A profile bundles everything that depends on the hardware: the harness constants (sequence length, vocabulary,
time budget, evaluation size) and the starting values `init` writes into train.py's CAPS constants. Once a
workspace exists, its `autoresearch.toml` is the single source of truth; the profile is only where it came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SETTINGS_FILE = "autoresearch.toml"
TOKEN_MODE_CAP = 10  # under a token budget, training stops at this many time budgets anyway
WORKSPACE_ENV = "AUTORESEARCH_WORKSPACE"
CACHE_ENV = "AUTORESEARCH_CACHE"
TOKENIZER_CHARS_DEFAULT = {"climbmix": 1_000_000_000}  # the original's text_iterator(max_chars=1_000_000_000)


class SettingsError(Exception):
    """A settings file or value is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    max_seq_len: int
    vocab_size: int
    time_budget: float  # seconds of training per experiment
    eval_tokens: int
    embedded_train_mb: float  # size of the generated training split of the embedded corpus
    train_constants: dict[str, Any] = field(default_factory=dict)  # CAPS constants init writes into train.py


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            name="cuda",
            description="one datacenter GPU (H100-class): the original autoresearch settings",
            max_seq_len=2048,
            vocab_size=8192,
            time_budget=300.0,
            eval_tokens=40 * 524288,
            embedded_train_mb=1024.0,
            train_constants={"DEPTH": 8, "ASPECT_RATIO": 64, "HEAD_DIM": 128, "DEVICE_BATCH_SIZE": 128,
                             "TOTAL_BATCH_SIZE": 2**19, "WINDOW_PATTERN": "SSSL"},
        ),
        Profile(
            name="cuda-small",
            description="a consumer GPU with 8-24 GB (RTX 3060..4090)",
            max_seq_len=1024,
            vocab_size=8192,
            time_budget=300.0,
            eval_tokens=8 * 524288,
            embedded_train_mb=256.0,
            train_constants={"DEPTH": 6, "ASPECT_RATIO": 64, "HEAD_DIM": 64, "DEVICE_BATCH_SIZE": 32,
                             "TOTAL_BATCH_SIZE": 2**16, "WINDOW_PATTERN": "SSSL"},
        ),
        Profile(
            name="mps",
            description="an Apple-silicon Mac (Metal)",
            max_seq_len=512,
            vocab_size=4096,
            time_budget=300.0,
            eval_tokens=2 * 524288,
            embedded_train_mb=64.0,
            train_constants={"DEPTH": 4, "ASPECT_RATIO": 64, "HEAD_DIM": 64, "DEVICE_BATCH_SIZE": 16,
                             "TOTAL_BATCH_SIZE": 2**14, "WINDOW_PATTERN": "SL"},
        ),
        Profile(
            name="cpu",
            description="a laptop or CI machine without a GPU (2+ cores)",
            max_seq_len=256,
            vocab_size=2048,
            time_budget=300.0,
            # 64 rows of 256: 4 scoring calls per split. Evaluation (val, probe, re-score, and test when the loop
            # wants it) then stays near 10% of the demo's 45 s budget on 2 cores (bench/RESULTS.md). The figure's
            # sampling error on this corpus is ~0.02 bpb absolute, but experiments are compared on the same rows:
            # the error of a difference between two similar models is under 0.001 bpb, far below seed noise.
            eval_tokens=2**14,
            embedded_train_mb=24.0,
            train_constants={"DEPTH": 2, "ASPECT_RATIO": 64, "HEAD_DIM": 32, "DEVICE_BATCH_SIZE": 16,
                             "TOTAL_BATCH_SIZE": 2**12, "WINDOW_PATTERN": "SL",
                             "EMBEDDING_LR": 0.2, "MATRIX_LR": 0.03, "WARMDOWN_RATIO": 0.4},
        ),
    ]
}


def default_tokenizer_chars(dataset: str) -> int:
    return TOKENIZER_CHARS_DEFAULT.get(dataset, 100_000_000)


def detect_profile() -> str:
    """The profile for this machine's hardware: cuda (big or small GPU), mps, else cpu."""
    import torch

    if torch.cuda.is_available():
        total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
        return "cuda" if total_gb >= 40 else "cuda-small"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class Settings:
    """Contents of autoresearch.toml: the fixed settings every experiment of this workspace is measured under."""

    profile: str
    dataset: str = "embedded"
    time_budget: float = 300.0
    token_budget: int = 0  # training tokens per experiment (0 = none: the time budget alone ends training)
    max_seq_len: int = 2048
    eval_tokens: int = 40 * 524288
    vocab_size: int = 8192
    train_shards: int = 10  # hub datasets: training shards to download
    tokenizer_chars: int = 0  # characters the BPE tokenizer trains on (0 = the dataset's default, see below)
    embedded_train_mb: float = 24.0  # embedded corpus: size of the training split
    seed: int = 0  # embedded corpus: generator seed
    time_allowance: float = 0.0  # training seconds allowed past the budget, clocked from outside (0 = auto)
    startup_limit: float = 0.0  # seconds from launch to the first training batch: imports, data, model (0 = auto)
    warmup_limit: float = 0.0  # seconds from the first batch to timed training: compilation (0 = auto)
    memory_limit_mb: int = 0  # resident memory of an experiment's processes (0 = auto: 75% of this machine's)
    sandbox: bool = True  # no network, filesystem confined to the run directory (where the OS allows)
    allowed_imports: tuple[str, ...] = ()  # modules train.py may import beyond torch, numpy and the stdlib basics

    @property
    def tokenizer_train_chars(self) -> int:
        """The tokenizer's training budget: as the original for climbmix (1e9 characters), 1e8 elsewhere (plenty
        for vocabularies up to ~32k). A small machine can lower it; the tokenizer, and so val_bpb, change a little."""
        return self.tokenizer_chars or default_tokenizer_chars(self.dataset)

    @property
    def allowance(self) -> float:
        """Timed training starts after the first optimizer step (compilation is behind it); this covers the last
        step running over the budget, and compilation a run triggers later."""
        return self.time_allowance or 10.0 + 0.05 * self.time_budget

    @property
    def budget_label(self) -> str:
        """What ends training, for people: '163,840 tokens' or '45s'."""
        return f"{self.token_budget:,} tokens" if self.token_budget else f"{self.time_budget:g}s"

    @property
    def training_limit(self) -> float:
        """Seconds of timed training before the runner stops a run. Under a token budget the tokens end training
        and the time budget is only a cap against runaway compute: ten times it, so that a busy machine (seen
        here: steps three to thirty times slower on 2 oversubscribed cores) does not kill an honest run."""
        cap = TOKEN_MODE_CAP * self.time_budget if self.token_budget else self.time_budget
        return cap + self.allowance

    @property
    def startup_seconds(self) -> float:
        """Launch to the first training batch: imports, tokenizer, building the model. Generous, because a busy
        machine is slow, and nothing can train without a batch."""
        return self.startup_limit or max(600.0, 2 * self.time_budget)

    @property
    def warmup_tokens(self) -> int:
        """Training tokens served before the clock starts anyway, whatever train.py does: four optimizer steps of
        the profile's starting batch (the template serves one or two steps' worth before its first step returns).
        A cap in tokens, not batches, since train.py picks the batch size."""
        return 4 * int(PROFILES[self.profile].train_constants.get("TOTAL_BATCH_SIZE", 2**19)
                       if self.profile in PROFILES else 2**19)

    @property
    def warmup_seconds(self) -> float:
        """First training batch to timed training, at most: the first forward/backward and optimizer step compile
        here, untimed (a cold compile of the cuda profile's model, flex attention and Muon's shapes can take
        minutes). Past it the clock starts anyway (the run is not stopped), so a run cannot train for free on its
        first batches for longer than that."""
        return self.warmup_limit or max(300.0, self.time_budget)

    @property
    def memory_limit(self) -> int:
        if self.memory_limit_mb:
            return self.memory_limit_mb
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 0
        return int(0.75 * total / 2**20)

    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> Settings:
        if profile not in PROFILES:
            raise SettingsError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
        p = PROFILES[profile]
        base = cls(profile=p.name, time_budget=p.time_budget, max_seq_len=p.max_seq_len,
                   eval_tokens=p.eval_tokens, vocab_size=p.vocab_size, embedded_train_mb=p.embedded_train_mb)
        return base.replace(**{k: v for k, v in overrides.items() if v is not None})

    def replace(self, **changes: Any) -> Settings:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return _validated(replace(self, **changes))

    def to_toml(self) -> str:
        lines = ["# Fixed settings of this research run. Every experiment is measured under them;",
                 "# changing them makes results incomparable (start a new workspace instead).", "[workspace]"]
        for key, value in asdict(self).items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"cannot read {path}: {e}") from e
        table = data.get("workspace")
        if not isinstance(table, dict):
            raise SettingsError(f"{path} has no [workspace] table; recreate it with `autoresearch init`")
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise SettingsError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        if "profile" not in table:
            raise SettingsError(f"{path}: missing `profile`")
        if "allowed_imports" in table:
            table["allowed_imports"] = tuple(table["allowed_imports"])
        return _validated(cls(**table))


def _validated(s: Settings) -> Settings:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise SettingsError(msg)

    need(s.time_budget > 0, f"time_budget must be positive seconds, got {s.time_budget}")
    need(s.max_seq_len >= 8, f"max_seq_len must be at least 8, got {s.max_seq_len}")
    need(s.eval_tokens >= s.max_seq_len, f"eval_tokens ({s.eval_tokens}) must be at least max_seq_len ({s.max_seq_len})")
    need(300 <= s.vocab_size <= 2**20, f"vocab_size must be in 300..1048576 (256 byte tokens + merges), got {s.vocab_size}")
    need(s.train_shards >= 1, f"train_shards must be at least 1, got {s.train_shards}")
    need(s.tokenizer_chars >= 0, f"tokenizer_chars must be >= 0 (0 = the dataset's default), got {s.tokenizer_chars}")
    need(s.embedded_train_mb > 0, f"embedded_train_mb must be positive, got {s.embedded_train_mb}")
    need(s.token_budget >= 0, f"token_budget must be >= 0 training tokens (0 = time budget only), got "
                              f"{s.token_budget}")
    need(s.token_budget == 0 or s.token_budget >= s.max_seq_len,
         f"token_budget ({s.token_budget}) must be at least one row of max_seq_len ({s.max_seq_len}) tokens, or 0")
    need(s.startup_limit >= 0, f"startup_limit must be >= 0 seconds (0 = auto), got {s.startup_limit}")
    need(s.warmup_limit >= 0, f"warmup_limit must be >= 0 seconds (0 = auto), got {s.warmup_limit}")
    need(s.time_allowance >= 0, f"time_allowance must be >= 0 seconds (0 = auto), got {s.time_allowance}")
    need(s.memory_limit_mb >= 0, f"memory_limit_mb must be >= 0 (0 = auto), got {s.memory_limit_mb}")
    return s


def _toml_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where downloads and prepared data live: flag > $AUTORESEARCH_CACHE > ~/.cache/autoresearch."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoresearch"
