"""The dependency lock is the tested set: every requirement of pyproject.toml is pinned in it, inside its
range, with hashes, and the torch the Makefile installs is the one the range allows."""
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCK = (ROOT / "requirements" / "lock.txt").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PINS = {_norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK, re.M)}


def test_every_requirement_is_pinned_inside_its_range():
    reqs = [Requirement(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]]
    for req in reqs:
        if req.name == "torch":
            continue
        assert _norm(req.name) in PINS, f"{req.name} is not in requirements/lock.txt: run `make lock`"
        assert req.specifier.contains(PINS[_norm(req.name)]), f"{req.name}=={PINS[_norm(req.name)]} outside {req}"
        assert req.specifier and any(s.operator in ("<", "<=") for s in req.specifier), f"{req} has no upper bound"


def test_every_pin_has_hashes_and_no_cuda_build_packages():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.split("\n", 2)[2])
    for block in blocks:
        assert "--hash=sha256:" in block, f"no hash: {block.splitlines()[0]}"
    assert not [n for n in PINS if n == "torch" or n.startswith("nvidia-") or n == "triton"]


def test_makefile_torch_is_the_newest_the_range_allows():
    torch_req = next(Requirement(r) for r in PROJECT["dependencies"] if r.startswith("torch"))
    makefile_torch = re.search(r"^TORCH := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert torch_req.specifier.contains(makefile_torch)
    assert any(s.operator == "<=" and s.version == makefile_torch for s in torch_req.specifier)
