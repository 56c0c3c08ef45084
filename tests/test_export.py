"""The exported project: for every method, ``export --plan`` writes the project and its ``train.py``
trains tiny local models in a fresh interpreter; the saved adapter or model reloads (with plain
transformers/peft, here) and reproduces the trained outputs."""
import json
import os
import subprocess
import sys
import warnings

import pytest

from estimators.methods import REGISTRY
from estimators.plan import Plan
from tests.conftest import ROOT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytestmark = pytest.mark.slow

LLAMA = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
             vocab_size=512, max_position_embeddings=256, tie_word_embeddings=False)
GPT2 = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=512, n_positions=256)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny Llama student and teacher, a tiny GPT-2 (saved model folders), a tokenizer and data."""
    from transformers import PreTrainedTokenizerFast

    from tuners.data import train_bpe

    root = tmp_path_factory.mktemp("export")
    rows = [{"input": f"Q{i % 4}: say the colour.", "output": f"The colour is {['red', 'green', 'blue', 'gold'][i % 4]}."}
            for i in range(24)]
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    bpe = train_bpe([r["input"] + r["output"] for r in rows], 300)
    PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                            unk_token="<unk>").save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).save_pretrained(root / "llama")
    teacher = dict(LLAMA, num_hidden_layers=3, hidden_size=96, intermediate_size=192)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**teacher)).save_pretrained(root / "teacher")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).save_pretrained(root / "gpt2")
    return root


# (case id, model folder, method, settings): every method, plus the variants the issue names.
CASES = [
    ("lora-q,v", "llama", "lora", {"lora_targets": "q,v"}),
    ("lora-gpt2-q,v", "gpt2", "lora", {"lora_targets": "q,v"}),
    ("qlora-4bit", "llama", "qlora", {"precision": "bf16"}),
    ("qlora-8bit", "llama", "qlora", {"precision": "bf16", "quant_bits": 8}),
    ("full-mixed-precision", "llama", "full", {"precision": "bf16", "mixed_precision": True}),
    ("full-gpt2", "gpt2", "full", {}),
    ("prompt_tuning", "llama", "prompt_tuning", {"num_virtual_tokens": 4, "lr": 0.3}),
    ("adapters", "llama", "adapters", {"adapter_size": 8}),
    ("distillation", "llama", "distillation", {"teacher": "TEACHER"}),
    ("dora", "llama", "dora", {"lora_rank": 4}),
    # Speed settings (issue 21): packed rows and the chunked fused loss run in the exported script.
    ("lora-packing-fused-ce", "llama", "lora", {"packing": True, "fused_cross_entropy": True, "seq_len": 32}),
    ("full-fused-ce", "llama", "full", {"fused_cross_entropy": True}),
    ("lora-dropout", "llama", "lora", {"lora_dropout": 0.1}),
]


def test_cases_cover_every_method():
    assert {c[2] for c in CASES} == set(REGISTRY)


def export(tiny, tmp_path, model, method, settings) -> tuple[Plan, object]:
    settings = {"batch_size": 2, "seq_len": 32, "precision": "fp32", "lr": 5e-3, **settings}
    if settings.get("teacher") == "TEACHER":
        settings["teacher"] = str(tiny / "teacher")
    if "lora_rank" in REGISTRY[method].setting_names:
        settings.setdefault("lora_rank", 4)
    plan = Plan.create(str(tiny / model), method, settings, data={"path": str(tiny / "train.jsonl")})
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json()))
    out = tmp_path / "project"
    r = subprocess.run([sys.executable, "-m", "advisor", "export", "--plan", str(tmp_path / "plan.json"), "--out",
                        str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return plan, out


def reload(tiny, model, method, plan: Plan, out):
    """The saved artifact loaded with plain transformers/peft (our loader only for adapter layers)."""
    kwargs = {"dtype": torch.float32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if REGISTRY[method].artifact == "model":
            return transformers.AutoModelForCausalLM.from_pretrained(out, **kwargs)
        if method == "qlora":
            q = (transformers.BitsAndBytesConfig(load_in_8bit=True) if plan.settings["quant_bits"] == 8 else
                 transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                 bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))
            kwargs = {"dtype": torch.bfloat16, "quantization_config": q}
        base = transformers.AutoModelForCausalLM.from_pretrained(tiny / model, **kwargs)
        if method == "qlora":
            base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        if method == "adapters":
            from tuners.runtime import load_artifact
            return load_artifact(base, out)
        return peft.PeftModel.from_pretrained(base, out)


@pytest.mark.parametrize("case,model,method,settings", CASES, ids=[c[0] for c in CASES])
def test_exported_train_py_trains_saves_and_reloads(tiny, tmp_path, case, model, method, settings):
    from safetensors.torch import load_file

    plan, project = export(tiny, tmp_path, model, method, settings)
    assert {p.name for p in project.iterdir()} >= {"train.py", "plan.json", "launch.sh", "requirements.txt", "README.md"}
    document = json.loads((project / "plan.json").read_text())
    assert document["settings"] == plan.settings and document["recipe"]
    out = tmp_path / "out"
    cmd = [sys.executable, str(project / "train.py"), "--tokenizer", str(tiny / "tokenizer"), "--max-steps", "2",
           "--output", str(out), "--verify"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)  # no project on the path
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 2 and all(v == v and abs(v) < 1e4 for v in log["losses"])
    probe = load_file(out / "verify.safetensors")
    model_ = reload(tiny, model, method, plan, out)
    model_.eval()
    with torch.no_grad():
        logits = model_(input_ids=probe["input_ids"]).logits.float()
    torch.testing.assert_close(logits, probe["logits"], rtol=1e-3, atol=1e-3)


def test_lora_short_targets_resolve_per_architecture(tiny, tmp_path):
    """q,v means q_proj,v_proj on Llama and the fused c_attn on GPT-2, in the exported recipe."""
    for model, expected in (("llama", ["q_proj", "v_proj"]), ("gpt2", ["c_attn"])):
        _, project = export(tiny, tmp_path / model, model, "lora", {"lora_targets": "q,v"})
        recipe = json.loads((project / "plan.json").read_text())["recipe"]
        assert recipe["peft"]["kwargs"]["target_modules"] == expected


def test_lora_dropout_reaches_the_exported_recipe_and_the_built_model(tiny, tmp_path):
    """The plan's lora_dropout is what PEFT gets in the export (and so in the trial: one builder); 0 by default."""
    from tuners import runtime

    for given, expected in (({"lora_dropout": 0.1}, 0.1), ({}, 0.0)):
        _, project = export(tiny, tmp_path / str(expected), "llama", "lora", given)
        document = json.loads((project / "plan.json").read_text())
        assert document["recipe"]["peft"]["kwargs"]["lora_dropout"] == expected
        built = runtime.build(document, str(tiny / "llama"), "cpu")
        drops = [m.lora_dropout["default"] for m in built.model.modules() if hasattr(m, "lora_dropout")]
        assert drops and all((d.p == expected) if expected else isinstance(d, torch.nn.Identity) for d in drops)


def test_export_refuses_a_bad_plan_with_one_line(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"model": "llama-3.1-8b", "method": "lora", "settings": {"lora_rank": -1}}))
    r = subprocess.run([sys.executable, "-m", "advisor", "export", "--plan", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "lora_rank must be at least 1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
