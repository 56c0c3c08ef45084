"""What a training script needs around its steps: a learning-rate schedule with warm-up, gradient
clipping, an eval split with an eval loss, periodic checkpoints with ``--resume``, a progress line with
tokens/s and ETA, and a clear error when a model folder has no tokenizer.

Standalone (torch only, imported lazily): ``tuners.export`` copies this file next to the exported
``train.py`` as ``trainloop.py``; ``train.py`` (``tuners/runtime.py``) calls it from small call sites in
its loop. The defaults follow common fine-tuning practice (the Hugging Face ``Trainer`` and TRL:
a linear warm-up then cosine or linear decay to zero, gradient-norm clipping at 1.0).
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

DEFAULTS = {"lr_schedule": "cosine", "warmup_ratio": 0.03, "max_grad_norm": 1.0, "eval_share": 0.05,
            "eval_max_examples": 200, "eval_every": 0, "save_every": 0, "keep_checkpoints": 2}
"""``plan.json``'s ``training`` block overrides these; the command line overrides both. ``eval_every``
and ``save_every`` 0: evaluate and checkpoint once, at the end."""
SCHEDULES = ("cosine", "linear", "constant")
CHECKPOINTS = "checkpoints"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt", "sentencepiece.bpe.model",
                   "tiktoken.model")


def add_arguments(ap, training: dict | None = None) -> None:
    """The loop's options on ``train.py``'s parser, with the plan's ``training`` block as defaults."""
    d = {**DEFAULTS, **(training or {})}
    ap.add_argument("--lr-schedule", choices=SCHEDULES, default=d["lr_schedule"],
                    help=f"learning rate after the warm-up (default {d['lr_schedule']}; decays to 0 at the last step)")
    ap.add_argument("--warmup-ratio", type=float, default=d["warmup_ratio"],
                    help=f"share of the steps that ramp the learning rate up linearly (default {d['warmup_ratio']})")
    ap.add_argument("--warmup-steps", type=int, help="warm-up steps (overrides --warmup-ratio)")
    ap.add_argument("--max-grad-norm", type=float, default=d["max_grad_norm"],
                    help=f"clip the gradients' global L2 norm (default {d['max_grad_norm']}; 0 = no clipping)")
    ap.add_argument("--eval-share", type=float, default=d["eval_share"],
                    help=f"share of the examples held out for the eval loss (default {d['eval_share']}, at most "
                         f"{d['eval_max_examples']} examples; 0 = no eval)")
    ap.add_argument("--eval-every", type=int, default=d["eval_every"],
                    help="eval loss every N optimizer steps (default: at the end only)")
    ap.add_argument("--save-every", type=int, default=d["save_every"],
                    help="a checkpoint every N optimizer steps under OUTPUT/checkpoints (default: at the end only)")
    ap.add_argument("--keep-checkpoints", type=int, default=d["keep_checkpoints"],
                    help=f"how many recent checkpoints to keep (default {d['keep_checkpoints']})")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the latest checkpoint under OUTPUT/checkpoints (starts fresh when there is none)")


def check_args(args) -> str | None:
    """One line naming a bad loop option, or None."""
    if not 0 <= args.warmup_ratio < 1:
        return f"--warmup-ratio must be in [0, 1) (got {args.warmup_ratio})"
    if args.warmup_steps is not None and args.warmup_steps < 0:
        return "--warmup-steps must be 0 or more"
    if not (args.max_grad_norm >= 0 and math.isfinite(args.max_grad_norm)):
        return "--max-grad-norm must be 0 (off) or a positive number"
    if not 0 <= args.eval_share < 1:
        return f"--eval-share must be in [0, 1) (got {args.eval_share})"
    if args.eval_every < 0 or args.save_every < 0 or args.keep_checkpoints < 1:
        return "--eval-every and --save-every must be 0 or more, --keep-checkpoints at least 1"
    return None


# --- the tokenizer ---------------------------------------------------------------------------------


def tokenizer_problem(folder) -> str | None:
    """Why ``folder`` (a local model folder) cannot give a tokenizer, or None (a hub id is left to
    transformers). Without this check transformers fails deep inside with a message about
    sentencepiece or tiktoken, which names neither the folder nor the fix."""
    p = Path(str(folder)).expanduser()
    if not p.is_dir() or any((p / name).is_file() for name in TOKENIZER_FILES):
        return None
    return (f"the model folder {p} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...): give --tokenizer "
            "FOLDER with the tokenizer this model was trained with (e.g. the original model's folder)")


# --- the eval split ---------------------------------------------------------------------------------


def split_eval(encoded: list, share: float, need_for_training: int, seed: int = 0,
               max_examples: int = DEFAULTS["eval_max_examples"]) -> tuple[list, list]:
    """(train, eval): a seeded random ``share`` of the examples (at least 1, at most ``max_examples``) held
    out, as long as ``need_for_training`` examples (one optimizer step) remain; else no eval split."""
    n_eval = min(max_examples, max(1, round(share * len(encoded)))) if share > 0 else 0
    if n_eval == 0 or len(encoded) - n_eval < need_for_training:
        return encoded, []
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [e for i, e in enumerate(encoded) if i not in held], [encoded[i] for i in sorted(held)]


def evaluate(model, rows: list, make_batch, loss, batch_size: int, autocast=None) -> float:
    """Mean loss over ``rows`` (weighted by each batch's labelled tokens), without gradients."""
    import contextlib

    import torch

    was_training = model.training
    model.eval()
    total, weight = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = make_batch(rows[i:i + batch_size])
            with torch.autocast(autocast[0], dtype=autocast[1]) if autocast else contextlib.nullcontext():
                value = loss(model, batch)
            tokens = int((batch["labels"] != -100).sum())
            total += float(value) * tokens
            weight += tokens
    if was_training:
        model.train()
    return total / max(weight, 1)


# --- the learning rate -----------------------------------------------------------------------------


def warmup_steps(args, total: int) -> int:
    if args.warmup_steps is not None:
        return min(args.warmup_steps, total)
    return math.ceil(args.warmup_ratio * total)  # 3 % of 1,000 steps = 30 warm-up steps


def lr_factor(step: int, schedule: str, warmup: int, total: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a share of the peak: linear warm-up over
    ``warmup`` steps, then constant, linear or cosine decay to 0 at ``total`` (as transformers'
    ``get_cosine_schedule_with_warmup``: 0.5·(1 + cos(π·progress)))."""
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never 0: the first step already moves the weights a little
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer, args, total: int):
    """A ``LambdaLR`` that multiplies the optimizer's learning rate by ``lr_factor``."""
    import torch

    warm = warmup_steps(args, total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, args.lr_schedule, warm, total))


def update(optimizer, scheduler, params, max_grad_norm: float) -> float | None:
    """One optimizer update after the backward passes: clip the gradients' global norm, step, zero the
    gradients, advance the schedule. Returns the norm before clipping (None without clipping)."""
    import torch

    norm = None
    if max_grad_norm > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return norm


# --- checkpoints -----------------------------------------------------------------------------------


def trainable_state(model) -> dict:
    """The weights that train (a checkpoint holds what changes; the frozen base comes from the model folder)."""
    return {n.removeprefix("module."): p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(output, model, optimizer, scheduler, step: int, state: dict, keep: int) -> Path:
    """``OUTPUT/checkpoints/step-N``: trainable weights, optimizer and schedule states, RNG states and the
    loop's own state (losses, step). Written to a temporary folder and renamed, so a crash mid-write never
    leaves a half checkpoint that ``--resume`` would pick; only the ``keep`` newest stay."""
    import torch

    root = Path(output) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step-{step}", root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(trainable_state(model), tmp / "trainable.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(checkpoints(output), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(output) -> list[Path]:
    root = Path(output) / CHECKPOINTS
    return [p for p in root.glob("step-*") if p.is_dir() and (p / "state.json").is_file()] if root.is_dir() else []


def latest_checkpoint(output) -> Path | None:
    found = checkpoints(output)
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def load_checkpoint(folder, model, optimizer, scheduler) -> dict:
    """Restores what ``save_checkpoint`` wrote; returns the loop's state (``step``, ``losses``...)."""
    import torch

    folder = Path(folder)
    weights = torch.load(folder / "trainable.pt", map_location="cpu")
    own = {n.removeprefix("module."): p for n, p in model.named_parameters()}  # DDP's wrapper or not
    unknown = [k for k in weights if k not in own]
    if unknown:
        raise ValueError(f"checkpoint {folder} does not match this model and plan (e.g. {unknown[0]}): resume with "
                         "the plan and model it was written with, or start without --resume")
    with torch.no_grad():
        for name, value in weights.items():
            own[name].copy_(value.to(own[name].device, own[name].dtype))
    states = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    torch.set_rng_state(states["torch_rng"])
    random.setstate(states["python_rng"])
    return json.loads((folder / "state.json").read_text())


# --- progress --------------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """``1:02:03``, ``2:03``, or ``45 s``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}" if m else f"{s} s"


class Progress:
    """A progress line per optimizer step: loss, learning rate, gradient norm, tokens/s (labelled tokens
    excluded: every token the model reads counts) and the time left at this step's pace."""

    def __init__(self, total: int, start_step: int = 0):
        self.total, self.start_step, self.t0 = total, start_step, time.time()
        self.tokens = 0

    def line(self, step: int, loss: float, tokens: int, lr: float, grad_norm: float | None) -> str:
        self.tokens += tokens
        elapsed = max(time.time() - self.t0, 1e-9)
        done = step - self.start_step
        eta = elapsed / max(done, 1) * (self.total - step)
        norm = "" if grad_norm is None else f" | grad norm {grad_norm:.2f}"
        return (f"step {step}/{self.total} | loss {loss:.4f} | lr {lr:.2e}{norm} | {self.tokens / elapsed:,.0f} tokens/s"
                f" | {clock(elapsed)} elapsed, ETA {clock(eta)}")
