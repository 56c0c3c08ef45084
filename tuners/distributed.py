"""Sharded trials: N ranks launched by ``torchrun`` (DDP or FSDP2, on N GPUs or N CPU processes over
gloo), supervised by the run's own process, which records the run once.

* ``supervise`` runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m tuners.trial
  --worker`` (torchrun's own rendezvous and worker management; nothing home-made), forwards a cancel to
  it, waits, and turns the ranks' reports into one result: completed (rank 0's result), or failed with
  the first rank's error — or, when a rank vanished (killed, crashed), which rank and that the others
  were stopped. torchrun stops every rank when one fails (``--max-restarts 0``).
* ``finish_rank`` is each rank's report (``rank-R.json``); rank 0 adds the result (``rank0-result.json``).
* ``gather`` collects per-rank measurements on every rank; ``local_parameter_bytes`` counts what a rank
  holds (FSDP2's DTensor shards count their local part).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 20
"""How long ranks get to stop after a cancel before they are killed."""


def gather(mine: dict, world: int) -> list[dict]:
    if world == 1:
        return [mine]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, mine)
    return sorted(out, key=lambda r: r["rank"])


def local_parameter_bytes(model) -> int:
    total = 0
    for p in model.parameters():
        t = getattr(p, "_local_tensor", p)
        total += t.numel() * t.element_size()
    return total


def finish_rank(run_dir: Path, rank: int, result: dict) -> int:
    report = {"rank": rank, "status": result["status"], "error": result.get("error"),
              "error_kind": result.get("error_kind")}
    if rank == 0 and result["status"] == "completed":
        (run_dir / "rank0-result.json").write_text(json.dumps(result, indent=2))
    (run_dir / f"rank-{rank}.json").write_text(json.dumps(report))
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            if result["status"] == "completed":
                dist.barrier()  # leave together: a peer tearing down mid-collective aborts the other
            dist.destroy_process_group()
    except Exception:  # a peer already gone: nothing left to tidy
        pass
    return 0 if result["status"] == "completed" else 1


def _reports(run_dir: Path, nproc: int) -> dict[int, dict]:
    out = {}
    for rank in range(nproc):
        path = run_dir / f"rank-{rank}.json"
        try:
            out[rank] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _root_cause(log: Path) -> tuple[int | None, str | None]:
    """The rank torchrun reports as the first observed failure, and its exit code or signal."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None, None
    found = re.search(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)"
                      r"(?:.*?\((SIG\w+)\))?", text, re.S)
    if not found:
        return None, None
    code, sig = int(found.group(2)), found.group(3)
    return int(found.group(1)), (f"killed by {sig}" if sig else f"exit status {code}")


def _lost_peer(error: str) -> bool:
    """A collective that failed because another rank went away (gloo/NCCL words for it)."""
    return any(w in error for w in ("Connection reset", "Connection closed", "connection closed", "Broken pipe",
                                    "NCCL", "ProcessGroupGloo", "timed out in call to"))


def supervise(run_id: str, run_dir: Path, request: dict, emit) -> dict:
    """Runs the ranks through torchrun and returns the run's one result."""
    from tuners.launch import ROOT, child_env
    from tuners.trial import Cancelled, blank_result

    nproc = int(request["nproc"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--max-restarts=0", "-m", "tuners.trial", "--run-id", run_id, "--worker"]
    env = child_env(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))))
    result = {**blank_result(run_id), "nproc": nproc}
    emit("ranks", nproc=nproc, command=" ".join(cmd[1:]))
    with open(run_dir / "ranks-log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cancelled = False
        deadline = None if not request.get("timeout") else time.time() + float(request["timeout"]) + 120
        try:
            while proc.poll() is None:
                if deadline and time.time() > deadline:
                    raise TimeoutError(f"timed out after {request['timeout']} s")
                time.sleep(0.2)
        except (Cancelled, TimeoutError) as exc:
            cancelled = isinstance(exc, Cancelled)
            result["error"] = str(exc)
            proc.send_signal(signal.SIGTERM)  # torchrun stops its ranks
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    reports = _reports(run_dir, nproc)
    every_rank_done = all(reports.get(r, {}).get("status") == "completed" for r in range(nproc))
    if not cancelled and every_rank_done and (run_dir / "rank0-result.json").exists():
        # Completed, even if a rank's process then aborted while tearing gloo down (seen on CPU).
        return json.loads((run_dir / "rank0-result.json").read_text())
    if cancelled:
        return {**result, "status": "cancelled", "error_kind": "cancelled"}
    # The cause, not its echoes: a rank that vanished (killed, crashed hard), else the first rank that
    # failed on its own; peers that only lost their connection to it are its consequence.
    failed = sorted((r for r in reports.values() if r["status"] == "failed"),
                    key=lambda r: (_lost_peer(r.get("error") or ""), r["rank"]))
    missing = [r for r in range(nproc) if r not in reports]
    if missing:
        # torchrun names the rank it saw fail first (the others may have been killed in a collective
        # before they could report); else the first rank without a report.
        first, how = _root_cause(run_dir / "ranks-log.txt")
        rank = first if first in missing else missing[0]
        error = (f"rank {rank} of {nproc} ended without a result ({how or 'killed or crashed'}); torchrun stopped "
                 f"the other ranks (details in {run_dir / 'ranks-log.txt'})")
        kind = "crash"
    elif failed:
        first = failed[0]
        error = f"rank {first['rank']} of {nproc}: {first['error']}"
        kind = first.get("error_kind")
    else:
        error = result["error"] or f"the ranks ended with exit status {proc.returncode} (see {run_dir / 'ranks-log.txt'})"
        kind = "crash" if not result["error"] else "timeout"
    return {**result, "error": error, "error_kind": kind}
