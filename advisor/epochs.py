"""How many passes over the data (C6.18): from the data's size and the task, with the rule's own words
as a reason. A default, not a verdict: ``Answers.epochs`` (and the plan's ``epochs`` setting) override it.

Practice, in examples per task (one number per band, the middle of what published recipes use):

* under 1,000 examples: 4 (3-5 for a few hundred; OpenAI's fine-tuning guide starts small sets at several
  epochs, LIMA trained 1,000 examples for many more);
* 1,000-10,000: 3 (Alpaca: 3 epochs on 52k examples);
* 10,000-100,000: 2 (Llama 2's supervised stage: 2 epochs on 27,540 annotations, Touvron et al. 2023);
* 100,000 and more, or 100M+ tokens: 1 (Komatsuzaki 2019, "One Epoch Is All You Need": with plentiful data
  one pass beats repeats for the same compute).

The task moves it by one (OpenAI's guide: +1-2 epochs where there is a single ideal completion —
classification, extraction; -1-2 where outputs lose diversity — open-ended generation and chat), within
1-5, and never above the size band's one epoch for very large sets.
"""
from __future__ import annotations

import math

BANDS = ((1_000, 4), (10_000, 3), (100_000, 2))
"""(examples below, epochs); from 100,000 examples on: 1."""
LARGE_TOKENS = 100_000_000
"""Tokens per epoch from which one pass is the rule whatever the example count."""
ONE_ANSWER_TASKS = ("classification", "extraction")
OPEN_TASKS = ("generation", "chat")
MAX_EPOCHS = 5


def epochs_for(num_examples: int, tokens_per_example: int, task: str) -> tuple[int, str]:
    """(epochs, why): the default number of passes for this data and task, and the sentence saying so."""
    tokens = num_examples * tokens_per_example
    if num_examples >= BANDS[-1][0] or tokens >= LARGE_TOKENS:
        return 1, (f"1 epoch: {num_examples:,} examples ({_tokens(tokens)} tokens) are a large set, where one pass "
                   "is the rule (Komatsuzaki 2019)")
    base = next(e for limit, e in BANDS if num_examples < limit)
    shift, why = 0, ""
    if task in ONE_ANSWER_TASKS:
        shift, why = 1, f", one more for {task} (one right answer per example)"
    elif task in OPEN_TASKS:
        shift, why = -1, f", one fewer for open-ended {task} (repeats cost output diversity)"
    epochs = max(1, min(MAX_EPOCHS, base + shift))
    return epochs, f"{epochs} epoch{'s' if epochs > 1 else ''}: {base} for {num_examples:,} examples{why}"


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int, data_parallel: int) -> int:
    """Optimizer steps per pass: examples over the global batch (micro-batch x accumulation x GPUs),
    rounded up. 2,000 examples at 4 x 1 x 1 -> 500 steps."""
    return max(1, math.ceil(num_examples / (batch_size * grad_accum * data_parallel)))


def _tokens(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)
