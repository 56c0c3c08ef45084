"""Export a plan as a runnable project: ``train.py``, ``plan.json``, ``launch.sh``, ``requirements.txt``
and ``README.md``.

``train.py`` is ``tuners/runtime.py`` copied as it is — one static script for every method, driven
by ``plan.json`` (which carries the plan and the method's recipe from ``tuners/methods``) — with
``traindata.py`` (reading, encoding, packing and batching the data) and ``trainloop.py`` (schedule,
clipping, eval split, checkpoints and ``--resume``, progress) beside it. It needs torch, transformers
and peft, not this project.

A project is relocatable: paths inside it are relative to it (a small data file is bundled under
``data/``); a model that is not a hub id or an existing folder must be given (``MODEL``/``--model``),
and ``launch.sh`` says so in one line.
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
from tuners import methods, runtime, store, traindata, trainloop

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


def needs_bitsandbytes(recipe: dict, settings: dict) -> bool:
    """A 4-bit base or teacher, or an 8-bit optimizer: what bitsandbytes is for."""
    return bool(recipe.get("quantization") or (recipe.get("teacher") or {}).get("quantization")
                or "bitsandbytes" in optimizer(settings["optimizer"]).needs)


def requirements(recipe: dict, settings: dict) -> str:
    """Pinned to the versions this project was installed (and tested) with."""
    names = ["torch", "transformers", "peft", "accelerate", "safetensors", "pandas", "pyarrow"]
    if needs_bitsandbytes(recipe, settings):
        names.append("bitsandbytes")
    lines = [f"{n}=={v}" for n in names if (v := _version(n))]
    return "# Versions Tuning Advisor was tested with; torch: pick the build for your CUDA version.\n" + "\n".join(lines) + "\n"


BUNDLE_MAX_BYTES = 50 * 1024**2
"""Data files up to this size travel inside the project (``data/``); larger ones are named, not copied."""


def _internal(path: Path) -> bool:
    """A path in this tool's own data folder (uploads, run folders): gone or meaningless elsewhere."""
    try:
        return store.home().resolve() in path.resolve().parents
    except OSError:
        return False


def user_file_name(path) -> str:
    """The name a user gave a file: uploads are kept as ``<12 hex digits>-<their name>``."""
    name = Path(str(path)).name
    return re.sub(r"^[0-9a-f]{12}-", "", name) if _internal(Path(str(path))) else name


def _model_default(plan: Plan) -> str:
    folder = Path(plan.model).expanduser()
    if folder.is_dir() and not _internal(folder):
        return str(folder.resolve())
    return hub_id(plan.model) or ""


def _bundle_data(plan: Plan, out: Path) -> str | None:
    """Copies a small data file into ``out/data`` and returns its path relative to the project."""
    src = Path(plan.data.get("path") or "").expanduser()
    if not plan.data.get("path") or not src.is_file() or src.stat().st_size > BUNDLE_MAX_BYTES:
        return None
    (out / "data").mkdir(exist_ok=True)
    name = user_file_name(src)
    (out / "data" / name).write_bytes(src.read_bytes())
    return f"data/{name}"


def launch_script(plan: Plan) -> str:
    h = plan.hardware
    n = h.get("num_gpus", 1)
    model = _model_default(plan)
    data = plan.data.get("path") or ""
    if data and (Path(data).is_absolute() and (_internal(Path(data)) or not Path(data).is_file())):
        data = ""  # a file in this tool's run folders (or gone): the user names theirs
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
        'if [ -z "$MODEL" ]; then echo "set MODEL to the model folder (config.json, weights, tokenizer) or a hub id, '
        'e.g. MODEL=/models/my-model ./launch.sh" >&2; exit 2; fi',
        'if [ -z "$DATA" ]; then echo "set DATA to your training file (.jsonl, .csv or .parquet), e.g. '
        'DATA=train.jsonl ./launch.sh" >&2; exit 2; fi',
        f'{run} {args} "$@"',
        "# Several nodes (run on each, NODE_RANK 0..NNODES-1, MASTER_ADDR = node 0's address):",
        f"# torchrun --nnodes $NNODES --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port 29500 "
        f"--nproc-per-node {n} train.py {args}",
    ]
    return "\n".join(lines) + "\n"


def readme(plan: Plan, data_note: str = "") -> str:
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

`train.py` accepts `--plan`, `--model`, `--data`, `--tokenizer`, `--teacher`, `--max-steps`, `--output` and
saves {'the adapter (PEFT format)' if get(plan.method).artifact == 'adapter' else 'the whole model'} and the tokenizer under `--output`,
with `train_log.json` (losses, eval losses). Several GPUs: `launch.sh` runs `torchrun` with the plan's sharding.
{data_note}
The data (`traindata.py`): JSONL, CSV or Parquet rows with input/output, prompt/completion, chat `messages` or
`text`; the loss is on the output part only.

The training loop (`trainloop.py`, defaults in `plan.json`'s `training` block; every one is an option):

- learning rate: `--lr-schedule cosine|linear|constant` (cosine) after a linear warm-up over `--warmup-ratio`
  of the steps (0.03) or `--warmup-steps N`; peak {s.get('lr')};
- gradient clipping at a global norm of `--max-grad-norm` (1.0; 0 turns it off);
- an eval split: `--eval-share` of the examples (0.05, at most 200) held out; the eval loss is printed every
  `--eval-every N` steps and at the end;
- checkpoints: `--save-every N` writes `OUTPUT/checkpoints/step-N` (trainable weights, optimizer, schedule,
  random state; the newest `--keep-checkpoints` kept); `--resume` continues from the newest one with the same
  data order (and writes one at the end, so a later `--resume --max-steps M` extends the run);
- one line per step: loss, learning rate, gradient norm, tokens/s and the time left (ETA).

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
    bundled = _bundle_data(plan, out)
    document = plan.to_json()
    if bundled:
        document["data"] = {**document["data"], "path": bundled}  # relative to the project: it moves with it
        data_note = (f"\nThe data (`{bundled}`, {Path(out / bundled).stat().st_size / 1024**2:,.1f} MB) is bundled: "
                     "`python train.py` trains on it unless `--data` names another file.\n")
        plan_for_scripts = plan.edit(data={"path": bundled})
    else:
        if document["data"].get("path") and _internal(Path(document["data"]["path"])):
            document["data"] = {**document["data"], "path": None}  # a temp run folder: meaningless elsewhere
        data_note = "\nGive the training data with `--data FILE` (or `DATA=... ./launch.sh`).\n"
        plan_for_scripts = plan.edit(data={"path": document["data"].get("path")})
    source = _model_default(plan)
    if source and source != plan.model:
        document["model_source"] = source  # what train.py loads by default: a hub id or a folder
    document["training"] = dict(trainloop.DEFAULTS)
    (out / "plan.json").write_text(json.dumps({**document, "recipe": recipe}, indent=2) + "\n")
    (out / "train.py").write_text(Path(runtime.__file__).read_text())
    (out / "traindata.py").write_text(Path(traindata.__file__).read_text())  # train.py imports both from its folder
    (out / "trainloop.py").write_text(Path(trainloop.__file__).read_text())
    (out / "launch.sh").write_text(launch_script(plan_for_scripts))
    mode = (out / "launch.sh").stat().st_mode & 0o777
    (out / "launch.sh").chmod(mode | (mode & 0o444) >> 2)  # executable by whoever may read it (umask kept)
    (out / "requirements.txt").write_text(requirements(recipe, plan.settings))
    (out / "README.md").write_text(readme(plan, data_note))
    return out
