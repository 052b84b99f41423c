"""Load must not pick the winner (see loop/load.py): the signal, the tolerance, the best's pooled figures, and the
meter (run/load_meter.py). The loop's use of them, on a scripted backend with a faked signal: tests/test_scheduler.py."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from autoresearch.loop import load
from autoresearch.run import load_meter
from autoresearch.run.load_meter import LoadMeter, Point

# Trains nothing real: a unigram model from its first batch, which gets sharper the more batches it sees in
# TIME_BUDGET seconds (up to 40), sleeping $FAKE_DELAY after each (the machine's load). Like real training under a
# time budget, a quieter machine means more batches and a better val_bpb for the very same code.
LOAD_TRAIN = '''\
import os
import time

import torch

from autoresearch.harness import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader

SEED = 42               # seed of the logits' jitter: run-to-run noise

tok = Tokenizer.load()
V = tok.get_vocab_size()
loader = make_dataloader(tok, 4, MAX_SEQ_LEN, "train", device="cpu")
counts = torch.ones(V)
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
delay = float(os.environ.get("FAKE_DELAY", "0"))
t0, seen = None, 0
while t0 is None or time.monotonic() - t0 < TIME_BUDGET:
    x, y, _ = next(loader)
    if not seen:  # the model comes from the first batch alone: only the number of batches depends on the load
        counts += torch.bincount(y.flatten(), minlength=V)[:V].float()
    opt.step()  # the first step starts the runner's clock
    t0 = t0 or time.monotonic()
    seen += 1
    time.sleep(delay)
quality = min(1.0, seen / 40)
jitter = 0.01 * torch.randn(V, generator=torch.Generator().manual_seed(SEED))
logp = torch.log(counts / counts.sum())


class Unigram(torch.nn.Module):
    def forward(self, idx):  # (B, T) -> (B, T, V)
        return (quality * logp + jitter).expand(*idx.shape, V)


print("seen", seen, "batches")
val_bpb = evaluate_bpb(Unigram(), tok, 8)
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
'''


def test_load_tolerance_comes_from_the_baseline_repeats():
    assert load.load_tolerance([]) == load.STRETCH_FLOOR
    assert load.load_tolerance([0.5, 0.52, 0.48]) == load.STRETCH_FLOOR  # steady machine: the floor
    assert load.load_tolerance([0.5, 1.0, 1.5]) == pytest.approx(3 * 0.5 / 2.0)  # noisy one: 3 CVs of the stretch
    assert load.moved(0.0, 1.0, 0.1) == 1 and load.moved(1.0, 0.0, 0.1) == -1
    assert load.moved(1.0, 1.15, 0.1) == 0  # stretch 2.0 -> 2.15: within 10%
    assert load.moved(None, None, 0.1) == 0  # nothing to compare
    assert load.moved(None, 1.0, 0.1) == load.UNKNOWN and load.moved(1.0, None, 0.1) == load.UNKNOWN


def _ref() -> load.Reference:
    figures = [{"val_bpb": v, "load": w, "at": None} for v, w in [(1.80, 1.6), (1.82, 1.5), (1.81, 1.6)]]
    return load.Reference(commit="c", val_bpb=1.81, runs=3, tokens_per_second=None, load=1.57, figures=figures)


def test_a_re_measure_joins_the_best_s_figures_and_the_reference_pools_those_at_its_load():
    ref = _ref()
    assert ref.at_load(0.1, 0.1) is None  # never measured quiet: the best must be run again
    quiet = ref.with_figure(load.Figure(1.70, 0.1, at=5), 0.1, tps=900.0)
    assert (quiet.val_bpb, quiet.runs, quiet.load, quiet.remeasured_at) == (1.70, 1, 0.1, 5)
    assert len(quiet.figures) == 4  # nothing replaced
    again = quiet.with_figure(load.Figure(1.72, 0.12, at=7), 0.1, tps=880.0)
    assert again.runs == 2 and again.val_bpb == pytest.approx(1.71)  # two quiet figures, pooled
    busy = again.at_load(1.55, 0.1)
    assert busy.runs == 3 and busy.val_bpb == pytest.approx(1.81) and len(busy.figures) == 5


def test_the_reading_is_the_wait_per_cpu_second_over_timed_training():
    a = Point(at=10.0, busy=100.0, own=50.0, wait=5.0, pressure=20.0)
    b = Point(at=14.0, busy=108.0, own=54.0, wait=7.0, pressure=22.0)  # 4 s: 4 CPU s of its own, 2 s waited
    r = load_meter.reading(a, b, cores=2)
    assert r.wait == pytest.approx(0.5) and r.others_cpu == pytest.approx(1.0)
    assert r.pressure == pytest.approx(0.5) and r.own_share == pytest.approx(0.5)
    assert load_meter.reading(a, Point(10.2, 100.1, 50.1, 5.0, 20.0), cores=2) is None  # too short to say
    no_cpu = load_meter.reading(a, Point(14.0, 101.0, 50.05, 5.0, None), cores=2)
    assert no_cpu.wait is None and no_cpu.pressure is None  # an idle run's wait per CPU second means nothing

    meter = LoadMeter(lambda: [], timed=lambda: False)
    meter.first, meter.last = a, b
    meter.timed_first, meter.timed_last = a, Point(12.0, 104.0, 52.0, 5.2, 21.0)
    assert meter.stop().wait == pytest.approx(0.1)  # timed training's span, not the whole run's


SPIN = "import threading\nwhile True:\n    pass\n"


@pytest.mark.slow
def test_a_run_s_threads_wait_for_a_core_when_other_jobs_take_the_cores():
    """The one test on real processes: a spinning process, watched, beside one more spinning job (each in its own
    session, as jobs are) than the machine has cores. Whatever else the machine does, the watched one waits: with
    fair sharing it runs cores/(cores+1) of the time, so it waits 1/cores s per CPU second, more on a busy machine."""
    cores = psutil.cpu_count() or 1
    watched = subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True)
    jobs = [subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True) for _ in range(cores)]
    try:
        time.sleep(0.5)
        meter = LoadMeter(lambda: [watched.pid], timed=lambda: True, every=0.25).start()
        time.sleep(3.0)
        seen = meter.stop()
    finally:
        for p in (watched, *jobs):
            p.kill()
            p.wait(timeout=10)
    assert seen is not None
    if seen.wait is None and not sys.platform.startswith("linux"):
        pytest.skip("no /proc/PID/task/TID/schedstat off Linux: the loop then never re-measures")
    assert seen.wait is not None
    assert seen.wait > 0.5 / cores  # half what fair sharing gives: room for a scheduler's slack
    assert seen.others_cpu > 0.5 * (cores - 1)  # and the meter does not count the watched process as the others


def test_the_note_people_see_says_what_the_best_was_judged_on():
    from autoresearch.see.facts import load_note

    ran = {"remeasured": {"before": {"val_bpb": 1.8, "load": 1.6}, "load": 0.1, "fresh": 1.7,
                          "after": {"val_bpb": 1.7, "runs": 1, "figures": []}}}
    assert load_note(ran) == "load moved (wait 1.60 -> 0.10 s per CPU s): best re-measured now, 1.8000 -> 1.7000 (1 run(s))"
    reused = {"remeasured": {"before": {"val_bpb": 1.7, "load": 0.1}, "load": 1.6,
                             "after": {"val_bpb": 1.8, "runs": 3, "figures": []}}}
    assert "as measured before at this load, 1.7000 -> 1.8000 (3 run(s))" in load_note(reused)
