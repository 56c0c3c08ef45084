"""Estimated peak vs the measured peak of live tensor bytes of a real training step (CPU).

Tiny random Llama-style models are built from a config, saved to a temp folder and loaded back with
``from_pretrained``; PEFT wraps them exactly as a user's run would. The issue asks for 15 %.
"""
import json
import warnings

import pytest

from estimators.catalog import load_model
from estimators.memory import estimate_memory
from estimators.methods.base import lora_extra_activations
from estimators.setup import TrainSetup

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from tuners.measure import measure_step_memory  # noqa: E402

TOLERANCE = 0.15
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 352, "vocab_size": 2048,
        "max_position_embeddings": 1024, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{k: v for k, v in TINY.items() if k != "model_type"}))
    model.save_pretrained(folder)
    return folder


def build(folder, method: str, dtype, checkpointing: bool, lora_dropout: float = 0.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    if method == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear", lora_dropout=lora_dropout))
    elif method == "dora":  # DoRA (Liu et al. 2024): PEFT's LoRA with a learned magnitude per output
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0,
                                                           use_dora=True))
    elif method == "prompt_tuning":
        model = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=10))
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if method != "full":
            model.enable_input_require_grads()
    model.train()
    return model


CASES = [(m, c, "fp32", 4, 128) for m in ("full", "lora", "prompt_tuning") for c in (False, True)]
CASES += [("lora", False, "bf16", 2, 64), ("full", True, "bf16", 2, 64)]
CASES += [("dora", False, "fp32", 4, 128), ("dora", True, "fp32", 4, 128), ("dora", False, "bf16", 2, 64),
          ("dora", True, "bf16", 2, 64)]


@pytest.mark.slow
@pytest.mark.parametrize("method,checkpointing,precision,batch,seq", CASES)
def test_estimated_peak_within_15_percent(tiny_folder, method, checkpointing, precision, batch, seq):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    torch.manual_seed(0)
    model = build(tiny_folder, method, dtype, checkpointing)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, TINY["vocab_size"], (batch, seq))
    measured = measure_step_memory(model, optimizer, {"input_ids": ids, "labels": ids})

    spec = load_model(str(tiny_folder))  # reads the saved config.json, as the CLI does for a folder
    setup = TrainSetup(method=method, batch_size=batch, seq_len=seq, precision=precision, device="cpu",
                       gradient_checkpointing=checkpointing, lora_rank=8, num_virtual_tokens=10)
    est = estimate_memory(spec, setup)
    ratio = est.peak_allocated / measured.peak_allocated
    report = json.dumps({"estimated": est.phases, "measured": measured.phases})
    print(f"{method} ckpt={checkpointing} {precision}: estimate/measured = {ratio:.3f}")
    assert abs(ratio - 1) <= TOLERANCE, f"estimate/measured = {ratio:.3f}: {report}"
    # The resident part (weights + optimizer states) must be right on its own, not only the sum.
    resident = est.weights + est.optimizer
    assert abs(resident / measured.resident_before - 1) < 0.02, report


def _saved_bytes(folder, dtype, dropout: float) -> int:
    """Bytes of the distinct storages autograd keeps for backward after one forward of a PEFT LoRA model."""
    model = build(folder, "lora", dtype, False, lora_dropout=dropout)
    model.enable_input_require_grads()  # as PEFT does under checkpointing: every block's inputs need a gradient
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(0)
    ids = torch.randint(0, TINY["vocab_size"], (2, 32))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(kept.values())


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_lora_dropout_keeps_a_dropped_out_copy_and_a_mask_per_adapted_input(tiny_folder, precision):
    """lora_dropout > 0 (a plan setting, default 0; common in published recipes): what the forward keeps
    for backward grows by what the estimate says. bf16: the mask of each adapted layer (on a CPU a noise
    tensor in the adapters' fp32); exact. fp32: each layer also keeps its own dropped-out copy where
    without dropout layers shared the input; the estimate may over-count one hidden-wide fp32 tensor per
    block (the inputs only LoRA kept are freed, which it counts per distinct width)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    measured = _saved_bytes(tiny_folder, dtype, 0.1) - _saved_bytes(tiny_folder, dtype, 0.0)
    spec = load_model(str(tiny_folder))
    per_block = [lora_extra_activations(spec, TrainSetup(method="lora", lora_rank=8, precision=precision,
                                                         device="cpu", lora_dropout=p)) for p in (0.0, 0.1)]
    estimated = (per_block[1] - per_block[0]) * 2 * 32 * spec.layers
    inputs = 6 * TINY["hidden_size"] + TINY["intermediate_size"]  # q, k, v, o, gate, up; down
    if precision == "bf16":
        assert measured == estimated == 4 * inputs * 2 * 32 * spec.layers
    else:
        assert measured <= estimated <= measured + 4 * TINY["hidden_size"] * 2 * 32 * spec.layers
