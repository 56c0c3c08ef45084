"""Hand-written parameter arithmetic for the 2024–26 families (Qwen3, Qwen3-MoE, Gemma 3, OLMo 2,
SmolLM3, gpt-oss) and two older ones people still tune (Phi-1/1.5/2, GPT-NeoX/Pythia).

Each builder mirrors the module tree transformers 5.x builds for the family (modeling_<family>.py);
tests/test_spec_meta.py checks every total against ``sum(p.numel())`` of the real class on the meta
device. Families without arithmetic here or in ``spec.py`` go through ``estimators/derived.py``.
"""
from __future__ import annotations

from estimators.spec import Linear, ModelSpec, ParamCounts, _Cfg, _spec, expert_bank, peft_adapts_experts


def _attention(c: _Cfg, n_layers: int, bias: bool, fused_qkv: str = "", out: str = "o_proj"):
    """q/k/v/o projections (or one fused ``fused_qkv``), with a bias on all four when ``bias``."""
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    kv = c.int("num_key_value_heads", default=heads)
    hd = c.int("head_dim", default=max(h // heads, 1))
    q_dim, kv_dim = heads * hd, kv * hd
    if fused_qkv:
        linears = [Linear(fused_qkv, h, q_dim + 2 * kv_dim, n_layers, "attn")]
    else:
        linears = [Linear("q_proj", h, q_dim, n_layers, "attn"), Linear("k_proj", h, kv_dim, n_layers, "attn"),
                   Linear("v_proj", h, kv_dim, n_layers, "attn")]
    linears.append(Linear(out, q_dim, h, n_layers, "attn"))
    params = n_layers * (2 * h * q_dim + 2 * h * kv_dim + bias * (q_dim + 2 * kv_dim + h))
    return linears, params, (h, heads, kv, hd)


def _gated_mlp(h: int, inter: int, layers: int, bias: bool = False):
    linears = [Linear("gate_proj", h, inter, layers, "mlp"), Linear("up_proj", h, inter, layers, "mlp"),
               Linear("down_proj", inter, h, layers, "mlp")]
    return linears, layers * (3 * h * inter + bias * (2 * inter + h))


def _decoder(c, family, model_id, source, *, dims, linears, attn, mlp, norms, tie_default=False, head_bias=0,
             embeddings=None, routed=0, experts=0, top_k=0, **kw) -> ModelSpec:
    """Assembles a decoder spec: vocab-sized embeddings, an optional untied head (plus its bias)."""
    h, heads, kv, hd = dims
    vocab = c.int("vocab_size")
    tied = c.flag("tie_word_embeddings", tie_default)
    params = ParamCounts(embeddings if embeddings is not None else vocab * h, attn, mlp, norms,
                         (0 if tied else vocab * h) + head_bias)
    active = params.total - routed + (routed * top_k // experts if experts else 0)
    kw.setdefault("intermediate", c.int("intermediate_size"))
    return _spec(c, family, model_id, source, kind="decoder", hidden=h, layers=c.int("num_hidden_layers"),
                 heads=heads, kv_heads=kv, head_dim=hd, vocab=vocab, params=params, linears=tuple(linears),
                 tied_embeddings=tied, active_params=active, num_experts=experts, experts_per_token=top_k,
                 max_positions=c.raw.get("max_position_embeddings"), lora_experts=experts > 0 and peft_adapts_experts(family),
                 **kw)


def _qk_norm_dense(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """Qwen3, Gemma 3 (text), OLMo 2 and SmolLM3: Llama-style blocks that differ in their norms.

    * Qwen3 / Gemma 3: RMSNorm over each head's q and k (``head_dim`` weights each); Gemma 3 adds
      pre/post feed-forward norms (four per block) and ties the head by default.
    * OLMo 2: q/k norms over the whole projection (q_dim and kv_dim weights) and post-norms only.
    * SmolLM3: plain Llama blocks (some layers skip RoPE, which has no parameters).
    """
    n = c.int("num_hidden_layers")
    attn_linears, attn, dims = _attention(c, n, c.flag("attention_bias", False))
    h, heads, kv, hd = dims
    mlp_linears, mlp = _gated_mlp(h, c.int("intermediate_size"), n, c.flag("mlp_bias", False))
    qk_norm = {"qwen3": 2 * hd, "gemma3_text": 2 * hd, "olmo2": (heads + kv) * hd}.get(family, 0)
    block_norms = 4 if family == "gemma3_text" else 2
    norms = n * (block_norms * h + qk_norm) + h
    return _decoder(c, family, model_id, source, dims=dims, linears=attn_linears + mlp_linears, attn=attn, mlp=mlp,
                    norms=norms, tie_default=family in ("gemma3_text", "smollm3"))


def _qwen3_moe(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """Qwen3-MoE: Qwen3 attention; sparse layers hold a router and ``num_experts`` gated experts of
    width ``moe_intermediate_size`` (no shared expert). A layer is dense when it is listed in
    ``mlp_only_layers`` or when (index + 1) is not a multiple of ``decoder_sparse_step``."""
    n = c.int("num_hidden_layers")
    experts = c.int("num_experts", "num_local_experts")
    top_k = c.int("num_experts_per_tok")
    moe_inter = c.int("moe_intermediate_size")
    step = c.int("decoder_sparse_step", default=1)
    dense_only = set(c.raw.get("mlp_only_layers") or [])
    sparse = sum(1 for i in range(n) if i not in dense_only and (i + 1) % step == 0)
    attn_linears, attn, dims = _attention(c, n, c.flag("attention_bias", False))
    h, hd = dims[0], dims[3]
    dense_linears, dense = _gated_mlp(h, c.int("intermediate_size"), n - sparse)
    routed = sparse * experts * 3 * h * moe_inter
    linears = attn_linears + [lin for lin in dense_linears if lin.count] + [
        Linear("gate", h, experts, sparse, "router"), *expert_bank(h, moe_inter, sparse * experts)]
    norms = n * (2 * h + 2 * hd) + h
    return _decoder(c, family, model_id, source, dims=dims, linears=linears, attn=attn,
                    mlp=dense + sparse * h * experts + routed, norms=norms, routed=routed, experts=experts,
                    top_k=top_k, intermediate=moe_inter)


def _gpt_oss(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """gpt-oss: attention with biases and one learned sink logit per head; every layer is MoE with a
    biased router and experts whose fused gate_up/down tensors carry biases (modeling_gpt_oss.py)."""
    n = c.int("num_hidden_layers")
    experts = c.int("num_local_experts")
    top_k = c.int("num_experts_per_tok")
    inter = c.int("intermediate_size")
    attn_linears, attn, dims = _attention(c, n, c.flag("attention_bias", True))
    h, heads = dims[0], dims[1]
    attn += n * heads  # sinks
    routed = n * experts * (3 * h * inter + 2 * inter + h)
    router = n * (h * experts + experts)
    # The router is a custom module (not nn.Linear): bitsandbytes and PEFT's all-linear leave it alone.
    return _decoder(c, family, model_id, source, dims=dims, linears=attn_linears + expert_bank(h, inter, n * experts),
                    attn=attn, mlp=router + routed, norms=n * 2 * h + h, routed=routed, experts=experts, top_k=top_k)


def _phi(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """Phi-1 / 1.5 / 2: one LayerNorm per block (attention and MLP in parallel), biased q/k/v/dense
    and fc1/fc2 (GELU), optional per-head LayerNorms on q and k, and a biased untied head."""
    n = c.int("num_hidden_layers")
    attn_linears, attn, dims = _attention(c, n, True, out="self_attn.dense")
    h, hd = dims[0], dims[3]
    inter = c.int("intermediate_size")
    mlp_linears = [Linear("fc1", h, inter, n, "mlp"), Linear("fc2", inter, h, n, "mlp")]
    qk = 2 * 2 * hd if c.flag("qk_layernorm", False) else 0
    return _decoder(c, family, model_id, source, dims=dims, linears=attn_linears + mlp_linears, attn=attn,
                    mlp=n * (2 * h * inter + inter + h), norms=n * (2 * h + qk) + 2 * h,
                    head_bias=c.int("vocab_size"), norm="layer", gated_mlp=False)


def _gpt_neox(c: _Cfg, family: str, model_id: str, source: str) -> ModelSpec:
    """GPT-NeoX / Pythia / StableLM-alpha: fused query_key_value, LayerNorms with bias, GELU MLP
    (dense_h_to_4h, dense_4h_to_h), untied ``embed_out`` head."""
    n = c.int("num_hidden_layers")
    bias = c.flag("attention_bias", True)
    attn_linears, attn, dims = _attention(c, n, bias, fused_qkv="query_key_value", out="attention.dense")
    h = dims[0]
    inter = c.int("intermediate_size")
    mlp_linears = [Linear("dense_h_to_4h", h, inter, n, "mlp"), Linear("dense_4h_to_h", inter, h, n, "mlp")]
    return _decoder(c, family, model_id, source, dims=dims, linears=attn_linears + mlp_linears, attn=attn,
                    mlp=n * (2 * h * inter + inter + h), norms=n * 4 * h + 2 * h, norm="layer", gated_mlp=False,
                    embed_name="embed_in", head_name="embed_out")


FAMILIES = {"qwen3": _qk_norm_dense, "gemma3_text": _qk_norm_dense, "olmo2": _qk_norm_dense, "smollm3": _qk_norm_dense,
            "qwen3_moe": _qwen3_moe, "gpt_oss": _gpt_oss, "phi": _phi, "gpt_neox": _gpt_neox}
