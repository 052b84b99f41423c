"""One script that proves the single-GPU path: the CUDA tests, a shortened `cuda`-profile training run through the
real runner and sandbox, and bench/train_step.py, in one call of under 8 minutes that prints one table.

    python bench/gpu_check.py [--budget 90] [--limit 460] [--out DIR]   # on a CUDA GPU (an H100/H200)
    python bench/gpu_check.py --cpu-dry-run [--out DIR]                  # anywhere: the same code paths, tiny, on CPU

What it runs, in this order (the first two side by side: one uses the CPUs, the other the GPU):
1. the tests that need CUDA (tests/test_attention.py and the template's CUDA test) with pytest, with a timeout;
2. `prepare` of a small embedded corpus in a temporary cache (the `cuda` profile's sequence length, vocabulary and
   model; a smaller training split and evaluation, so that it is generated in well under a minute on 16 cores);
3. the template train.py as `init` writes it for the `cuda` profile (compile on by default on CUDA; FA3 if
   loadable, else compiled flex_attention), through `run_experiment`: the runner, its clocks and the sandbox, in
   a temporary workspace made by `init_workspace`, for --budget seconds of training;
4. `bench/train_step.py --profile cuda`, its compile cache shared with the run's.
Every part has a timeout inside --limit; the table is printed whatever failed (a failed part says why), and the
exit code is non-zero if any part failed. With --cpu-dry-run everything runs on CPU at a tiny size (the
template with COMPILE = True, so inductor's C++ backend), what needs CUDA is skipped and the table says so;
tests/test_gpu_check.py runs it in CI.

On the lent H200 (device tool; it runs in the repo root, Python 3.12 with torch 2.11 + CUDA, no registry): every
runtime dependency of the package is in its image except `rustbpe`; the `cuda` extra's `kernels` is missing too
(its own needs, huggingface_hub, packaging and pyyaml, are there; sigstore and tomlkit are only for its CLI).
Prepare the wheels once, in the checkout the device tool sends (the lead's), into its git-ignored .whl/ (never
commit them):

    P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
       --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d .whl \
        rustbpe==0.1.0 kernels==0.17.2

    .whl/rustbpe-0.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl   (1.1 MB)
    .whl/kernels-0.17.2-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl    (1.9 MB)

then give the device tool `carry: [".whl"]`, `timeout_s: 540` and this one line (the check stops itself at
--limit, 460 s; the table and the logs come back in $OUT):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT

FA3 will not load there: the machine has no network, and its kernel (kernels-community/flash-attn3) is fetched
from the Hugging Face hub by `autoresearch prepare`; the table's attention row then says flex and why.
"""  # noqa: E501 - the device command above is one line on purpose: it is pasted as it is

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))  # the checkout's code, here and (main() sets PYTHONPATH) in every process it starts

from autoresearch.settings import Settings  # noqa: E402  (after the path is set)

CUDA_TEST = "tests/test_train_template.py::test_cuda_attention_path_matches_sdpa_and_trains"
CUDA_TESTS = ["tests/test_attention.py", CUDA_TEST]

# The GPU run: the cuda profile's sequence length, vocabulary and model; less data than the profile so that
# prepare takes well under a minute on 16 cores (training repeats the split: epochs do not matter for a check).
GPU_DATA = dict(embedded_train_mb=64.0, tokenizer_chars=10_000_000)
GPU_EVAL_TOKENS = 4 * 524288  # the profile scores 40 x 524288; this is enough to time it and to see val_bpb
GPU_BUDGET = 90.0  # seconds of training; with a cold compile, evaluation and train_step: ~6-7 minutes in all
GPU_LIMIT = 460.0  # the whole check; give the device tool a timeout_s of 540

# The dry run: tests/conftest.py's TINY settings and a one-layer model, small enough that compiling it on a
# loaded 2-core machine takes about a minute.
DRY_SETTINGS = dict(profile="cpu", dataset="embedded", max_seq_len=64, eval_tokens=2048, vocab_size=512,
                    embedded_train_mb=0.4)
DRY_TRAIN = {"DEPTH": 1, "ASPECT_RATIO": 32, "HEAD_DIM": 16, "DEVICE_BATCH_SIZE": 8, "TOTAL_BATCH_SIZE": 512,
             "WINDOW_PATTERN": "L", "COMPILE": True}
DRY_BUDGET = 3.0
DRY_LIMIT = 600.0

# Seconds kept back from the training run for what follows it (train_step.py), and for writing the table.
TRAIN_STEP_RESERVE = {"gpu": 120.0, "dry": 60.0}
PYTEST_TIMEOUT = 180.0  # the CUDA tests: ~15 s of CPU-side tests and one small compiled model
TABLE_RESERVE = 5.0

ATTENTION_RE = re.compile(r"^attention: (?P<backend>\S+) \((?P<why>.*)\)\s*$")
COMPILE_RE = re.compile(r"^compile: (?P<state>on|off)\b")
SANDBOX_RE = re.compile(r"^sandbox: (?P<what>.*)$")
STEP_LINE_RE = re.compile(r"step time (?P<ms>[\d.]+) ms \| (?P<tps>[\d,]+) tokens/s \| MFU (?P<mfu>[\d.]+)% \| "
                          r"peak memory (?P<mem>[\d,]+) MB")
STEP_HEAD_RE = re.compile(r"attention (?P<backend>\S+) \(.*\), compile (?P<compile>on|off)")

ENV_PROBE = r"""
import json, platform
info = {"python": platform.python_version()}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if info["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"sm{p.major}{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count())
except Exception as e:
    info["torch_error"] = f"{type(e).__name__}: {e}"
try:
    import kernels
    info["kernels"] = getattr(kernels, "__version__", "version unknown")
except Exception as e:
    info["kernels_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(info))
"""


@dataclass
class Part:
    """One part of the check: a status, one line saying why it failed or was skipped, and its rows of the table."""

    name: str
    status: str = "not run"  # ok | FAILED | skipped | not run
    why: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # machine-readable, for result.json
    seconds: float | None = None

    def fail(self, why: str) -> None:
        self.status, self.why = "FAILED", one_line(why)

    def skip(self, why: str) -> None:
        self.status, self.why = "skipped", one_line(why)


@dataclass
class Check:
    mode: str  # "gpu" | "dry"
    budget: float
    limit: float
    t0: float = field(default_factory=time.monotonic)
    started: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    parts: dict[str, Part] = field(default_factory=dict)

    def part(self, name: str) -> Part:
        return self.parts.setdefault(name, Part(name))

    def remaining(self) -> float:
        return self.limit - (time.monotonic() - self.t0)

    @property
    def failed(self) -> list[Part]:
        return [p for p in self.parts.values() if p.status in ("FAILED", "not run")]


def one_line(text: str, width: int = 300) -> str:
    return " ".join(str(text).split())[:width]


# ---------------------------------------------------------------------------
# Processes in the background, each in its own process group (a timeout takes its children down too)
# ---------------------------------------------------------------------------


class Background:
    running: list[Background] = []  # killed on the way out, whatever stopped the check

    def __init__(self, argv: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> None:
        self.log, self.timeout, self.t0 = log, timeout, time.monotonic()
        self._file = open(log, "w")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self._file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        Background.running.append(self)

    def finish(self) -> tuple[int | None, float]:
        """Wait until done or timed out (then kill the group); (returncode or None on timeout, seconds)."""
        try:
            rc: int | None = self.proc.wait(timeout=max(1.0, self.timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            rc = None
            _kill_group(self.proc)
        finally:
            self._file.close()
        if rc is not None:
            _kill_group(self.proc)  # whatever the command left behind in its group
        if self in Background.running:
            Background.running.remove(self)
        return rc, time.monotonic() - self.t0

    @classmethod
    def kill_all(cls) -> None:
        for job in list(cls.running):
            _kill_group(job.proc)
            job._file.close()
        cls.running.clear()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------


def environment(check: Check, probe: Background) -> dict:
    part = check.part("environment")
    rc, part.seconds = probe.finish()
    try:
        info = json.loads(probe.output().strip().splitlines()[-1])
    except (ValueError, IndexError):
        part.fail(f"the environment probe failed (exit {rc}): {tail(probe.output())}")
        return {}
    part.figures = info
    torch_row = (f"{info['torch']} (CUDA {info['cuda'] or 'none: a CPU build'})" if "torch" in info
                 else f"not importable: {info.get('torch_error')}")
    gpu_row = (f"{info['gpu']}, {info['capability']}, {info['gpu_memory_gib']} GiB ({info['gpu_count']} visible)"
               if info.get("gpu") else "none (torch sees no CUDA device)")
    kernels_row = (f"importable ({info['kernels']})" if "kernels" in info
                   else f"not importable ({info.get('kernels_error')}): FA3 cannot load from the hub cache")
    part.rows = [("python", info["python"]), ("torch", torch_row), ("GPU", gpu_row), ("kernels", kernels_row)]
    if check.mode == "gpu" and not info.get("cuda_available"):
        part.fail("torch sees no CUDA device: run on a GPU machine with a CUDA build of torch, or use --cpu-dry-run")
    else:
        part.status = "ok"
    return info


def start_cuda_tests(check: Check, work: Path) -> Background:
    selection = CUDA_TESTS if check.mode == "gpu" else [CUDA_TEST]  # on CPU: the CUDA test skips, quickly
    junit = work / "pytest.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
            f"--timeout={int(PYTEST_TIMEOUT)}", *selection]
    return Background(argv, work / "pytest.log", timeout=min(PYTEST_TIMEOUT, check.remaining()))


def junit_counts(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Counts of passed / failed / errors / skipped from pytest's JUnit XML, and each test's outcome by name."""
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcome = ("failed" if "failure" in tags else "errors" if "error" in tags
                   else "skipped" if "skipped" in tags else "passed")
        counts[outcome] += 1
        outcomes[case.get("name", "")] = outcome
    return counts, outcomes


def cuda_tests(check: Check, tests: Background, work: Path) -> None:
    part = check.part("CUDA tests")
    rc, part.seconds = tests.finish()
    what = "tests/test_attention.py + the template's CUDA test" if check.mode == "gpu" else "the template's CUDA test"
    if rc is None:
        part.fail(f"pytest ran past its {tests.timeout:.0f}s timeout: {tail(tests.output())} (log: pytest.log)")
        return
    try:
        counts, outcomes = junit_counts(work / "pytest.xml")
    except (OSError, ET.ParseError) as e:
        part.fail(f"pytest exited {rc} without a report ({e}): {tail(tests.output())}")
        return
    part.figures = dict(counts, returncode=rc)
    cuda_outcome = outcomes.get(CUDA_TEST.rsplit("::", 1)[1], "not collected")
    part.rows = [("counts", f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
                            f"{counts['skipped']} skipped in {part.seconds:.0f}s ({what})"),
                 ("CUDA template test", cuda_outcome)]
    if rc != 0 or counts["failed"] or counts["errors"]:
        part.fail(f"pytest exit {rc}: {tail(tests.output(), 2)} (log: pytest.log)")
    elif check.mode == "dry" and cuda_outcome == "skipped":
        part.skip("needs CUDA: on CPU the CUDA template test only shows that it skips")
    elif cuda_outcome != "passed":
        part.fail(f"the CUDA template test {cuda_outcome}: {tail(tests.output(), 2)}")
    else:
        part.status = "ok"


def settings_for(check: Check) -> Settings:
    if check.mode == "gpu":
        return Settings.from_profile("cuda", time_budget=check.budget, eval_tokens=GPU_EVAL_TOKENS, **GPU_DATA)
    return Settings(**DRY_SETTINGS, time_budget=check.budget)


def prepare_data(check: Check, settings: Settings, cache: Path, work: Path) -> bool:
    from autoresearch.data.prepare import prepare

    part = check.part("prepare")
    t0 = time.monotonic()
    with open(work / "prepare.log", "w") as log:
        def progress(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        try:
            report = prepare(settings, cache, progress=progress, workers=1 if check.mode == "dry" else None)
        except Exception as e:  # noqa: BLE001 - any failure is this part's; the table still comes
            part.fail(f"{type(e).__name__}: {e}")
            traceback.print_exc(file=log)
            return False
    part.seconds = time.monotonic() - t0
    train = report.splits["train"]
    part.status = "ok"
    part.figures = dict(seconds=part.seconds, splits=report.splits, eval_rows=report.eval_rows,
                        floor_bpb=report.floor_bpb)
    part.rows = [("corpus", f"embedded, {settings.embedded_train_mb:g} MB of training text ({train['tokens']:,} "
                            f"tokens), vocab {settings.vocab_size}, seq {settings.max_seq_len}, eval "
                            f"{settings.eval_tokens:,} tokens a split"),
                 ("time", f"{part.seconds:.1f}s"
                          + (f", entropy floor {report.floor_bpb['val']:.3f} bpb" if report.floor_bpb else ""))]
    return True


def make_workspace(check: Check, settings: Settings, directory: Path) -> tuple[Path, str]:
    """init_workspace's workspace (the profile's train.py); under the dry run, the tiny compiled model."""
    from autoresearch import vcs
    from autoresearch.workspace import init_workspace, set_constants

    note = ""
    try:
        init_workspace(directory, settings)
    except vcs.VcsError as e:  # its files are written before git runs; the runner needs no git
        note = f"no git commit ({e})"
    train = directory / "train.py"
    if check.mode == "dry":
        train.write_text(set_constants(train.read_text(), DRY_TRAIN))
    return directory, note


def training_run(check: Check, settings: Settings, cache: Path, work: Path) -> Path | None:
    """The template through the real runner and sandbox. Returns the compile cache (train_step.py reuses it)."""
    from autoresearch.run.supervisor import Experiment, protect_orchestrator, run_experiment

    part = check.part("training run")
    ws, note = make_workspace(check, settings, work / "workspace")
    compile_cache = ws / ".autoresearch" / "compile-cache"
    timeout = check.remaining() - TRAIN_STEP_RESERVE[check.mode]
    exp = Experiment(source=(ws / "train.py").read_text(), workspace=ws, settings=settings,
                     run_dir=ws / ".autoresearch" / "gpu-check", timeout=max(30.0, timeout), cache=cache,
                     compile_cache=compile_cache, fills_compile_cache=True)  # the template: its cache seeds
    protect_orchestrator()
    result = run_experiment(exp)
    part.seconds = result.wall_seconds
    log = result.log_path.read_text(errors="replace").splitlines() if result.log_path else []
    found = {name: next((m for line in log if (m := rx.match(line))), None)
             for name, rx in (("attention", ATTENTION_RE), ("compile", COMPILE_RE), ("sandbox", SANDBOX_RE))}
    attention = found["attention"]["backend"] if found["attention"] else None
    compiled = found["compile"]["state"] if found["compile"] else None
    peak_key = next((k for k in ("peak_memory_mb", "peak_vram_mb") if k in result.harness), None)
    peak = (result.harness[peak_key], "the harness's figure") if peak_key else (
        result.summary.get("peak_vram_mb"), "train.py's figure; the harness reports none")
    trained, wall = result.training_seconds, result.wall_seconds
    outside_share = (wall - trained) / wall if trained is not None and wall else None
    part.figures = dict(status=result.status, reason=result.reason, attention=attention, compile=compiled,
                        steps=result.steps, tokens_per_second=result.tokens_per_second,
                        mfu_percent=result.summary.get("mfu_percent"), peak_memory_mb=peak[0], val_bpb=result.val_bpb,
                        test_bpb=result.test_bpb, eval_seconds=result.eval_seconds,
                        startup_seconds=result.startup_seconds, training_seconds=result.training_seconds,
                        wall_seconds=wall, outside_share=outside_share, train_tokens=result.train_tokens,
                        eval_tokens=settings.eval_tokens, budget=settings.time_budget,
                        transport=result.harness.get("transport"), probes=(result.harness.get("probe") or {}))
    f = part.figures
    part.rows = [
        ("status", f"{result.status} ({result.reason})"),
        ("attention", f"{attention} ({found['attention']['why']})" if attention else "no `attention:` line in run.log"),
        ("compile", compiled or "no `compile:` line in run.log"),
        ("sandbox", found["sandbox"]["what"] if found["sandbox"] else "no `sandbox:` line in run.log"),
        ("steps", _fmt(f["steps"], "{:,}")),
        ("training tokens/s", _fmt(f["tokens_per_second"], "{:,.0f}") + " (runner's clock)"),
        ("MFU", _fmt(f["mfu_percent"], "{:.2f}%") + " (train.py's figure)"),
        ("peak memory", _fmt(peak[0], "{:,.0f} MB") + f" ({peak[1]})"),
        ("val_bpb", _fmt(result.val_bpb, "{:.4f}") + f" (harness; test {_fmt(result.test_bpb, '{:.4f}')})"),
        ("evaluation", _fmt(result.eval_seconds, "{:.1f}s") + f" (val + test, {settings.eval_tokens:,} tokens each, "
                                                             "scored by the scorer process, probes included)"),
        ("scoring transport", f"{f['transport']} (cuda-ipc: the logits never leave the device; shm: through host "
                              "memory, see scorer.log)"),
        ("startup", _fmt(result.startup_seconds, "{:.1f}s") + " (launch to timed training: imports, data, compile)"),
        ("outside training", _fmt(f["outside_share"], "{:.1%}") + f" of {result.wall_seconds:.1f}s wall (training "
                             f"{_fmt(result.training_seconds, '{:.1f}s')} for a {settings.time_budget:g}s budget)"),
    ]
    if note:
        part.rows.append(("workspace", note))
    problems = []
    if not result.ok:
        problems.append(f"{result.status}: {result.reason} | {tail(result.error_tail, 2)}")
    if not result.steps or result.val_bpb is None or not math.isfinite(result.val_bpb):
        problems.append(f"steps {result.steps}, val_bpb {result.val_bpb}")
    if compiled != "on":
        problems.append(f"compile was {compiled}, not on")
    if check.mode == "gpu" and attention not in ("fa3", "flex"):
        problems.append(f"attention was {attention}, not fa3 or flex")
    if check.mode == "gpu" and f["transport"] != "cuda-ipc":
        problems.append(f"the logits went through {f['transport']}, not CUDA IPC (see scorer.log)")
    if problems:
        part.fail("; ".join(problems) + " (log: run.log)")
    else:
        part.status = "ok"
    if result.log_path and result.log_path.exists():
        shutil.copy(result.log_path, work / "run.log")
        scorer_log = result.log_path.parent / "scorer.log"
        if scorer_log.exists():
            shutil.copy(scorer_log, work / "scorer.log")
    return compile_cache


def train_step(check: Check, work: Path, compile_cache: Path | None) -> None:
    from autoresearch.run.sandbox import cache_env

    part = check.part("train_step.py")
    args = (["--profile", "cuda"] if check.mode == "gpu"
            else ["--profile", "cpu", "--steps", "1", "--warmup", "0", "--compile", "off"])  # CPU: the code path only
    env = dict(os.environ, **(cache_env(compile_cache) if compile_cache else {}))  # the run's compiled kernels
    timeout = check.remaining() - TABLE_RESERVE
    if timeout < 10:
        part.fail(f"no time left within --limit {check.limit:g}s")
        return
    job = Background([sys.executable, str(ROOT / "bench" / "train_step.py"), *args], work / "train_step.log",
                     timeout=timeout, env=env)
    rc, part.seconds = job.finish()
    out = job.output()
    line, head = STEP_LINE_RE.search(out), STEP_HEAD_RE.search(out)
    what = "bench/train_step.py " + " ".join(args)
    if rc is None:
        part.fail(f"{what} ran past its {timeout:.0f}s timeout: {tail(out)} (log: train_step.log)")
        return
    if rc != 0 or not line:
        part.fail(f"{what} exit {rc}: {tail(out)} (log: train_step.log)")
        return
    part.figures = dict(step_ms=float(line["ms"]), tokens_per_second=float(line["tps"].replace(",", "")),
                        mfu_percent=float(line["mfu"]), peak_memory_mb=float(line["mem"].replace(",", "")),
                        attention=head["backend"] if head else None, compile=head["compile"] if head else None)
    part.rows = [("command", what),
                 ("step", f"{line['ms']} ms | {line['tps']} tokens/s | MFU {line['mfu']}% | peak memory "
                          f"{line['mem']} MB" + (f" | attention {head['backend']}, compile {head['compile']}"
                                                 if head else ""))]
    if check.mode == "dry":
        part.skip("the cuda profile needs CUDA: ran the cpu profile, uncompiled, to check the script and its parsing")
    else:
        part.status = "ok"


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else spec.format(value)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


def render(check: Check) -> str:
    title = ("GPU check: cuda profile, shortened" if check.mode == "gpu"
             else "GPU check: CPU DRY RUN (tiny settings; what needs CUDA is skipped)")
    lines = [f"{title} | {check.started} | budget {check.budget:g}s | {time.monotonic() - check.t0:.0f}s in all",
             "-" * 100]
    for part in check.parts.values():
        seconds = f" ({part.seconds:.0f}s)" if part.seconds is not None else ""
        lines.append(f"{part.name:<20} {part.status}{seconds}" + (f": {part.why}" if part.why else ""))
        lines += [f"  {label:<20} {value}" for label, value in part.rows]
    failed = check.failed
    lines.append("-" * 100)
    lines.append("result: " + ("FAILED: " + ", ".join(p.name for p in failed) if failed else "ok"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="run everything on CPU at a tiny size (COMPILE on), skipping what needs CUDA")
    ap.add_argument("--budget", type=float,
                    help=f"seconds of training (default {GPU_BUDGET:g}, dry run {DRY_BUDGET:g})")
    ap.add_argument("--limit", type=float, help=f"seconds for the whole check; every part's timeout fits inside it "
                                                f"(default {GPU_LIMIT:g}, dry run {DRY_LIMIT:g})")
    ap.add_argument("--out", type=Path, help="also write table.txt, result.json and the logs here")
    args = ap.parse_args(argv)
    mode = "dry" if args.cpu_dry_run else "gpu"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    check = Check(mode=mode, budget=args.budget or (GPU_BUDGET if mode == "gpu" else DRY_BUDGET),
                  limit=args.limit or (GPU_LIMIT if mode == "gpu" else DRY_LIMIT))
    if mode == "dry":
        os.environ["AUTORESEARCH_DEVICE"] = "cpu"  # a CUDA machine runs the dry run on CPU too
    for name in ("environment", "CUDA tests", "prepare", "training run", "train_step.py"):
        check.part(name)  # the table lists every part, also those a failure left not run
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        run_parts(check, work)
    except BaseException as e:  # noqa: BLE001 - the table comes whatever happened (Ctrl-C too)
        running = next((p for p in check.parts.values() if p.status == "not run"), None)
        if running is not None:
            running.fail(f"{type(e).__name__}: {e} at {tail(traceback.format_exc(), 1)}")
    finally:
        Background.kill_all()
        table = render(check)
        print(table, flush=True)
        if args.out:
            save(check, table, work, args.out)
        shutil.rmtree(work, ignore_errors=True)
    return 1 if check.failed else 0


def run_parts(check: Check, work: Path) -> None:
    probe = Background([sys.executable, "-c", ENV_PROBE], work / "env.log", timeout=120)
    tests = start_cuda_tests(check, work)  # beside prepare: it uses the GPU, prepare the CPUs
    settings = settings_for(check)
    cache = work / "cache"
    prepared = prepare_data(check, settings, cache, work)
    info = environment(check, probe)
    cuda_tests(check, tests, work)  # waits: the training run must have the GPU to itself
    if check.mode == "gpu" and not info.get("cuda_available"):
        for name in ("training run", "train_step.py"):
            check.part(name).fail("no CUDA device (see environment)")
        return
    if not prepared:
        check.part("training run").fail("no data: prepare failed")
        compile_cache = None
    else:
        compile_cache = training_run(check, settings, cache, work)
    train_step(check, work, compile_cache)


def save(check: Check, table: str, work: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.txt").write_text(table + "\n")
    result = dict(mode=check.mode, started=check.started, budget=check.budget, limit=check.limit,
                  seconds=time.monotonic() - check.t0, ok=not check.failed,
                  parts={name: asdict(p) for name, p in check.parts.items()})
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for log in ("run.log", "scorer.log", "pytest.log", "prepare.log", "train_step.log"):
        if (work / log).exists():
            shutil.copy(work / log, out / log)


if __name__ == "__main__":
    sys.exit(main())
