"""Export a plan as a runnable project: ``train.py``, ``plan.json``, ``launch.sh``, ``requirements.txt``
and ``README.md``.

``train.py`` is ``tuners/runtime.py`` copied as it is — one static script for every method, driven
by ``plan.json`` (which carries the plan and the method's recipe from ``tuners/methods``). It needs
torch, transformers and peft, not this project.
"""
from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

from estimators.axes import optimizer, sharding
from estimators.catalog import model_configs
from estimators.methods import get
from estimators.plan import Plan
from tuners import methods, runtime

GIB = 1024**3


def hub_id(model_ref: str) -> str | None:
    """The Hugging Face repo id of a catalog model (from its published-parameters source), if known."""
    raw = model_configs().get(str(model_ref).lower()) or {}
    found = re.search(r"huggingface\.co/([\w.-]+/[\w.-]+)", str(raw.get("_published_params_source", "")))
    return found.group(1) if found else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist).split("+")[0]  # 2.13.0+cpu -> 2.13.0
    except metadata.PackageNotFoundError:
        return None


def requirements(recipe: dict, settings: dict) -> str:
    """Pinned to the versions this project was installed (and tested) with."""
    names = ["torch", "transformers", "peft", "accelerate", "safetensors", "pandas", "pyarrow"]
    if recipe.get("quantization") or (recipe.get("teacher") or {}).get("quantization") \
            or "bitsandbytes" in optimizer(settings["optimizer"]).needs:
        names.append("bitsandbytes")
    lines = [f"{n}=={v}" for n in names if (v := _version(n))]
    return "# Versions Tuning Advisor was tested with; torch: pick the build for your CUDA version.\n" + "\n".join(lines) + "\n"


def _model_default(plan: Plan) -> str:
    if Path(plan.model).expanduser().is_dir():
        return str(Path(plan.model).expanduser().resolve())
    return hub_id(plan.model) or ""


def launch_script(plan: Plan) -> str:
    h = plan.hardware
    n = h.get("num_gpus", 1)
    model = _model_default(plan)
    data = plan.data.get("path") or ""
    teacher = (plan.settings.get("teacher") and (hub_id(plan.settings["teacher"]) or plan.settings["teacher"])) or ""
    run = "python train.py" if n == 1 else f"torchrun --nproc-per-node {n} train.py"
    sharding_label = sharding(h.get("sharding", "none")).runs_as
    lines = [
        "#!/usr/bin/env bash",
        f"# Trains the plan in plan.json: {get(plan.method).label} on {plan.model}, {n} GPU(s)"
        + (f", {sharding_label}." if n > 1 else "."),
        "# Set up once:  python -m pip install -r requirements.txt",
        "# Override with environment variables: MODEL (a model folder or hub id), DATA, OUTPUT"
        + (", TEACHER" if teacher else "") + "; extra arguments go to train.py (e.g. --max-steps 10).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f'MODEL="${{MODEL:-{model}}}"',
        f'DATA="${{DATA:-{data}}}"',
        'OUTPUT="${OUTPUT:-output}"',
    ]
    args = '--model "$MODEL" --data "$DATA" --output "$OUTPUT"'
    if teacher:
        lines.append(f'TEACHER="${{TEACHER:-{teacher}}}"')
        args += ' --teacher "$TEACHER"'
    lines += [
        'if [ -z "$MODEL" ] || [ -z "$DATA" ]; then echo "set MODEL and DATA (see README.md)" >&2; exit 2; fi',
        f'{run} {args} "$@"',
        "# Several nodes (run on each, NODE_RANK 0..NNODES-1, MASTER_ADDR = node 0's address):",
        f"# torchrun --nnodes $NNODES --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port 29500 "
        f"--nproc-per-node {n} train.py {args}",
    ]
    return "\n".join(lines) + "\n"


def readme(plan: Plan) -> str:
    e = plan.estimate or {}
    mem, time_ = e.get("memory") or {}, e.get("time") or {}
    h, s = plan.hardware, plan.settings
    gpu = (e.get("gpu") or {}).get("name") or h.get("gpu") or "no GPU given"
    hours = "—" if time_.get("seconds") is None else f"{time_['seconds'] / 3600:.1f} h"
    cost = "—" if e.get("cost_usd") is None else f"${e['cost_usd']:,.2f}"
    peak = "—" if not mem else f"{mem['total'] / GIB:.1f} GiB ({mem['peak_allocated'] / GIB:.1f} GiB allocated + overhead)"
    settings = "\n".join(f"| {k} | {v} |" for k, v in s.items())
    trainable = (e.get("params") or {}).get("trainable")
    trainable = "—" if trainable is None else f"{trainable:,}"
    return f"""# {get(plan.method).label} on {plan.model}

Exported by Tuning Advisor. `train.py` trains exactly the plan in `plan.json` (one script for every
method; the plan's `recipe` says what to build).

## Expected (the plan's estimate)

| | |
|---|---|
| GPU | {h.get('num_gpus', 1)}× {gpu} |
| peak memory per GPU | {peak} |
| whole run time | {hours} |
| whole run cost | {cost} |
| trainable parameters | {trainable} |

## Run

```bash
python -m pip install -r requirements.txt
MODEL=/path/to/model-folder DATA=train.jsonl ./launch.sh          # or edit the defaults in launch.sh
python train.py --model PATH --data FILE --max-steps 10 --output out  # a quick check first
```

`train.py` accepts `--plan`, `--model`, `--data`, `--teacher`, `--max-steps`, `--output` and saves
{'the adapter (PEFT format)' if get(plan.method).artifact == 'adapter' else 'the whole model'} and the tokenizer under `--output`,
with `train_log.json` (losses). Several GPUs: `launch.sh` runs `torchrun` with the plan's sharding.

## Settings

| setting | value |
|---|---|
{settings}
"""


def write_project(plan: Plan, out: str | Path, spec=None) -> Path:
    """Writes the project for ``plan`` into ``out`` (created if needed) and returns it. ``plan.json`` is
    the plan (with its estimate) plus the method's recipe for ``train.py``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or plan.spec()
    if plan.estimate is None:
        plan = plan.estimated(spec=spec)
    recipe = methods.recipe(plan, spec)
    (out / "plan.json").write_text(json.dumps({**plan.to_json(), "recipe": recipe}, indent=2) + "\n")
    (out / "train.py").write_text(Path(runtime.__file__).read_text())
    (out / "launch.sh").write_text(launch_script(plan))
    mode = (out / "launch.sh").stat().st_mode & 0o777
    (out / "launch.sh").chmod(mode | (mode & 0o444) >> 2)  # executable by whoever may read it (umask kept)
    (out / "requirements.txt").write_text(requirements(recipe, plan.settings))
    (out / "README.md").write_text(readme(plan))
    return out
