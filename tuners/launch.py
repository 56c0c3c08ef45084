"""Start a trial as a detached process (it survives the CLI or the browser tab), follow it, cancel it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from estimators.errors import InputError
from tuners import store

ROOT = Path(__file__).resolve().parent.parent


# What a launcher (torchrun, SLURM, MPI) leaves in a shell: inherited by a one-process trial they make it
# try to join a process group that does not exist (torch.distributed reads RANK/WORLD_SIZE/MASTER_*).
# A sharded trial gets its own from torchrun, which the runner starts itself (tuners/distributed.py).
DISTRIBUTED_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                    "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                    "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
                    "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE", "TORCH_NCCL_ASYNC_ERROR_HANDLING")
DISTRIBUTED_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "MV2_", "TORCHELASTIC_", "MPI_LOCALRANKID",
                        "ACCELERATE_")


def scrubbed_env(environ=None) -> dict:
    """The caller's environment without a launcher's distributed variables (everything else kept:
    PATH, PYTHONPATH, HOME, the Hugging Face and CUDA settings, proxies, locale)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k not in DISTRIBUTED_VARS and not k.startswith(DISTRIBUTED_PREFIXES)}


def child_env(**extra) -> dict:
    """The environment of the processes we start (runner, ranks, data report): the scrubbed
    environment, the data folder as an absolute path, this project importable, tokenizers' own thread
    pool off (the processes are already parallel)."""
    return {**scrubbed_env(), store.HOME_ENV: str(store.home_path()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "TOKENIZERS_PARALLELISM": "false", **extra}


MAX_TRIALS = 2
"""Trials running at once on this machine (``TUNING_ADVISOR_MAX_TRIALS`` changes it): more share the
same cores and memory, skew each other's measurements and can take the machine down."""


def max_trials() -> int:
    try:
        return max(1, int(os.environ.get("TUNING_ADVISOR_MAX_TRIALS", MAX_TRIALS)))
    except ValueError:
        return MAX_TRIALS


def _adopt_upload(run_id: str, run_dir: Path, request: dict) -> None:
    """An uploaded data file moves into the run's folder: it is kept with its run and goes with it."""
    path = Path(((request.get("plan") or {}).get("data") or {}).get("path") or "")
    if not path.is_file() or path.resolve().parent != store.uploads().resolve():
        return
    own = run_dir / "data" / path.name
    store.private_dir(own.parent)
    os.replace(path, own)
    request["plan"]["data"]["path"] = str(own)
    store.write_private(run_dir / "request.json", json.dumps(request, indent=2))
    store.update(run_id, request=request)


def start(request: dict) -> tuple[str, Path]:
    """Records the run and starts ``python -m tuners.trial`` in a new session (its own process group).
    Refused (InputError) while ``max_trials()`` runs are live."""
    live = store.live_runs()
    if len(live) >= max_trials():
        raise InputError(f"{len(live)} trial runs are already running (at most {max_trials()} at once; "
                         "TUNING_ADVISOR_MAX_TRIALS sets it): wait for one, or cancel it (tuning-advisor runs)")
    request = json.loads(json.dumps(request))  # ours to change
    run_id, run_dir = store.new_run(request)
    _adopt_upload(run_id, run_dir, request)
    log = os.fdopen(os.open(run_dir / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")
    env = child_env()
    # umask 077: what the run writes (events, results, the model copy, the project) is this user's only.
    proc = subprocess.Popen([sys.executable, "-m", "tuners.trial", "--run-id", run_id], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            umask=0o077)
    log.close()
    store.try_update(run_id, pid=proc.pid, pid_start=store.process_start(proc.pid))  # the runner records it too
    return run_id, run_dir


def memory_shortfall(plan, nproc: int = 1) -> str | None:
    """On a machine without a CUDA GPU: a one-line reason when the plan's step (per rank, times the
    ranks) needs more memory than the machine has available now; None when it fits or cannot be told."""
    import shutil

    from tuners.hardware import proc_bytes

    if shutil.which("nvidia-smi"):
        return None  # the GPU's memory decides; an out-of-memory there is recorded beside the estimate
    available = proc_bytes("/proc/meminfo", "MemAvailable:")
    try:
        need = plan.edit(hardware={"num_gpus": nproc} if nproc > 1 else None).setup("cpu")
        from estimators.memory import estimate_memory

        peak = estimate_memory(plan.spec(), need, plan.teacher_spec()).peak_allocated * max(nproc, 1)
    except Exception:  # the runner validates and reports the plan's own problems
        return None
    if available and peak > available:
        return f"the plan's step needs ~{peak / 1024**3:,.1f} GiB and this machine has {available / 1024**3:,.1f} GiB free"
    return None


def cancel(run_id: str) -> bool:
    """SIGTERM to the run's process group; the runner records 'cancelled'. False if it was not running."""
    row = store.get(run_id)
    if row is None or row["status"] not in ("queued", "running"):
        return False
    if not row["pid"]:  # a row no process will finish: ended here
        return store.end_stale(run_id)
    store.update(run_id, error=store.CANCEL_REQUESTED)  # a process gone before its handler ran is still 'cancelled'
    try:
        os.killpg(row["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def result(run_id: str) -> dict | None:
    row = store.get(run_id)
    path = Path(row["run_dir"]) / "result.json" if row else None
    try:
        return json.loads(path.read_text()) if path and path.exists() else None
    except (OSError, ValueError):  # unreadable: the row says how the run ended
        return None


def follow(run_id: str, on_event=lambda e: None, poll: float = 0.2, timeout: float | None = None) -> dict:
    """Calls ``on_event`` for each new event until the run ends; returns its result JSON."""
    seen, t0, unread = 0, time.time(), 0
    while True:
        row = store.get(run_id)
        if row is None:  # the store cannot be read right now (it said why): the run goes on, look again
            unread += 1
            if unread > 120:
                return {"run_id": run_id, "status": "failed", "device": None, "estimate": None, "measured": None,
                        "extrapolated": None, "error": "the run history cannot be read: see `tuning-advisor runs`",
                        "error_kind": "input"}
            time.sleep(1.0)
            continue
        unread = 0
        events = store.events(row["run_dir"])
        for e in events[seen:]:
            on_event(e)
        seen = len(events)
        if row["status"] in ("completed", "failed", "cancelled"):
            res = result(run_id)
            if res is not None or row["error"]:  # a result, or a process that died without one
                return res or {"run_id": run_id, "status": row["status"], "device": row["device"],
                               "estimate": row["estimate"], "measured": row["measured"],
                               "extrapolated": row["extrapolated"], "error": row["error"]}
        if timeout is not None and time.time() - t0 > timeout:
            cancel(run_id)
            timeout = None
        time.sleep(poll)
