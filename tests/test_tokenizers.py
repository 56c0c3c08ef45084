"""Tokenizer identity (C6.7): catalog families, folder digests, and distillation pairing by family."""
import json

import pytest

from advisor.feasibility import pick_student, smaller_bases
from estimators.catalog import load_model, model_by_id, model_configs
from estimators.estimate import estimate
from estimators.errors import InputError
from estimators.setup import TrainSetup
from estimators.tokenizers import folder_tokenizer_id, same_tokenizer, tokenizers_compatible


def test_every_catalog_file_names_its_tokenizer_family():
    for model_id, raw in model_configs().items():
        assert isinstance(raw.get("_tokenizer_family"), str) and raw["_tokenizer_family"], model_id
        assert model_by_id(model_id).tokenizer_family == raw["_tokenizer_family"]


@pytest.mark.parametrize("a,b,same", [
    ("qwen2.5-0.5b", "qwen2.5-7b", True),          # 151,936 vs 152,064: one tokenizer, padded embedding
    ("qwen2.5-0.5b", "qwen2.5-72b", True),
    ("llama-3.2-1b", "llama-3.1-70b", True),
    ("tinyllama-1.1b", "mixtral-8x7b-v0.1", False),  # both 32,000 entries, different vocabularies
    ("mistral-7b-v0.3", "mixtral-8x7b-v0.1", False),  # v3 (32,768, control tokens) vs v1 (32,000)
    ("gpt2", "gpt2-xl", True),
    ("bert-base-uncased", "roberta-base", False),
])
def test_pairing_uses_the_family_not_the_vocabulary_size(a, b, same):
    assert same_tokenizer(model_by_id(a), model_by_id(b)) is same


def test_students_follow_the_family():
    # the largest same-BPE model at most a quarter the size (151,936 embedding rows vs the teacher's 152,064)
    assert pick_student(model_by_id("qwen2.5-7b")).id == "qwen3-1.7b"
    assert pick_student(model_by_id("llama-3.1-8b")).id == "llama-3.2-1b"
    assert pick_student(model_by_id("mixtral-8x7b-v0.1")) is None  # TinyLlama shares the size, not the tokenizer
    assert pick_student(model_by_id("bert-base-uncased")) is None  # DistilBERT is not in the catalog


def test_smaller_bases_are_a_quarter_or_less_and_of_the_same_kind():
    big = model_by_id("mixtral-8x7b-v0.1")
    names = smaller_bases(big)
    assert names and all(model_by_id(n).total_params * 4 <= big.total_params for n in names)
    assert all(model_by_id(n).kind == "decoder" for n in names) and "gpt2-xl" not in names


def test_padded_vocabulary_student_estimates():
    e = estimate(model_by_id("qwen2.5-0.5b"), TrainSetup(method="distillation"), teacher=model_by_id("qwen2.5-7b"))
    assert e.memory.total > 0
    with pytest.raises(InputError, match="must share a tokenizer"):
        estimate(model_by_id("tinyllama-1.1b"), TrainSetup(method="distillation"),
                 teacher=model_by_id("mixtral-8x7b-v0.1"))


def _folder(tmp_path, name, vocab):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({k: v for k, v in model_configs()["smollm2-135m"].items()
                                               if not k.startswith("_")}))
    (d / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": []}}))
    return d


def test_model_folders_compare_their_tokenizer_files(tmp_path):
    a = _folder(tmp_path, "a", {"hello": 0, "world": 1})
    b = _folder(tmp_path, "b", {"world": 1, "hello": 0})  # same vocabulary, other key order
    c = _folder(tmp_path, "c", {"hello": 0, "there": 1})  # same size, other tokens
    fa, fb, fc = (load_model(str(p)).tokenizer_family for p in (a, b, c))
    assert fa == fb == folder_tokenizer_id(a) and fa.startswith("vocab:") and fa != fc
    assert tokenizers_compatible(load_model(str(a)), load_model(str(b)))
    assert not tokenizers_compatible(load_model(str(a)), load_model(str(c)))


def test_unknown_family_falls_back_to_vocabulary_size(tmp_path):
    cfg = tmp_path / "config.json"  # a pasted config: no tokenizer files beside it
    cfg.write_text(json.dumps({k: v for k, v in model_configs()["qwen2.5-0.5b"].items() if not k.startswith("_")}))
    pasted = load_model(str(cfg))
    assert pasted.tokenizer_family is None
    assert same_tokenizer(pasted, model_by_id("qwen2.5-7b")) is None
    assert tokenizers_compatible(pasted, model_by_id("qwen2.5-0.5b"))


def test_distillation_loss_compares_the_shared_rows_of_a_padded_vocabulary():
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from tuners.runtime import loss_fn

    torch.manual_seed(0)
    ids = torch.randint(0, 10, (2, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    student_logits = torch.randn(2, 5, 12)  # 10 real tokens + 2 padding rows
    teacher_logits = torch.randn(2, 5, 16)  # the same 10 + 6 padding rows

    def student(**kw):
        return SimpleNamespace(logits=student_logits, loss=torch.tensor(1.0))

    def teacher(**kw):
        return SimpleNamespace(logits=teacher_logits)

    recipe = {"teacher": {"temperature": 1.0, "alpha": 1.0}}
    got = loss_fn(recipe, teacher)(student, batch)
    s, t = student_logits.reshape(-1, 12)[:, :12], teacher_logits.reshape(-1, 16)[:, :12]
    want = torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
    assert torch.isfinite(got) and torch.allclose(got, want)
