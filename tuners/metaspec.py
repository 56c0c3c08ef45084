"""Any architecture: derive a ``ModelSpec`` by building the model on the meta device.

For a ``model_type`` without hand-written arithmetic, transformers builds the model from its config
under ``torch.device("meta")`` (no memory, a second or two), and the module tree gives the exact
parameter count per kind, every linear layer's name and shape (LoRA targets), the embeddings, the
tying and the experts. The result is cached as JSON in the data folder (``<home>/specs/<key>.json``,
key = hash of the config) so the torch-free estimators read it afterwards. Entry points call
:func:`install`; the app derives in a child process so its server never imports torch
(``python -m tuners.metaspec < config.json``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

from estimators import derived
from estimators.errors import InputError
from estimators.spec import Linear, ModelSpec, ParamCounts, clean_config

_BLOCK_NAME = ("attn", "attention")


def cache_path(cfg: dict) -> Path:
    from tuners.store import home

    return home() / "specs" / f"{derived.config_key(cfg)}.json"


def lookup(cfg: dict, in_child: bool = False) -> dict:
    """The cached derived spec of ``cfg``, derived (here or in a child process) and cached when missing."""
    path = cache_path(cfg)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache entry is derived again
    data = _derive_in_child(cfg) if in_child else derived.to_dict(derive(cfg))
    from tuners.store import private_dir, write_private

    private_dir(path.parent)
    write_private(path, json.dumps(data))  # this user's only; whole or not at all (written beside, renamed)
    return data


def install(in_child: bool = False) -> None:
    """Lets ``spec_from_config`` handle any architecture transformers can build (see module doc)."""
    derived.install(lambda cfg: lookup(cfg, in_child))


def _derive_in_child(cfg: dict, timeout: float = 300) -> dict:
    from tuners.launch import ROOT, child_env

    proc = subprocess.run([sys.executable, "-m", "tuners.metaspec"], input=json.dumps(cfg), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=child_env())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(last)
    return json.loads(proc.stdout)


def redact(message: str, cfg: dict) -> str:
    """``message`` without any text value of ``cfg`` (errors never echo what a config holds)."""
    for value in cfg.values():
        if isinstance(value, str) and len(value) >= 3:
            message = message.replace(value, "…")
    return message


def model_class(cfg: dict):
    """The class the config's ``architectures`` names, else the auto class for its kind."""
    import transformers

    arch = (cfg.get("architectures") or [None])[0]
    if arch and hasattr(transformers, arch):
        return getattr(transformers, arch)
    from transformers.models.auto import modeling_auto as ma

    family = cfg.get("model_type")
    for mapping, auto in ((ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, transformers.AutoModelForCausalLM),
                          (ma.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, transformers.AutoModelForSeq2SeqLM),
                          (ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES, transformers.AutoModelForMaskedLM)):
        if family in mapping:
            return auto
    return transformers.AutoModel


def build_meta(cfg: dict):
    """The model of ``cfg`` on the meta device (nothing allocated)."""
    import torch
    import transformers

    cfg = clean_config(cfg)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if cfg.get("model_type") not in CONFIG_MAPPING_NAMES:  # its value is not repeated: it is the file's text
        raise InputError(f"the config's model_type is not an architecture transformers {transformers.__version__} "
                         "knows (check it, or update transformers)")
    try:
        conf = transformers.AutoConfig.for_model(**cfg)
    except Exception as exc:  # malformed values: transformers' own words, without the config's text
        raise InputError(f"config is not usable by transformers {transformers.__version__}: "
                         f"{redact(str(exc).splitlines()[0], cfg)} (give a Hugging Face config.json)") from None
    cls = model_class(cfg)
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        build = getattr(cls, "from_config", None) if cls.__name__.startswith("Auto") else None
        return build(conf) if build else cls(conf)


def derive(cfg: dict, model_id: str = "custom") -> ModelSpec:
    """Builds the model on the meta device and reads its module tree into a :class:`ModelSpec`."""
    model = build_meta(cfg)
    return spec_from_module(model, clean_config(cfg), model_id)


def _blocks(model) -> list[str]:
    """Prefixes of the transformer blocks: the entries of the longest ``ModuleList``(s)."""
    import torch

    lists = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, torch.nn.ModuleList) and len(mod)]
    longest = max((len(m) for _, m in lists), default=0)
    return [f"{name}.{i}." for name, mod in lists if len(mod) == longest or name.endswith(("encoder.block", "decoder.block"))
            for i in range(len(mod))]


def _suffix(path: str) -> str:
    """The module's name after its last numeric component: ``model.layers.3.self_attn.q_proj`` →
    ``self_attn.q_proj`` (a suffix of every layer's path, as PEFT matches ``target_modules``)."""
    parts = path.split(".")
    last_num = max((i for i, p in enumerate(parts) if p.isdigit()), default=-1)
    return ".".join(parts[last_num + 1:]) or path


def _text_config(model):
    conf = model.config
    return conf.get_text_config() if hasattr(conf, "get_text_config") else conf


def _num(conf, *names, default=0) -> int:
    for name in names:
        value = getattr(conf, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def spec_from_module(model, cfg: dict, model_id: str) -> ModelSpec:
    import torch
    from transformers.pytorch_utils import Conv1D

    emb_in, emb_out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = emb_out is not None and emb_out.weight is emb_in.weight
    names = {id(mod): name for name, mod in model.named_modules()}
    blocks = _blocks(model)
    in_block = lambda path: any(path.startswith(b) for b in blocks)  # noqa: E731
    counts = defaultdict(int)
    kinds = {}
    for path, mod in model.named_modules():
        own = list(mod.named_parameters(recurse=False))
        if not own:
            continue
        kind = ("embeddings" if isinstance(mod, torch.nn.Embedding) else
                "lm_head" if mod is emb_out else
                "norms" if "norm" in type(mod).__name__.lower() or "norm" in path.rsplit(".", 1)[-1].lower() else
                "attention" if in_block(path) and any(k in path.lower() for k in _BLOCK_NAME) else
                "mlp" if in_block(path) else "lm_head")
        for _, p in own:
            kinds.setdefault(id(p), kind)  # a tied head's weight stays with the embeddings
    seen = set()
    for p in model.parameters():  # shared (tied) tensors are listed once
        if id(p) not in seen:
            seen.add(id(p))
            counts[kinds[id(p)]] += p.numel()
    linears, experts, routed = _linears(model, emb_out, in_block, Conv1D)
    conf = _text_config(model)
    heads = _num(conf, "num_attention_heads", "n_head", "num_heads", default=1)
    hidden = emb_in.weight.shape[1]
    top_k = _num(conf, "num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts") if experts else 0
    params = ParamCounts(counts["embeddings"], counts["attention"], counts["mlp"], counts["norms"], counts["lm_head"])
    active = params.total - routed + (routed * top_k // experts if experts else 0)
    mlp_names = {lin.name for lin in linears if lin.role in ("mlp", "expert")}
    has_layer_norm = any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    kind = ("encoder_decoder" if getattr(model.config, "is_encoder_decoder", False) else
            "decoder" if type(model).__name__.endswith("CausalLM") else "encoder")
    return ModelSpec(
        id=model_id, family=cfg.get("model_type", ""), kind=kind, hidden=hidden, layers=len(blocks), heads=heads,
        kv_heads=_num(conf, "num_key_value_heads", default=heads),
        head_dim=_num(conf, "head_dim", "d_kv", default=max(hidden // heads, 1)),
        intermediate=_num(conf, "moe_intermediate_size" if experts else "intermediate_size", "intermediate_size",
                          "ffn_dim", "d_ff", "n_inner", default=4 * hidden),
        vocab=emb_in.weight.shape[0], params=params, linears=tuple(linears), tied_embeddings=tied, active_params=active,
        num_experts=experts, experts_per_token=top_k, max_positions=getattr(conf, "max_position_embeddings", None),
        norm="layer" if has_layer_norm else "rms",
        gated_mlp=any(n.rsplit(".", 1)[-1] in ("gate_proj", "w1", "w3", "gate_up_proj", "wi_0") for n in mlp_names),
        lora_experts=bool(experts) and _peft_adapts_experts(cfg.get("model_type")),
        embed_name=names[id(emb_in)].rsplit(".", 1)[-1],
        head_name=names[id(emb_out)].rsplit(".", 1)[-1] if emb_out is not None else "lm_head",
        derived=True, config=cfg)


def _linears(model, head, in_block, conv1d) -> tuple[list[Linear], int, int]:
    """Linear layers grouped by (suffix, shape), fused expert banks and routers; returns them with the
    number of experts per layer and the routed (expert) parameter count."""
    import torch

    groups: dict[tuple, int] = defaultdict(int)
    roles: dict[tuple, tuple[str, int]] = {}
    experts, routed = 0, 0
    for path, mod in model.named_modules():
        if mod is head:
            continue
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(mod, (torch.nn.Linear, conv1d)):
            w = mod.weight
            in_f, out_f = (w.shape[0], w.shape[1]) if isinstance(mod, conv1d) else (w.shape[1], w.shape[0])
            role = "expert" if ".experts." in path else "attn" if any(k in path.lower() for k in _BLOCK_NAME) else "mlp"
            key = (_suffix(path), in_f, out_f)
            groups[key] += 1
            roles[key] = (role, 1)
            if role == "expert":
                routed += sum(p.numel() for p in mod.parameters(recurse=False))
            continue
        for pname, p in mod.named_parameters(recurse=False):
            if p.dim() == 3 and in_block(path):  # a fused expert bank: (experts, a, b)
                experts = max(experts, p.shape[0])
                key = (f"{_suffix(path)}.{pname}", p.shape[2], p.shape[1])
                groups[key] += p.shape[0]
                roles[key] = ("expert", 2 if "gate_up" in pname else 1)
            if leaf == "experts":
                routed += p.numel()
            elif pname == "weight" and p.dim() == 2 and leaf in ("gate", "router") and in_block(path):
                key = (_suffix(path), p.shape[1], p.shape[0])
                groups[key] += 1
                roles[key] = ("router", 1)
    if not experts:  # per-expert nn.Linear layers (older layouts): count the experts of one layer
        experts = _experts_in_modulelist(model)
    linears = [Linear(name, in_f, out_f, n, roles[(name, in_f, out_f)][0], fused=roles[(name, in_f, out_f)][1])
               for (name, in_f, out_f), n in groups.items()]
    return linears, experts, routed


def _experts_in_modulelist(model) -> int:
    import torch

    return max((len(m) for name, m in model.named_modules()
                if isinstance(m, torch.nn.ModuleList) and name.endswith(".experts")), default=0)


def _conversion_tables():
    from peft.utils import transformers_weight_conversion as twc
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    return twc, get_checkpoint_conversion_mapping


def _peft_adapts_experts(model_type: str | None) -> bool:
    """Whether PEFT's ``all-linear`` adapts the fused experts (its v4→v5 conversion applies). A family is
    either mapped to a base pattern (``deepseek_v3`` → ``qwen2_moe``) or is a base itself (``qwen2_moe``)."""
    try:
        twc, mapping = _conversion_tables()
    except ImportError:
        return False
    if not model_type:
        return False
    base = twc._MODEL_TO_CONVERSION_PATTERN.get(model_type) or model_type
    return bool(twc._MOE_FUSED_TARGETS.get(base)) and mapping(model_type) is not None


def library_expert_families() -> set[str]:
    """Every model type the installed transformers and PEFT convert to fused experts that LoRA adapts."""
    twc, _ = _conversion_tables()
    candidates = {t for t in twc._MODEL_TO_CONVERSION_PATTERN if t.islower()} | set(twc._MOE_FUSED_TARGETS)
    return {t for t in candidates if _peft_adapts_experts(t)}


def main() -> int:
    """Reads a config.json on stdin, prints the derived spec's JSON (the app's child process)."""
    cfg = {}
    try:
        cfg = json.loads(sys.stdin.read())
        print(json.dumps(derived.to_dict(derive(cfg))))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 — one line for the parent, never a traceback
        text = redact(str(exc).splitlines()[0], cfg) if str(exc) else ""
        print(f"error: cannot build this architecture on the meta device ({type(exc).__name__}: {text}); check the "
              "config or use a supported model", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
