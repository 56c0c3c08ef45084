"""Tokenizer identity: which models can teach which (distillation compares output distributions token
by token, so teacher and student must split text into the same vocabulary — C6.7).

Catalog models carry a ``_tokenizer_family`` id in their JSON file (e.g. ``llama3`` for every Llama 3.x,
``qwen2`` for every Qwen2.5 size). Vocabulary size is not identity: Qwen2.5-0.5B reports 151,936 and
Qwen2.5-7B 152,064 — one tokenizer (151,665 real tokens), the larger models pad the embedding matrix —
while TinyLlama (Llama 2 SentencePiece) and Mixtral 8x7B v0.1 (Mistral's own SentencePiece) both report
32,000 with different vocabularies. Sources: the models' tokenizer files on the Hugging Face hub; the
Qwen2.5 model cards ("vocabulary 151,646 + padding"); the Phi-3 technical report (Abdin et al. 2024:
"the same tokenizer as Llama-2, vocabulary 32,064" — kept apart here because its extra chat tokens
differ); Mistral's tokenizer versions in mistral-common (v1: 32,000; v3: 32,768 with control tokens).

For a local model folder the family is a digest of its tokenizer's vocabulary (``tokenizer.json``'s
``model.vocab``, else the bytes of ``tokenizer.model``): two folders match when their vocabularies do.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def folder_tokenizer_id(folder: str | Path) -> str | None:
    """``vocab:<digest>`` of the folder's tokenizer vocabulary, or None when it has no tokenizer file."""
    folder = Path(folder)
    tok_json, sp_model = folder / "tokenizer.json", folder / "tokenizer.model"
    try:
        if tok_json.is_file():
            vocab = (json.loads(tok_json.read_text()).get("model") or {}).get("vocab")
            if vocab:
                payload = json.dumps(vocab, sort_keys=True, ensure_ascii=False).encode()
                return "vocab:" + hashlib.sha256(payload).hexdigest()[:16]
        if sp_model.is_file():
            return "vocab:" + hashlib.sha256(sp_model.read_bytes()).hexdigest()[:16]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return None


def same_tokenizer(a, b) -> bool | None:
    """True/False when both models' tokenizer families are known; None when one is not (a pasted
    config): then only the vocabulary size can be compared, which is weaker evidence."""
    fa, fb = getattr(a, "tokenizer_family", None), getattr(b, "tokenizer_family", None)
    if fa and fb:
        return fa == fb
    return None


def tokenizers_compatible(teacher, student) -> bool:
    """Pairing rule for distillation: the families when known, else equal vocabulary sizes."""
    same = same_tokenizer(teacher, student)
    return same if same is not None else teacher.vocab == student.vocab
