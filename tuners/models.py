"""Model and tokenizer sources for trial runs.

* a local Hugging Face model folder: real weights, loaded with ``from_pretrained``
  (``trust_remote_code`` off unless asked);
* a catalog id or a ``config.json``: random weights (memory and speed do not depend on the values),
  optionally scaled down — same family, fewer and narrower layers — for a quick check on a small machine.

Random models are written to the run folder and loaded back through the same ``from_pretrained``
path as real ones, so every method (QLoRA's 4-bit loading included) sees one loading code.
Nothing is fetched from a hub.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from estimators.catalog import model_configs
from estimators.errors import InputError, read_json
from estimators.spec import clean_config

SCALED_HIDDEN = 256
SCALED_HEADS = 4
SCALED_LAYERS = 2
SCALED_VOCAB = 4096
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelSource:
    folder: Path
    """A folder with config.json and weights, ready for from_pretrained."""
    config: dict
    random_weights: bool
    scaled_down: bool
    description: str


def _config_for(ref: str) -> tuple[dict, str]:
    path = Path(ref).expanduser()
    if path.is_file():
        return read_json(path, "config"), f"config {path}"
    raw = model_configs().get(ref.lower())
    if raw is None:
        raise InputError(f"unknown model '{ref}' (a catalog id, a config.json, or a local model folder)")
    return raw, f"catalog model {ref}"


def scale_down(cfg: dict, layers: int = SCALED_LAYERS, hidden: int = SCALED_HIDDEN, vocab: int = SCALED_VOCAB) -> dict:
    """A small copy of the architecture: same family and options, fewer and narrower layers."""
    cfg = dict(cfg)
    family = cfg.get("model_type")
    if family in ("deepseek_v2", "deepseek_v3"):
        raise InputError(f"--scale-down does not support {family} yet (use a model folder or another family)")
    heads = SCALED_HEADS
    head_dim = hidden // heads
    width = {"hidden_size": hidden, "n_embd": hidden, "d_model": hidden}
    for key, value in width.items():
        if key in cfg:
            old = cfg[key]
            cfg[key] = value
            for ff in ("intermediate_size", "d_ff", "n_inner"):
                if cfg.get(ff):
                    cfg[ff] = max(64, int(cfg[ff] * value / old) // 16 * 16)
    for key in ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers"):
        if key in cfg:
            cfg[key] = min(cfg[key], layers)
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if key in cfg:
            old_heads = cfg[key]
            cfg[key] = heads
            if "num_key_value_heads" in cfg:
                cfg["num_key_value_heads"] = heads if cfg["num_key_value_heads"] == old_heads else 2
    for key in ("head_dim", "d_kv"):
        if key in cfg:
            cfg[key] = head_dim
    if "query_pre_attn_scalar" in cfg:
        cfg["query_pre_attn_scalar"] = head_dim
    for key in ("num_local_experts", "num_experts"):
        if cfg.get(key):
            cfg[key] = min(cfg[key], 4)
            cfg["num_experts_per_tok"] = min(cfg.get("num_experts_per_tok", 2), 2)
    n_layers = min(cfg.get("num_hidden_layers") or layers, layers)
    for key in ("layer_types", "no_rope_layers"):  # per-layer lists follow the depth
        if isinstance(cfg.get(key), list):
            cfg[key] = cfg[key][:n_layers]
    if isinstance(cfg.get("mlp_only_layers"), list):
        cfg["mlp_only_layers"] = [i for i in cfg["mlp_only_layers"] if i < n_layers]
    cfg["vocab_size"] = min(cfg.get("vocab_size", vocab), vocab)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        value = cfg.get(key)
        if isinstance(value, int) and value >= cfg["vocab_size"]:
            cfg[key] = cfg["vocab_size"] - 1
        elif isinstance(value, list):
            cfg[key] = [v if v < cfg["vocab_size"] else cfg["vocab_size"] - 1 for v in value]
    return cfg


def auto_class(cfg: dict):
    """The runtime's auto class; BERT-style encoders have no LM head to tune in a trial."""
    from tuners import runtime

    arch = (cfg.get("architectures") or [""])[0]
    if cfg.get("model_type") in ("bert", "roberta") or "MaskedLM" in arch:
        raise InputError("trial runs train generative models; BERT-style encoders need a task head "
                         "(estimate works for them; use a decoder or T5 model for a trial)")
    return runtime.auto_class(cfg)


def materialize(ref: str, workdir: Path, scale: bool, seed: int = 0, reuse: bool = False) -> ModelSource:
    """Resolves ``--model`` into a folder ``from_pretrained`` can load. ``reuse``: a random-weight copy
    already written to ``workdir`` (by rank 0 of a sharded run) is taken as it is."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder '{ref}' has no config.json (point --model at a Hugging Face model folder)")
        if not any((path / f).exists() for f in WEIGHT_FILES):
            raise InputError(f"model folder '{ref}' has no weights (model.safetensors or pytorch_model.bin); "
                             "give a complete folder, or a config.json for random weights")
        cfg = read_json(path / "config.json", "config")
        if not scale:
            from tuners.files import check_weights

            check_weights(path)  # a damaged weight file: named, with the fix, before a loader crashes on it
            return ModelSource(path, cfg, False, False, f"model folder {path} (real weights)")
        raw, what = cfg, f"model folder {path}"
    else:
        raw, what = _config_for(ref)
    import torch
    import transformers

    folder = workdir / "model"
    note = f"{what}, random weights" + (", scaled down to a small copy of the architecture" if scale else "")
    if reuse and (folder / "config.json").is_file():
        return ModelSource(folder, json.loads((folder / "config.json").read_text()), True, scale, note)
    cfg = clean_config(raw)
    cfg.pop("torch_dtype", None)
    cfg.pop("dtype", None)
    if scale:
        cfg = scale_down(cfg)
    cls = auto_class(cfg)
    try:
        conf = transformers.AutoConfig.for_model(**cfg)
    except Exception as exc:
        raise InputError(f"config of {what} is not usable by transformers: {str(exc).splitlines()[0]}") from None
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls.from_config(conf)
    model.save_pretrained(folder)
    del model
    return ModelSource(folder, json.loads((folder / "config.json").read_text()), True, scale, note)


def tokenizer_for(source: ModelSource, texts: list[str], workdir: Path, reuse: bool = False):
    """The folder's own tokenizer; otherwise a byte-level BPE trained on the data (vocabulary capped
    by the model's), saved in the run folder so the exported script can reuse it."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not source.random_weights and any((source.folder / f).exists()
                                         for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")):
        tok = _folder_tokenizer(source.folder)
    elif reuse and (workdir / "tokenizer").is_dir():  # trained by rank 0 of this run
        tok = AutoTokenizer.from_pretrained(workdir / "tokenizer")
    else:
        from tuners.data import train_bpe

        vocab = int(source.config.get("vocab_size", SCALED_VOCAB))
        bpe = train_bpe(texts, min(vocab, 8192))
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>",
                                      bos_token="<bos>", unk_token="<unk>")
        tok.save_pretrained(workdir / "tokenizer")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _folder_tokenizer(folder: Path):
    """The folder's own tokenizer; a damaged one is an InputError naming the file and the fix."""
    from transformers import AutoTokenizer

    from tuners.files import RETOKENIZE, check_tokenizer

    check_tokenizer(folder)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"the tokenizer in {folder} could not be loaded ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''}): {RETOKENIZE}") from None
