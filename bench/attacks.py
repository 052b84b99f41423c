"""The attack catalogue through the real loop: is every hostile or broken train.py handled, and is nothing lost?

Creates a fresh workspace (cpu profile, embedded corpus, a short budget), prepares its data, runs the baseline,
then proposes each attack of bench/attacks/ as the next experiment through the real loop (a scripted agent,
greedy policy, no repair attempts). After each one it checks that git, the journal and results.tsv agree, that
the branch tip is still the best commit, that results.tsv has every line, that no process is left running and
that nothing was written outside the workspace. One line per attack; the last line says how many were handled.
Exit code 0 only if all were.

    python bench/attacks.py [--budget 10] [--timeout S] [--allowance S] [--memory-mb MB] [--threads N]
                            [--cache-dir DIR] [--only NAME,NAME] [--runtime-only] [--keep]

--runtime-only bypasses the static check (guard.check_source) to show what the run-time layers alone catch;
attacks whose RUNTIME is None are known gaps there and are listed as such, not counted as failures.

An attack with an AGENT is a command agent's: while it proposes, `autoresearch dashboard` serves the workspace on
a free port of 127.0.0.1, and the agent (confined as the loop confines agents) is given that port; it is handled
when nothing it proposed carries a held-out figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from attacks import catalogue
from attacks._check import clear, held_out_in, measured_differently, problems, snapshot

from autoresearch.agents.base import Proposal
from autoresearch.data.prepare import prepare
from autoresearch.loop.core import Loop, LoopConfig
from autoresearch.run import guard
from autoresearch.settings import Settings, cache_dir
from autoresearch.workspace import EDITABLE, init_workspace

TAG = "attacks"


class QueueAgent:
    """Proposes whatever was queued last: the loop asks, the bench decides."""

    name = "attacks"
    can_fix = False

    def __init__(self) -> None:
        self.queue: list = []  # (source, description), or an agent that proposes itself

    def propose(self, ctx) -> Proposal:
        item = self.queue.pop(0)
        if hasattr(item, "propose"):
            return item.propose(ctx)
        source, description = item
        return Proposal(train_py=source, description=description, rationale="attack catalogue")


def command_attack(attack, ws: Path, cache: Path, tmp: Path):
    """(the attack's agent, confined; a stop() for the dashboard serving `ws` beside it)."""
    import threading

    from autoresearch.agents.command import make_command_agent
    from autoresearch.see.dashboard import serve

    server = serve(ws, port=0, cache=cache)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    script = tmp / f"{attack.name}.py"
    script.write_text(attack.agent)
    agent = make_command_agent(f"cmd:{sys.executable} {script} {server.server_address[1]}", timeout=120,
                               cache=cache)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return agent, stop


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=10.0, help="training seconds per experiment")
    ap.add_argument("--timeout", type=float, help="hard limit per experiment (default: 4 x budget + 60 s)")
    ap.add_argument("--allowance", type=float, default=30.0,
                    help="training seconds allowed past the budget (the product's default: 10 s + 5%% of the "
                         "budget); generous here so a loaded machine does not fail honest runs")
    ap.add_argument("--memory-mb", type=int, default=4000, help="memory limit of an experiment")
    ap.add_argument("--cache-dir", type=Path, help="data cache (default: $AUTORESEARCH_CACHE or the user cache)")
    ap.add_argument("--only", help="comma-separated attack names")
    ap.add_argument("--runtime-only", action="store_true", help="bypass the static check (defence in depth)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP_NUM_THREADS of experiments (default 1: this is about defences, and on a busy machine "
                         "competing thread pools can make an honest run time out); 0 leaves it alone")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and print where it is")
    args = ap.parse_args()

    attacks = catalogue()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {a.name for a in attacks}
        if unknown:
            ap.error(f"unknown attack(s): {', '.join(sorted(unknown))}")
        attacks = [a for a in attacks if a.name in wanted]
    if args.runtime_only:
        guard.check_source = lambda source, allowed_imports=(): []  # the loop calls guard.check_source

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # experiments inherit the orchestrator's environment
    settings = Settings.from_profile("cpu", time_budget=args.budget, time_allowance=args.allowance,
                                     memory_limit_mb=args.memory_mb)
    timeout = args.timeout or 4 * args.budget + 60
    cache = cache_dir(args.cache_dir)
    prepare(settings, cache, progress=lambda m: print(m, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="autoresearch-attacks-"))
    try:
        ws = init_workspace(tmp / "ws", settings)
        template = (ws / EDITABLE).read_text()
        agent = QueueAgent()
        loop = Loop(ws, settings, agent, LoopConfig(tag=TAG, policy="greedy", fix_attempts=0, timeout=timeout,
                                                    cache=cache))
        loop.start()
        t0 = time.monotonic()
        base = loop.one_experiment()
        if base.outcome != "ok":
            print(f"the baseline failed ({base.outcome}): {base.reason}\n{base.error_tail}", file=sys.stderr)
            return 2
        best = loop.best_commit()
        mode = "run-time layers only (static check bypassed)" if args.runtime_only else "static check + run time"
        print(f"\nbaseline val_bpb {base.val_bpb:.4f} in {time.monotonic() - t0:.0f}s; budget {args.budget:g}s, "
              f"timeout {timeout:g}s, allowance {args.allowance:g}s, memory {args.memory_mb} MB; {mode}\n")
        print(f"{'attack':<22} {'verdict':<8} {'outcome':<9} {'layer':<30} {'reason':<64} lost")
        handled = gaps = 0
        failed: list[str] = []
        for n, attack in enumerate(attacks, start=2):
            snap = snapshot(attack)
            stop = None
            if attack.agent:
                command, stop = command_attack(attack, ws, cache, tmp)
                agent.queue.append(command)
            else:
                agent.queue.append((attack.source(template), f"attack: {attack.name}"))
            t1 = time.monotonic()
            loop.settings = settings.replace(**attack.limits)  # an attack may need tighter limits to be measurable
            if attack.leak:  # it needs the test split served: under the greedy policy, a val that beats the best's
                loop.settings = loop.settings.replace(time_budget=3 * args.budget)
            try:
                rec = loop.one_experiment()
            finally:
                loop.settings = settings
                if stop:
                    stop()
            if rec.status == "keep":  # scored (or neutralised and honestly better): later attacks face it
                best = rec.commit_sha or best
            lost = problems(ws, TAG, n, best, snap)
            clear(snap)
            leaked = held_out_in(ws, TAG, rec.train_py, rec.description) if attack.agent else []
            if attack.leak and rec.run_dir:  # what the records keep against what it measured on the rows served
                from attacks import _heldout

                log = Path(rec.run_dir) / "run.log"
                found = _heldout.ESTIMATE.findall(log.read_text()) if log.exists() else []
                read = attack.leak(rec.memory_gb or 0.0, rec.error_tail or "")
                if not (rec.metrics or {}).get("harness", {}).get("test_bpb"):
                    lost.append("not measured: no test split was served")
                elif found and read is not None and abs(read - float(found[-1])) <= _heldout.LEAK_TOLERANCE:
                    lost.append(f"the records carry the figure it measured on the held-out rows ({read:.4f})")
            expect = attack.runtime if args.runtime_only else attack.expect
            if attack.agent:  # a command agent's: did it learn a held-out figure?
                caught = not leaked and rec.outcome in (expect or ())
            elif expect is not None and rec.outcome == "ok" and "ok" in expect:  # neutralised: measured honestly?
                lost += measured_differently(base.metrics["harness"], rec.metrics["harness"])
                caught = True
            else:
                caught = (expect is not None and rec.outcome in expect and rec.status != "keep"
                          and (not attack.reason or args.runtime_only or re.search(attack.reason, rec.reason or "")))
            if expect is None:
                verdict, gaps = "GAP", gaps + 1
            elif caught and not lost:
                verdict, handled = "handled", handled + 1
            else:
                verdict = "FAILED"
                failed.append(attack.name)
            layer = "static" if not rec.run_dir else (attack.runtime_layer or "run time")
            reason = rec.reason or ""
            if attack.agent:
                reason = (f"LEAKED {', '.join(leaked)}: " if leaked else "no held-out figure: ") + rec.description
            elif rec.outcome == "ok":
                how = "neutralised, scored honestly" if caught else "SCORED"
                reason = f"{how}: val_bpb {rec.val_bpb:.4f} vs baseline {base.val_bpb:.4f} ({rec.status})"
            if expect is None:  # what it got, then why no run-time layer stops it
                got = f"val_bpb {rec.val_bpb:.4f} ({rec.status})" if rec.outcome == "ok" else rec.outcome
                reason = f"known gap, {got}: {attack.gap}"
            print(f"{attack.name:<22} {verdict:<8} {rec.outcome or '-':<9} {layer:<30} {shorten(reason, 64):<64} "
                  f"{'; '.join(lost) if lost else 'nothing'}  ({time.monotonic() - t1:.0f}s)", flush=True)
        total = len(attacks)
        print()
        if args.runtime_only:
            print(f"{handled}/{total - gaps} handled at run time; {gaps} known gap(s) only the static check covers")
            ok = handled == total - gaps
        else:
            print(f"{handled}/{total} handled")
            ok = handled == total
        if failed:
            print(f"not handled: {', '.join(failed)}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"workspace kept: {tmp / 'ws'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
