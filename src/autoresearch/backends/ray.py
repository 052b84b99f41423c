"""Experiments as Ray tasks on an existing cluster (`--backend ray`, the optional extra `ray`).

The loop is the same as locally; each run is one Ray task, placed by Ray on any node that has what it asks for:
one GPU (a share of one with --per-device) for the cuda profiles, CPUS_PER_TASK CPUs otherwise.

What travels is what an experiment is: the train.py source, the workspace's settings and the runner's knobs,
never the orchestrator's paths. On the node the task finds the node's own cache (its AUTORESEARCH_CACHE or
~/.cache/autoresearch), prepares the data there if it is missing (once per node: data/prepare.py prepare_once),
and runs the experiment with run_isolated in a run directory of the node's: the same worker process, sandbox and
scorer as locally. A researcher's task also takes its judge's copy (evaluator, fixed and hidden files), which
travels once per node through the object store (backends/ray_task.py). While it runs, its output lines stream to
the orchestrator (backends/ray_progress.py), so status, the live view and the dashboard follow it as they follow a
local run. What comes back is the RunResult
with its curve, and the tails of the logs, which the orchestrator writes into the experiment's run directory here.

A node that dies mid-run costs a retry (Ray reruns the task elsewhere, up to max_retries times); when no retry
can finish it, the run comes back `lost`. Each task's result is read once, so a retried run counts once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from autoresearch.backends.base import BackendError, Slot
from autoresearch.backends.ray_progress import DRAIN_SECONDS, Channel, Forwarder
from autoresearch.backends.worker import STOP_SECONDS, Handle, run_isolated
from autoresearch.run.result import THREAD_VARS, Experiment, Progress, RunResult

ADDRESS_ENV = "RAY_ADDRESS"
CONNECT_SECONDS = 5.0
CPUS_PER_TASK = 2  # an experiment without a GPU: train.py and its scorer, side by side
CPUS_BESIDE_GPU = 1  # an experiment on a GPU: its data loading and the scorer
MAX_RETRIES = 2  # node deaths one run survives (Ray reruns it elsewhere) before it is recorded as lost
LOG_CAP = 256 * 1024  # bytes of each log shipped back: the end, where the summary and the errors are
SHIPPED_LOGS = ("run.log", "scorer.log", "worker.log")
NODE_LOG = "node.log"  # in the local run directory: where it ran, and whether that node prepared the data
OWNER_FILE = "owner"  # in a node's run directory: the Ray worker process that runs it
POLL_SECONDS = 0.5
# After a cancel, for the task to stop its experiment as a local worker does (SIGTERM: the worker kills every process
# of it) and end; then Ray kills the task's process, which kills its children but not their children.
CANCEL_SECONDS = STOP_SECONDS + 5.0
KILL_SECONDS = 5.0  # after that kill, for Ray to confirm it
# A run that no live node can take (its only capable node died) waits this long for one to join (an autoscaler,
# a restarted node) before it is recorded as lost.
NO_NODE_SECONDS = 300.0
NODE_CHECK_SECONDS = 5.0


class RayBackend:
    name = "ray"

    def __init__(self, profile: str, workers: int | None = None, per_device: int = 1, address: str | None = None,
                 *, node_cache: str | None = None, resources: dict[str, float] | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        """`node_cache`: the cache directory on every node (default: each node's own); `resources`: custom Ray
        resources a task also asks for, to confine experiments to the nodes that declare them."""
        ray = _import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _connect(ray, address or os.environ.get(ADDRESS_ENV) or "auto")
        self.profile = profile
        self.node_cache = node_cache
        self.options = task_options(profile, per_device, resources, max_retries)
        self._slots = plan_slots(profile, workers, per_device, self.options, _alive_nodes(ray))
        self._task = ray.remote(run_on_node).options(**self.options)
        self._inflight: set = set()
        self._bundles: dict = {}  # a task's judge's copy in the object store, by sha256 (backends/ray_task.py)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def run(self, exp: Experiment, slot: Slot, on_line: Callable[[str], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> RunResult:
        t0 = time.monotonic()
        exp.run_dir.mkdir(parents=True, exist_ok=True)
        (exp.run_dir / "train.py").write_text(exp.source)
        sink = _stream(exp, on_line, on_progress)
        with self._lock:  # a task submitted here is one cancel() sees
            if self._stop.is_set():
                _unstream(sink)
                return RunResult(status="interrupted", reason="the orchestrator is stopping")
            try:
                ref = self._task.remote(payload(exp, self.node_cache, sink.target if sink else None,
                                                task=self._task_of(exp)))
            except Exception as e:  # noqa: BLE001 - the cluster went away, or the payload does not pickle
                _unstream(sink)
                return RunResult(status="lost", reason=f"could not submit the Ray task ({type(e).__name__}: "
                                                       f"{e})"[:500], wall_seconds=time.monotonic() - t0)
            self._inflight.add(ref)
        reply = None
        try:
            reply = self._wait(ref)
        finally:
            with self._lock:
                self._inflight.discard(ref)
            _unstream(sink, drain=isinstance(reply, dict))  # before receive() writes the shipped log over it
        if isinstance(reply, RunResult):
            reply.wall_seconds = time.monotonic() - t0
            return reply
        return receive(exp, reply)

    def _task_of(self, exp: Experiment) -> dict | None:
        """What a run of a researcher's task takes along (backends/ray_task.py); None for the GPT task. The judge's
        copy is packed and put in the object store once per bundle, and travels to a node only once."""
        from autoresearch.task.store import is_task_workspace

        if not is_task_workspace(exp.workspace):
            return None
        import ray

        from autoresearch.backends.ray_task import main_and_others, pack, seals
        from autoresearch.run.task_runner import experiment_files
        from autoresearch.task.store import judge_dir, workspace_task

        key, data = pack(exp.workspace)
        if key not in self._bundles:
            self._bundles[key] = ray.put(data)
        main, others = main_and_others(exp.workspace, experiment_files(workspace_task(exp.workspace), exp))
        # `judge`: the workspace's own copy, covered too where a node is this machine (one box, `ray start --head`)
        return {"key": key, "bundle": [self._bundles[key]], "seals": seals(exp.workspace), "main": main,
                "files": others, "judge": str(judge_dir(exp.workspace).resolve())}

    def cancel(self) -> None:
        import ray

        with self._lock:
            self._stop.set()
            refs = list(self._inflight)
        for ref in refs:
            try:
                ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its experiment (run_stoppably)
            except Exception:  # noqa: BLE001 - already finished, or the cluster is gone: nothing left to stop
                pass

    def close(self) -> None:
        self.cancel()
        if self._owns_ray:
            import ray

            ray.shutdown()

    def _wait(self, ref) -> dict | RunResult:
        """The task's reply, or the RunResult that says why there is none. Never raises."""
        from ray.exceptions import RayError, TaskCancelledError

        try:
            reply = self._reply(ref)
            # Cancelling may kill the experiment's processes before the task itself (Ray kills a worker's children
            # too), and the task then reports a crash: that is the cancel's doing. A finished run keeps its result.
            if self._stop.is_set() and isinstance(reply, dict) and reply["result"]["status"] != "ok":
                return RunResult(status="interrupted", reason="stopped by the orchestrator")
            return reply
        except Exception as e:  # noqa: BLE001 - whatever Ray raises, the run gets a status, never a raise
            if self._stop.is_set() or isinstance(e, TaskCancelledError):
                return RunResult(status="interrupted", reason="stopped by the orchestrator")
            # RayError: the node or the worker died with the retries spent, or the node cannot run our code
            what = "the Ray task failed" if isinstance(e, RayError) else "Ray failed while waiting"
            first = (str(e).strip().splitlines() or [""])[0]
            return RunResult(status="lost", reason=f"{what} ({type(e).__name__}): {first}"[:500])

    def _reply(self, ref) -> dict | RunResult:
        import ray

        homeless_since: float | None = None
        checked = time.monotonic()
        while not ray.wait([ref], timeout=POLL_SECONDS)[0]:
            if self._stop.is_set():
                if not ray.wait([ref], timeout=CANCEL_SECONDS)[0]:
                    ray.cancel(ref, force=True)
                    if not ray.wait([ref], timeout=KILL_SECONDS)[0]:
                        return RunResult(status="interrupted", reason="stopped by the orchestrator (Ray did not "
                                                                      f"confirm the kill within {KILL_SECONDS:.0f}s)")
                break
            if time.monotonic() - checked >= NODE_CHECK_SECONDS:
                checked = time.monotonic()
                if _fits_somewhere(self.options, _alive_nodes(ray)):
                    homeless_since = None
                elif homeless_since is None:
                    homeless_since = checked
                elif checked - homeless_since >= NO_NODE_SECONDS:
                    ray.cancel(ref, force=True)
                    return RunResult(status="lost", reason=f"no node of the Ray cluster can run it any more (it "
                                                           f"asks for {_asks(self.options)}), for "
                                                           f"{NO_NODE_SECONDS:.0f}s")
        return ray.get(ref)


# -- the orchestrator's side ---------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise BackendError("--backend ray needs Ray: pip install 'autoresearch[ray]' (here and on every "
                           "node)") from None
    return ray


def _connect(ray, address: str) -> None:
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:  # Ray itself keeps retrying an address where nothing listens for minutes
            socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
        except OSError as e:
            raise BackendError(_no_cluster(address, e)) from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as e:  # noqa: BLE001 - ConnectionError, a timeout, a version mismatch: all say the same
        raise BackendError(_no_cluster(address, e)) from None


def _no_cluster(address: str, e: Exception) -> str:
    return (f"no Ray cluster answers at {address!r} ({type(e).__name__}: {str(e).strip()[:300]}): start one with "
            "`ray start --head` on the head node (and `ray start --address HEAD:6379` on the others), then pass "
            f"--address HEAD:6379 or set {ADDRESS_ENV}; the same Ray and Python versions must run everywhere")


def task_options(profile: str, per_device: int, resources: dict[str, float] | None, max_retries: int) -> dict:
    """What one experiment asks Ray for: a GPU (or a 1/per_device share of one) on the cuda profiles, CPUs
    otherwise. Ray reruns a task whose node or worker died (system failures only: an experiment's own failure is
    a RunResult, never an exception)."""
    if profile.startswith("cuda"):
        options = {"num_gpus": 1 / per_device, "num_cpus": CPUS_BESIDE_GPU}
    else:
        options = {"num_gpus": 0, "num_cpus": CPUS_PER_TASK}
    if resources:
        options["resources"] = dict(resources)
    return {**options, "max_retries": max_retries, "retry_exceptions": False}


def _alive_nodes(ray) -> list[dict]:
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def _asks(options: dict) -> dict[str, float]:
    return {"CPU": options["num_cpus"], "GPU": options["num_gpus"], **options.get("resources", {})}


def _fits_somewhere(options: dict, nodes: list[dict]) -> bool:
    return any(all(node.get(k, 0) >= v for k, v in _asks(options).items() if v) for node in nodes)


def plan_slots(profile: str, workers: int | None, per_device: int, options: dict, nodes: list[dict]) -> list[Slot]:
    """One slot per experiment the cluster can hold at once (unless --workers says otherwise). Ray places each
    run, so a slot names no device; more workers than the cluster holds just queue in Ray."""
    if not _fits_somewhere(options, nodes):
        have = ", ".join(f"{{{', '.join(f'{k}: {v:g}' for k, v in sorted(n.items()) if k in ('CPU', 'GPU'))}}}"
                         for n in nodes) or "no live node"
        what = "a GPU" if options["num_gpus"] else f"{options['num_cpus']} CPUs"
        raise BackendError(f"no node of the Ray cluster has {what} for an experiment of profile {profile!r} "
                           f"(nodes: {have}): add such a node, or use a workspace of another profile")
    if workers is None:
        asks = {k: v for k, v in _asks(options).items() if v}
        workers = sum(int(min(node.get(k, 0) / v for k, v in asks.items()) + 1e-9) for node in nodes) or 1
    return [Slot(index=k + 1, device="ray") for k in range(workers)]


def _stream(exp: Experiment, on_line, on_progress):
    """Where the run's lines stream to while it runs; None when they cannot (then they come with the result)."""
    try:
        return Channel.get().open(exp.run_dir, on_line, on_progress)
    except Exception:  # noqa: BLE001 - no queue actor on this cluster: the run still runs, unseen until it returns
        return None


def _unstream(sink, drain: bool = False) -> None:
    """Stop streaming a run; `drain`: it returned whole, so its last lines are on their way: take them first."""
    if sink is not None:
        sink.close(DRAIN_SECONDS if drain else 0.0)


def payload(exp: Experiment, node_cache: str | None = None, progress: tuple | None = None,
            task: dict | None = None) -> dict:
    """The experiment as it travels: plain values, no path of the orchestrator's; `progress`: where its lines
    stream to (backends/ray_progress.py); `task`: a researcher's task (backends/ray_task.py), None for the GPT."""
    env = [(k, v) for k, v in exp.env if k != "CUDA_VISIBLE_DEVICES"]  # Ray assigns the node's devices
    return {"name": exp.run_dir.name, "source": exp.source, "settings": asdict(exp.settings),
            "timeout": exp.timeout, "eval_rate": exp.eval_rate, "first_answer_limit": exp.first_answer_limit,
            "wants_test": exp.wants_test, "env": env, "compile_cache": exp.compile_cache is not None,
            "fills_compile_cache": exp.fills_compile_cache, "cache": node_cache, "progress": progress,
            "task": task}


def receive(exp: Experiment, reply: dict) -> RunResult:
    """The task's reply as a local run's result: its logs in the run directory, its log_path there."""
    result = RunResult.from_dict(reply["result"])
    for name, text in reply.get("logs", {}).items():
        (exp.run_dir / name).write_text(text)
    (exp.run_dir / NODE_LOG).write_text("".join(f"{line}\n" for line in reply.get("notes", [])))
    result.log_path = exp.run_dir / "run.log"
    result.node = reply.get("node") or result.node
    return result


# -- the node's side (a Ray task) ----------------------------------------------------------------------------------

def run_on_node(p: dict) -> dict:
    """One experiment on this node. Returns the reply `receive` reads; every outcome is a RunResult in it."""
    from autoresearch.data.prepare import prepare_once
    from autoresearch.settings import Settings, cache_dir

    node = node_name()
    notes = [f"node: {node}"]
    settings = Settings(**{**p["settings"], "allowed_imports": tuple(p["settings"]["allowed_imports"])})
    cache = Path(p["cache"]).expanduser() if p["cache"] else cache_dir()
    task = p.get("task")
    try:
        t0 = time.monotonic()
        if task:  # a researcher's task brings its own data, in the judge's copy
            bundle = _task_bundle(task, cache)
            notes.append(f"task: judge's copy {task['key'][:12]} in {bundle}")
        elif prepare_once(settings, cache, progress=lambda line: notes.append(f"data: {line}")):
            notes.append(f"data: prepared in {cache} in {time.monotonic() - t0:.1f}s")
        else:
            notes.append(f"data: found ready in {cache}")
    except Exception as e:  # noqa: BLE001 - the node's fault (no network, a full disk), not the experiment's
        notes.append(f"data: failed: {type(e).__name__}: {e}")
        what = "unpack the task's judge's copy" if task else "prepare the data"
        return {"result": RunResult(status="lost", node=node, reason=f"node {node} could not {what} "
                                    f"in {cache}: {type(e).__name__}: {e}"[:500]).to_dict(),
                "notes": notes, "node": node}
    root = node_runs()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep(root)
    home = Path(tempfile.mkdtemp(prefix=f"{p['name']}-", dir=root))
    (home / OWNER_FILE).write_text(_process_identity(os.getpid()))
    notes.append(f"run directory: {home}")
    cpus = ray_assigned("CPU")
    env = [*(((v, str(max(1, int(cpus)))) for v in THREAD_VARS) if cpus else ()), *map(tuple, p["env"])]
    workspace, source, files, hidden = home, p["source"], None, ()
    if task:
        from autoresearch.backends.ray_task import TASKS_DIR, check_names, node_workspace

        named = {**task["files"], task["main"]: p["source"]}
        why = check_names(bundle, named)
        if why:
            shutil.rmtree(home, ignore_errors=True)
            return {"result": RunResult(status="rejected", node=node, reason=why[:500]).to_dict(), "notes": notes,
                    "node": node}
        workspace = node_workspace(home, bundle, named)
        files = tuple(sorted(task["files"].items()))
        hidden = (str(cache / TASKS_DIR), task["judge"])  # every copy on the node, and the orchestrator's own
    exp = Experiment(source=source, workspace=workspace, settings=_node_share(settings), run_dir=home / "run",
                     timeout=p["timeout"], cache=cache, eval_rate=p["eval_rate"],
                     first_answer_limit=p["first_answer_limit"], wants_test=p["wants_test"], env=tuple(env),
                     compile_cache=_compile_seed(settings, cache) if p["compile_cache"] else None,
                     fills_compile_cache=p["fills_compile_cache"], files=files, hidden=hidden)
    forwarder = Forwarder(p.get("progress"), node)
    try:
        result = run_stoppably(exp, on_line=forwarder.line)
        result.node = node
        notes += forwarder.close()
        logs = {name: _tail(exp.run_dir / name) for name in SHIPPED_LOGS if (exp.run_dir / name).exists()}
        return {"result": result.to_dict(), "logs": logs, "notes": notes, "node": node}
    finally:
        forwarder.close()
        shutil.rmtree(home, ignore_errors=True)


def _task_bundle(task: dict, cache: Path) -> Path:
    from autoresearch.backends.ray_task import unpacked

    def fetch() -> bytes:
        import ray

        return ray.get(task["bundle"][0])  # only on a node that has not unpacked it yet

    return unpacked(cache, task["key"], fetch, expect=task["seals"])


def run_stoppably(exp: Experiment, on_line: Callable[[str], None] | None = None) -> RunResult:
    """run_isolated in a thread of its own, so that Ray's cancel reaches this one: it raises KeyboardInterrupt in
    the task's thread between bytecodes, which a thread blocked reading the worker's pipe would never run. The
    worker is then stopped as locally (SIGTERM: it kills every process of its experiment), before the task ends."""
    handle = Handle()
    done: list[RunResult] = []
    runner = threading.Thread(target=lambda: done.append(run_isolated(exp, on_line, handle=handle)), daemon=True)
    runner.start()
    try:
        while runner.is_alive():
            runner.join(timeout=POLL_SECONDS)
    except BaseException:
        handle.cancel()
        runner.join(timeout=STOP_SECONDS)
        raise
    return done[0] if done else RunResult(status="crash", reason="the node's runner thread failed; see worker.log")


def node_runs() -> Path:
    """Where a node keeps the run directories of its tasks while they run (the logs travel back, then they go)."""
    return Path(tempfile.gettempdir()) / f"autoresearch-ray-{os.getuid()}"


def node_name() -> str:
    try:
        import ray

        return f"{socket.gethostname()} (ray node {ray.get_runtime_context().get_node_id()[:8]})"
    except Exception:  # noqa: BLE001 - outside a Ray task (tests of the node's side)
        return socket.gethostname()


def ray_assigned(resource: str) -> float:
    try:
        import ray

        return float(ray.get_runtime_context().get_assigned_resources().get(resource, 0.0))
    except Exception:  # noqa: BLE001
        return 0.0


def _node_share(settings):
    """Settings whose automatic memory limit is this task's share of the node, as a local worker's is of the
    machine: experiments side by side on one node cannot together take more than one alone could."""
    if settings.memory_limit_mb or not settings.memory_limit:
        return settings
    try:
        import ray

        ctx = ray.get_runtime_context()
        total = next(n["Resources"] for n in ray.nodes() if n["NodeID"] == ctx.get_node_id())
        assigned = ctx.get_assigned_resources()
        side_by_side = min(total.get(k, 0) / v for k, v in assigned.items() if k in ("CPU", "GPU") and v > 0)
    except Exception:  # noqa: BLE001 - no Ray context, or nothing assigned: the whole node
        return settings
    return replace(settings, memory_limit_mb=max(1, int(settings.memory_limit // max(1.0, side_by_side))))


def _compile_seed(settings, cache: Path) -> Path:
    """The node's compile-cache seed for these settings (the orchestrator's is on another machine)."""
    key = hashlib.blake2b(json.dumps(asdict(settings), sort_keys=True).encode(), digest_size=8).hexdigest()
    return cache / "compile-seed" / key


def _process_identity(pid: int) -> str:
    """The pid and its start time: a pid alone may have been reused by another process since."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f"{pid} {f.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return ""  # no such process (or no /proc: then nothing is ever swept)


def _sweep(root: Path) -> None:
    """Remove the run directories of tasks that died without cleaning up (force-cancelled, or a worker killed):
    those whose owning worker process is gone."""
    for home in root.iterdir():
        try:
            owner = (home / OWNER_FILE).read_text()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue  # being created, or not ours
        if _process_identity(pid) != owner:
            shutil.rmtree(home, ignore_errors=True)


def _tail(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - LOG_CAP))
        text = f.read().decode("utf-8", errors="replace")
    if size <= LOG_CAP:
        return text
    return f"(the first {size - LOG_CAP:,} bytes stayed on the node)\n" + text.split("\n", 1)[-1]
