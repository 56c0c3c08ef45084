"""Model specs: exact parameter counts and layer shapes from a Hugging Face ``config.json``.

Pure Python (no torch). Each family below mirrors the module tree that transformers 5.x builds
for it, so the totals equal ``sum(p.numel() for p in model.parameters())`` of the real class
(tests check this on the meta device for every catalog model). Tied embeddings are counted once.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field

from estimators.errors import InputError


@dataclass(frozen=True)
class Linear:
    """One kind of linear layer in the model (what LoRA can target)."""

    name: str
    """Module name as transformers calls it (``q_proj``, ``c_attn``, ``wi_0``...)."""
    in_features: int
    out_features: int
    count: int
    """How many such layers the whole model has."""
    role: str
    """``attn``, ``mlp``, ``expert`` (routed MoE experts, stored fused in transformers 5) or ``router``."""
    fused: int = 1
    """Projections of the pre-fusion checkpoint one tensor holds (2 for an expert bank's gate_up_proj):
    PEFT multiplies the LoRA rank by it when it adapts the fused tensor."""


@dataclass(frozen=True)
class ParamCounts:
    """Parameter count of the model, split by what the parameters do."""

    embeddings: int
    """Token (and position / token-type) embeddings."""
    attention: int
    mlp: int
    """Feed-forward blocks, MoE experts, shared experts and routers included."""
    norms: int
    lm_head: int
    """Untied output projection (0 when tied to the embeddings) plus any head-only layers."""

    @property
    def total(self) -> int:
        return self.embeddings + self.attention + self.mlp + self.norms + self.lm_head


@dataclass(frozen=True)
class ModelSpec:
    """What the estimators need to know about one model."""

    id: str
    family: str
    """``model_type`` from the config (``llama``, ``qwen2``, ``t5``...)."""
    kind: str
    """``decoder``, ``encoder`` or ``encoder_decoder``."""
    hidden: int
    layers: int
    """Transformer blocks (encoder + decoder for T5)."""
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    """Feed-forward width of a dense block (the expert width for MoE models)."""
    vocab: int
    params: ParamCounts
    linears: tuple[Linear, ...]
    tied_embeddings: bool
    active_params: int
    """Parameters used per token: equals the total except for MoE models."""
    num_experts: int = 0
    experts_per_token: int = 0
    max_positions: int | None = None
    source: str = ""
    tokenizer_family: str | None = None
    """Tokenizer identity (catalog ``_tokenizer_family``; a vocabulary digest for model folders), see
    estimators/tokenizers.py. None when unknown (a pasted config)."""
    norm: str = "rms"
    """``rms`` (RMSNorm, computed in fp32 by transformers) or ``layer`` (LayerNorm)."""
    gated_mlp: bool = True
    """The feed-forward block is gated (SwiGLU / GeGLU: three matmuls) rather than act(W1 x) W2."""
    lora_experts: bool = False
    """PEFT's ``all-linear`` also adapts the fused expert banks and the router (families transformers
    converts from the v4 per-expert layout; see ``estimators/families.py``)."""
    embed_name: str = "embed_tokens"
    """The input embedding's module name (a LoRA target: ``--lora-targets embed_tokens``)."""
    head_name: str = "lm_head"
    """The output head's module name (a LoRA target: ``--lora-targets lm_head``)."""
    derived: bool = False
    """Built from a meta-device instantiation (``tuners/metaspec.py``) rather than hand-written arithmetic."""
    config: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_params(self) -> int:
        return self.params.total

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def largest_tensor(self) -> int:
        """Elements of the largest single weight tensor (embedding, a linear, or a fused expert bank)."""
        sizes = [self.vocab * self.hidden]
        sizes += [lin.in_features * lin.out_features for lin in self.linears if lin.role != "expert"]
        if self.num_experts:  # transformers 5 fuses each layer's experts: E × h × 2I for gate_up_proj
            sizes.append(self.num_experts * max(lin.in_features * lin.out_features for lin in self.linears
                                                if lin.role == "expert"))
        return max(sizes)

    @property
    def io_linears(self) -> tuple[Linear, ...]:
        """The input embedding and the output head, which LoRA adapts only when named (PEFT's
        ``all-linear`` skips the head; an embedding gets ``lora_embedding_A/B`` of r·(vocab + hidden))."""
        return (Linear(self.embed_name, self.vocab, self.hidden, 1, "embedding"),
                Linear(self.head_name, self.hidden, self.vocab, 1, "head"))

    def linear_params(self, roles: tuple[str, ...] = ("attn", "mlp", "expert", "router")) -> int:
        return sum(lin.in_features * lin.out_features * lin.count for lin in self.linears if lin.role in roles)


# --- reading the config --------------------------------------------------------------------------

_ENCODERS = {"bert", "roberta"}
_ENC_DEC = {"t5"}
# transformers' default for ``tie_word_embeddings`` per config class (5.x), used when the key is absent.
_TIE_DEFAULT = {"gemma2": True, "gpt2": True, "bert": True, "roberta": True, "t5": True}
# MoE families whose checkpoints transformers 5 converts from v4's per-expert nn.Linear layers to fused
# expert tensors (transformers 5.23 conversion_mapping._MODEL_TO_CONVERSION_PATTERN → "mixtral" or
# "qwen2_moe"). For them PEFT 0.21 (utils/transformers_weight_conversion.py) turns ``all-linear`` into the
# router's weight plus the fused ``gate_up_proj`` (rank 2r) and ``down_proj`` (rank r) of every expert.
# Other MoE families (gpt-oss) keep their experts frozen under all-linear. Checked against the installed
# libraries by tests/test_any_architecture.py, which reports (and checks the meta-device path of) any newer
# family the installed libraries know.
PEFT_EXPERT_FAMILIES = frozenset({
    "mixtral", "minimax", "minimax_m2", "qwen2_moe", "qwen3_moe", "qwen3_next", "qwen3_omni_moe",
    "qwen3_omni_moe_thinker", "qwen3_omni_moe_text", "deepseek_v2", "deepseek_v3", "deepseek_v32", "dots1",
    "ernie4_5_moe", "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "glm4v_moe", "longcat_flash", "solar_open",
    "mellum", "hunyuan_v1_moe", "flex_olmo", "olmoe", "exaone_moe", "cohere2_moe", "afmoe", "beam"})


def peft_adapts_experts(family: str) -> bool:
    return family in PEFT_EXPERT_FAMILIES


# Integer config keys we read, with the range a real model can have. A value outside is a wrong config
# (or a typo), refused before any arithmetic: a negative expert count would give negative parameters.
_DIM, _LAYERS, _COUNT = (1, 1 << 20), (1, 10_000), (0, 65_536)
_INT_BOUNDS = {
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "head_dim", "d_kv", "kv_lora_rank", "q_lora_rank",
                     "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"), _DIM),
    **dict.fromkeys(("intermediate_size", "n_inner", "d_ff", "moe_intermediate_size"), (1, 1 << 22)),
    **dict.fromkeys(("num_hidden_layers", "n_layer", "num_layers"), _LAYERS),
    "num_decoder_layers": (0, 10_000), "first_k_dense_replace": (0, 10_000),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "num_key_value_heads"), (1, 65_536)),
    **dict.fromkeys(("num_local_experts", "num_experts_per_tok", "n_routed_experts", "n_shared_experts",
                     "type_vocab_size", "relative_attention_num_buckets"), _COUNT),
    "vocab_size": (1, 1 << 24),
    **dict.fromkeys(("max_position_embeddings", "n_positions"), (1, 1 << 31)),
}
_FLAGS = ("tie_word_embeddings", "attention_bias", "mlp_bias")
MAX_PARAMS = 10**15


def _shown(value) -> str:
    """A config value as an error may show it: numbers as they are, anything else by its kind only
    (a config can hold private text; errors never echo it)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    return {str: "text", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class _Cfg:
    """Reads config keys, collecting every missing or malformed one into a single error."""

    def __init__(self, raw: dict, model_id: str):
        self.raw = raw
        self.model_id = model_id
        self.problems: list[str] = []
        self.refused: set[str] = set()
        """Keys already reported out of type or bounds (not reported twice by ``int``)."""
        for key, (low, high) in _INT_BOUNDS.items():  # every known integer, whether a family reads it or not
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
                self.refused.add(key)
                self.problems.append(f"'{key}' must be a whole number from {low} to {high:,} (got {_shown(value)})")
        for key in _FLAGS:
            if raw.get(key) is not None and not isinstance(raw[key], bool):
                self.problems.append(f"'{key}' must be true or false (got {_shown(raw[key])})")

    def int(self, *keys: str, default: int | None = None, positive: bool = True) -> int:
        for key in keys:
            value = self.raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or (positive and value <= 0):
                if key not in self.refused:
                    self.problems.append(f"'{key}' must be a positive integer (got {_shown(value)})")
                return 1
            return value
        if default is None:
            self.problems.append(f"missing '{keys[0]}'")
            return 1
        return default

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key)
        return value if isinstance(value, bool) else default

    def check(self) -> None:
        if self.problems:
            raise InputError(
                f"config of '{self.model_id}' is unusable: {'; '.join(self.problems)} "
                "(give a complete Hugging Face config.json)"
            )


def clean_config(raw: dict) -> dict:
    """Drops catalog metadata (keys starting with ``_``) and loading-only keys."""
    return {k: v for k, v in raw.items() if not k.startswith("_") and k not in ("quantization_config", "auto_map")}


def spec_from_config(raw: dict, model_id: str = "custom", source: str = "") -> ModelSpec:
    """Builds a :class:`ModelSpec` from a config dict; raises :class:`InputError` when it cannot."""
    if not isinstance(raw, dict):
        raise InputError(f"config of '{model_id}' must be a JSON object (give a Hugging Face config.json)")
    cfg = clean_config(raw)
    family = cfg.get("model_type")
    if not isinstance(family, str) or not family.strip():
        raise InputError(f"config of '{model_id}' needs 'model_type' as text (e.g. llama, qwen3, gpt2); "
                         f"got {_shown(family) if family is not None else 'none'}")
    builder = _FAMILIES.get(family)
    if builder is None:  # any other architecture: derived from a meta-device build (tuners/metaspec.py)
        from estimators.derived import derived_spec

        _Cfg(cfg, model_id).check()  # the keys we know are typed and bounded whoever counts

        return derived_spec(cfg, model_id, source, SUPPORTED_FAMILIES)
    return builder(_Cfg(cfg, model_id), family, model_id, source)


_IO_NAMES = {"gpt2": {"embed_name": "wte"},
             "bert": {"embed_name": "word_embeddings", "head_name": "decoder"},
             "roberta": {"embed_name": "word_embeddings", "head_name": "decoder"}}


def expert_bank(h: int, inter: int, count: int) -> list[Linear]:
    """Routed experts as transformers 5 stores them: one fused gate+up tensor and one down tensor per
    layer (``count`` = layers × experts)."""
    return [Linear("experts.gate_up_proj", h, 2 * inter, count, "expert", fused=2),
            Linear("experts.down_proj", inter, h, count, "expert")]


def _spec(c: _Cfg, family: str, model_id: str, source: str, **kw) -> ModelSpec:
    """The spec, after the checks every family shares (head layout, experts, overall size)."""
    heads, kv = kw["heads"], kw["kv_heads"]
    if kv > heads or heads % kv:
        c.problems.append(f"'num_key_value_heads' ({kv}) must divide 'num_attention_heads' ({heads})")
    if family != "t5" and "head_dim" not in c.raw and kw["hidden"] % heads:
        c.problems.append(f"'num_attention_heads' ({heads}) must divide the hidden size ({kw['hidden']}) "
                          "when the config gives no 'head_dim'")
    if kw.get("experts_per_token", 0) > kw.get("num_experts", 0):
        c.problems.append(f"'num_experts_per_tok' ({kw['experts_per_token']}) cannot exceed the number of experts "
                          f"({kw.get('num_experts', 0)})")
    if kw["params"].total > MAX_PARAMS:
        c.problems.append(f"it describes {kw['params'].total:.2g} parameters, beyond any real model")
    c.check()
    return ModelSpec(id=model_id, family=family, source=source, config=c.raw, **kw)


# --- decoder-only families (Llama-like) ------------------------------------------------------------


def _llama_like(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """Llama, Mistral, Mixtral, Qwen2, Gemma 2, Phi-3, Granite: RMSNorm, RoPE, gated MLP."""
    h = c.int("hidden_size")
    n_layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    kv = c.int("num_key_value_heads", default=heads)
    vocab = c.int("vocab_size")
    inter = c.int("intermediate_size")
    hd = c.int("head_dim", default=max(h // heads, 1))
    c.check()
    q_dim, kv_dim = heads * hd, kv * hd
    # Qwen2 puts biases on q/k/v only; the others follow ``attention_bias`` / ``mlp_bias``.
    qkv_bias = family == "qwen2" or c.flag("attention_bias", False)
    o_bias = c.flag("attention_bias", False) and family != "qwen2"
    mlp_bias = c.flag("mlp_bias", False)
    if family == "phi3":  # fused qkv_proj and gate_up_proj
        attn_linears = [Linear("qkv_proj", h, q_dim + 2 * kv_dim, n_layers, "attn"),
                        Linear("o_proj", q_dim, h, n_layers, "attn")]
    else:
        attn_linears = [Linear("q_proj", h, q_dim, n_layers, "attn"), Linear("k_proj", h, kv_dim, n_layers, "attn"),
                        Linear("v_proj", h, kv_dim, n_layers, "attn"), Linear("o_proj", q_dim, h, n_layers, "attn")]
    attn = n_layers * (h * (q_dim + 2 * kv_dim) + q_dim * h
                       + (q_dim + 2 * kv_dim) * qkv_bias + h * o_bias)
    experts = c.raw.get("num_local_experts") or 0
    top_k = c.raw.get("num_experts_per_tok") or 0
    if experts:  # Mixtral: a router plus ``experts`` gated MLPs per layer, stored fused
        mlp_linears = [Linear("gate", h, experts, n_layers, "router"), *expert_bank(h, inter, n_layers * experts)]
        routed = n_layers * experts * 3 * h * inter
        mlp = n_layers * h * experts + routed
    elif family == "phi3":
        mlp_linears = [Linear("gate_up_proj", h, 2 * inter, n_layers, "mlp"), Linear("down_proj", inter, h, n_layers, "mlp")]
        mlp = n_layers * 3 * h * inter
        routed = 0
    else:
        mlp_linears = [Linear("gate_proj", h, inter, n_layers, "mlp"), Linear("up_proj", h, inter, n_layers, "mlp"),
                       Linear("down_proj", inter, h, n_layers, "mlp")]
        mlp = n_layers * (3 * h * inter + (2 * inter + h) * mlp_bias)
        routed = 0
    norms_per_layer = 4 if family == "gemma2" else 2  # Gemma 2 adds pre/post feed-forward norms
    norms = n_layers * norms_per_layer * h + h
    tied = c.flag("tie_word_embeddings", _TIE_DEFAULT.get(family, False))
    embeddings = vocab * h
    lm_head = 0 if tied else vocab * h
    params = ParamCounts(embeddings, attn, mlp, norms, lm_head)
    active = params.total - routed + (routed * top_k // experts if experts else 0)
    return _spec(c, family, model_id, source, kind="decoder", hidden=h, layers=n_layers, heads=heads, kv_heads=kv,
                 head_dim=hd, intermediate=inter, vocab=vocab, params=params,
                 linears=tuple(attn_linears + mlp_linears), tied_embeddings=tied, active_params=active,
                 num_experts=experts, experts_per_token=top_k if experts else 0,
                 max_positions=c.raw.get("max_position_embeddings"), lora_experts=peft_adapts_experts(family))


def _deepseek(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """DeepSeek V2/V3: multi-head latent attention and MoE with shared experts (first k layers dense)."""
    h = c.int("hidden_size")
    n_layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    vocab = c.int("vocab_size")
    inter = c.int("intermediate_size")
    moe_inter = c.int("moe_intermediate_size")
    experts = c.int("n_routed_experts")
    top_k = c.int("num_experts_per_tok")
    shared = c.int("n_shared_experts", default=0, positive=False)
    dense_layers = c.int("first_k_dense_replace", default=0, positive=False)
    kv_rank = c.int("kv_lora_rank")
    nope, rope, v_dim = c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim"), c.int("v_head_dim")
    # DeepseekV2Config/DeepseekV3Config default q_lora_rank to 1536 when the key is absent; an explicit
    # null means a plain q_proj.
    q_rank = c.raw.get("q_lora_rank", 1536)
    c.check()
    qk = nope + rope
    moe_layers = n_layers - dense_layers
    if q_rank:  # low-rank query: q_a_proj, q_a_layernorm, q_b_proj
        q_linears = [Linear("q_a_proj", h, q_rank, n_layers, "attn"), Linear("q_b_proj", q_rank, heads * qk, n_layers, "attn")]
        q_norm = q_rank
    else:
        q_linears = [Linear("q_proj", h, heads * qk, n_layers, "attn")]
        q_norm = 0
    attn_linears = q_linears + [Linear("kv_a_proj_with_mqa", h, kv_rank + rope, n_layers, "attn"),
                                Linear("kv_b_proj", kv_rank, heads * (nope + v_dim), n_layers, "attn"),
                                Linear("o_proj", heads * v_dim, h, n_layers, "attn")]
    attn = sum(lin.in_features * lin.out_features * lin.count for lin in attn_linears)
    mlp_linears = [Linear("gate_proj", h, inter, dense_layers, "mlp"), Linear("up_proj", h, inter, dense_layers, "mlp"),
                   Linear("down_proj", inter, h, dense_layers, "mlp"),
                   Linear("shared_experts.gate_proj", h, moe_inter * shared, moe_layers if shared else 0, "mlp"),
                   Linear("shared_experts.up_proj", h, moe_inter * shared, moe_layers if shared else 0, "mlp"),
                   Linear("shared_experts.down_proj", moe_inter * shared, h, moe_layers if shared else 0, "mlp"),
                   Linear("gate", h, experts, moe_layers, "router"), *expert_bank(h, moe_inter, moe_layers * experts)]
    routed = moe_layers * experts * 3 * h * moe_inter
    # (V3's per-expert score-correction bias is a buffer in transformers 5, not a parameter.)
    mlp = dense_layers * 3 * h * inter + moe_layers * (3 * h * moe_inter * shared + h * experts) + routed
    norms = n_layers * (2 * h + kv_rank + q_norm) + h
    tied = c.flag("tie_word_embeddings", False)
    params = ParamCounts(vocab * h, attn, mlp, norms, 0 if tied else vocab * h)
    active = params.total - routed + routed * top_k // experts
    return _spec(c, family, model_id, source, kind="decoder", hidden=h, layers=n_layers, heads=heads, kv_heads=heads,
                 head_dim=qk, intermediate=moe_inter, vocab=vocab, params=params,
                 linears=tuple(attn_linears + mlp_linears), tied_embeddings=tied, active_params=active,
                 num_experts=experts, experts_per_token=top_k, max_positions=c.raw.get("max_position_embeddings"),
                 lora_experts=peft_adapts_experts(family))


def _gpt2(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """GPT-2: learned positions, LayerNorm with bias, Conv1D layers with bias, tied head."""
    h = c.int("n_embd", "hidden_size")
    n_layers = c.int("n_layer", "num_hidden_layers")
    heads = c.int("n_head", "num_attention_heads")
    vocab = c.int("vocab_size")
    positions = c.int("n_positions", "max_position_embeddings")
    inter = c.raw.get("n_inner") or 4 * h
    c.check()
    linears = (Linear("c_attn", h, 3 * h, n_layers, "attn"), Linear("attn.c_proj", h, h, n_layers, "attn"),
               Linear("c_fc", h, inter, n_layers, "mlp"), Linear("mlp.c_proj", inter, h, n_layers, "mlp"))
    attn = n_layers * (3 * h * h + 3 * h + h * h + h)
    mlp = n_layers * (2 * h * inter + inter + h)
    norms = n_layers * 2 * 2 * h + 2 * h
    tied = c.flag("tie_word_embeddings", True)
    params = ParamCounts(vocab * h + positions * h, attn, mlp, norms, 0 if tied else vocab * h)
    return _spec(c, family, model_id, source, kind="decoder", hidden=h, layers=n_layers, heads=heads, kv_heads=heads,
                 head_dim=h // heads, intermediate=inter, vocab=vocab, params=params, linears=linears,
                 tied_embeddings=tied, active_params=params.total, max_positions=positions, norm="layer", gated_mlp=False,
                 **_IO_NAMES[family])


def _bert_like(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """BERT / RoBERTa with their masked-LM head (no pooler), decoder tied to the word embeddings."""
    h = c.int("hidden_size")
    n_layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    vocab = c.int("vocab_size")
    inter = c.int("intermediate_size")
    positions = c.int("max_position_embeddings")
    types = c.int("type_vocab_size", default=2)
    c.check()
    linears = (Linear("query", h, h, n_layers, "attn"), Linear("key", h, h, n_layers, "attn"),
               Linear("value", h, h, n_layers, "attn"), Linear("attention.output.dense", h, h, n_layers, "attn"),
               Linear("intermediate.dense", h, inter, n_layers, "mlp"), Linear("output.dense", inter, h, n_layers, "mlp"))
    attn = n_layers * 4 * (h * h + h)
    mlp = n_layers * (2 * h * inter + inter + h)
    norms = n_layers * 2 * 2 * h + 2 * h  # two LayerNorms per block + the embeddings' LayerNorm
    tied = c.flag("tie_word_embeddings", True)
    # MLM head: dense + LayerNorm + decoder (tied weight) with its own bias.
    head = h * h + h + 2 * h + vocab + (0 if tied else vocab * h)
    params = ParamCounts((vocab + positions + types) * h, attn, mlp, norms, head)
    return _spec(c, family, model_id, source, kind="encoder", hidden=h, layers=n_layers, heads=heads, kv_heads=heads,
                 head_dim=h // heads, intermediate=inter, vocab=vocab, params=params, linears=linears,
                 tied_embeddings=tied, active_params=params.total, max_positions=positions, norm="layer", gated_mlp=False,
                 **_IO_NAMES[family])


def _t5(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """T5 / Flan-T5: relative position biases in each stack's first layer, RMS LayerNorm without bias."""
    d = c.int("d_model")
    d_kv = c.int("d_kv")
    heads = c.int("num_heads")
    d_ff = c.int("d_ff")
    vocab = c.int("vocab_size")
    enc = c.int("num_layers")
    dec = c.int("num_decoder_layers", default=enc)
    buckets = c.int("relative_attention_num_buckets", default=32)
    proj = c.raw.get("feed_forward_proj", "relu")
    # transformers' T5Config splits it as "<act>" or "gated-<act>" (e.g. relu, gated-gelu): nothing else loads.
    if not isinstance(proj, str) or not re.fullmatch(r"(gated-)?[a-z][a-z0-9_]*", proj):
        c.problems.append(f"'feed_forward_proj' must be an activation name like 'relu' or 'gated-gelu' "
                          f"(got {_shown(proj)})")
    c.check()
    inner = heads * d_kv
    gated = proj.startswith("gated")
    ff_in = ["wi_0", "wi_1"] if gated else ["wi"]
    attn_blocks = enc + 2 * dec  # encoder self-attention, decoder self- and cross-attention
    linears = tuple([Linear(n, d, inner, attn_blocks, "attn") for n in ("q", "k", "v")]
                    + [Linear("o", inner, d, attn_blocks, "attn")]
                    + [Linear(n, d, d_ff, enc + dec, "mlp") for n in ff_in] + [Linear("wo", d_ff, d, enc + dec, "mlp")])
    attn = attn_blocks * 4 * d * inner + 2 * buckets * heads
    mlp = (enc + dec) * (len(ff_in) + 1) * d * d_ff
    norms = (enc * 2 + dec * 3 + 2) * d
    # transformers 5.x always ties T5's lm_head in the module tree, but checkpoints saved with
    # tie_word_embeddings=false (T5 v1.1, Flan-T5) ship a separate head: count what the checkpoint holds.
    tied = c.flag("tie_word_embeddings", True)
    params = ParamCounts(vocab * d, attn, mlp, norms, 0 if tied else vocab * d)
    return _spec(c, family, model_id, source, kind="encoder_decoder", hidden=d, layers=enc + dec, heads=heads,
                 kv_heads=heads, head_dim=d_kv, intermediate=d_ff, vocab=vocab, params=params, linears=linears,
                 tied_embeddings=tied, active_params=params.total, max_positions=c.raw.get("n_positions"),
                 gated_mlp=gated, embed_name="shared")


_FAMILIES = {
    **{f: _llama_like for f in ("llama", "mistral", "mixtral", "qwen2", "gemma2", "phi3", "granite")},
    "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "gpt2": _gpt2, "bert": _bert_like, "roberta": _bert_like, "t5": _t5,
}

from estimators.families import FAMILIES as _MORE  # noqa: E402  (they build on the helpers above)

_FAMILIES.update(_MORE)
SUPPORTED_FAMILIES = tuple(sorted(_FAMILIES))
