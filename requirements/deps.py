"""The project's dependency lock and its check against the newest releases.

    python requirements/deps.py lock      # re-resolve pyproject.toml into requirements/lock.txt (make lock)
    python requirements/deps.py latest    # the suite in a throwaway venv with the newest releases (make test-latest)

`lock` resolves every direct and transitive dependency of ``pyproject.toml`` (with the dev extra) for
CPython 3.11 on x86-64 Linux with ``uv pip compile``, with sha256 hashes of every file the index has for
each pinned version. torch is left out, with the CUDA libraries and triton that only its CUDA build
needs: the Makefile installs torch 2.13.0 (the CPU build this machine keeps on disk) before the lock,
and a GPU user installs the torch build for their CUDA first in the same way.

`latest` makes a venv under the system's temp folder, installs torch 2.13.0, then the project with
every upper bound of ``pyproject.toml`` lifted to the next major release (what a user would get if we
widened the ranges today), runs the suite and prints one line: the versions that differ from the lock
and the tests that failed.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
TORCH = "torch==2.13.0"
# Packages only torch's CUDA build pulls in (its Linux x86-64 wheel metadata); never installed here.
CUDA_ONLY = re.compile(r"^(nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|triton)$")
HEADER = ("# The locked, tested set installed by `make run`, `make test` and .ci/run (after torch 2.13.0, CPU).\n"
          "# Made by `make lock` (requirements/deps.py) from pyproject.toml; do not edit by hand.\n")


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    venv_uv = Path(sys.executable).with_name("uv")
    if not venv_uv.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uv==0.13.9"], check=True)
    return [str(venv_uv)]


def _compile(extra: list[str], out: Path) -> str:
    cmd = _uv() + ["pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "dev", "--python-version", "3.11",
                   "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--quiet", "-o", str(out)] + extra
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out.read_text()


def lock() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        first = _compile([], Path(tmp) / "names.txt")
        names = {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", first, re.M)}
        skip = sorted({"torch"} | {n for n in names if CUDA_ONLY.match(n.lower())})
        body = _compile(["--generate-hashes"] + [a for n in skip for a in ("--no-emit-package", n)],
                        Path(tmp) / "lock.txt")
    LOCK.write_text(HEADER + body)
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", body, re.M)
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(pins)} packages pinned with hashes; left out {', '.join(skip)}")
    return 0


def _lifted_requirements() -> list[str]:
    """pyproject's requirements with each upper bound moved to the next major release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    out = []
    for req in reqs:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
        if name == "torch":
            continue

        def next_major(m):
            major = int(m.group(1))
            return f"<{major + 1}" if major else f"<{int(m.group(2)) + 1}"  # 0.x: next minor is the break
        out.append(re.sub(r"<=?\s*(\d+)\.(\d+)(?:\.[0-9a-z.]+)?", next_major, req))
    return out


def _pins(text: str) -> dict[str, str]:
    return {n.lower().replace("_", "-"): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, re.M)}


def latest() -> int:
    venv = Path(tempfile.mkdtemp(prefix="tuning-advisor-latest-"))
    py = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["--upgrade", "pip"], check=True)
        subprocess.run(pip + [TORCH], check=True)
        subprocess.run(pip + ["--upgrade", "--upgrade-strategy", "eager"] + _lifted_requirements(), check=True)
        subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)
        frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
        locked, now = _pins(LOCK.read_text()), _pins(frozen)
        moved = [f"{n} {locked[n]}->{v}" for n, v in sorted(now.items()) if n in locked and locked[n] != v]
        report = venv / "report.json"
        test = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junit-xml",
                               str(venv / "junit.xml")] + sys.argv[2:], cwd=ROOT, capture_output=True, text=True)
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", test.stdout, re.M)
        tail = [ln for ln in test.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        summary = {"newer_than_lock": moved, "failed": failed, "pytest": tail[-1] if tail else test.stdout[-300:]}
        report.write_text(json.dumps(summary, indent=1))
        print(f"test-latest: {summary['pytest'].strip('= ')}; newer than the lock: {', '.join(moved) or 'none'}; "
              f"broke: {', '.join(failed) or 'nothing'}")
        return test.returncode
    finally:
        shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("lock", "latest"):
        print("usage: python requirements/deps.py lock|latest [pytest args for latest]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(lock() if command == "lock" else latest())
