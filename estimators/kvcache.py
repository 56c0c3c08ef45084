"""KV cache bytes per token and per sequence, from a model's ``config.json`` (pure; no torch).

What a serving engine keeps for every token of every running sequence, per layer:

- multi-head / grouped-query attention: a key and a value of ``kv_heads × head_dim`` each, so
  ``2 × kv_heads × head_dim × dtype bytes`` (GQA, Ainslie et al. 2023; Llama-3.1-8B:
  2 × 8 × 128 × 2 B = 4 KiB per layer, × 32 layers = 128 KiB per token);
- multi-head latent attention (DeepSeek-V2/V3, DeepSeek-AI 2024 §2.1): one compressed latent of
  ``kv_lora_rank`` plus the shared decoupled RoPE key of ``qk_rope_head_dim``, which is what vLLM's and
  SGLang's MLA backends cache (DeepSeek-V3: (512 + 64) × 2 B = 1,152 B per layer). transformers'
  eager ``DynamicCache`` instead keeps the decompressed keys and values
  (``heads × (qk_nope + qk_rope)`` and ``heads × v_head_dim``) — ``layout="transformers"``;
- sliding-window layers (Mistral 7B v0.1, Gemma 2/3, gpt-oss, Phi-3) keep at most ``sliding_window``
  tokens, which vLLM's hybrid KV cache manager allocates per layer group (vLLM docs, "Hybrid KV
  Cache Manager"); the layer pattern is the config's ``layer_types`` or the family's default rule in
  transformers 5 (Gemma 2: even layers slide; Gemma 3: 5 of every ``sliding_window_pattern`` = 6);
- encoder-decoder (T5): each decoder layer caches self-attention keys/values per output token and
  cross-attention keys/values per input token, both ``2 × heads × d_kv``: the same bytes per token of
  input plus output;
- encoder-only (BERT): no cache (one forward pass per request).
"""
from __future__ import annotations

from dataclasses import dataclass

from estimators.errors import InputError
from estimators.spec import ModelSpec

KV_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}
"""Bytes per cached element: vLLM's ``--kv-cache-dtype auto`` keeps the model dtype (bf16); ``fp8``
halves it."""


@dataclass(frozen=True)
class KVCache:
    """Bytes the cache holds per token, split into full-attention and sliding-window layers."""

    layer_bytes: int
    """Bytes per token per layer (all layers of a model cache the same shape)."""
    full_layers: int
    window_layers: int
    window: int | None
    """Tokens a sliding-window layer keeps (None: no such layers)."""
    layout: str
    """``gqa`` (MHA when kv_heads = heads), ``mla``, ``encoder_decoder`` or ``none`` (encoder-only)."""
    dtype: str = "bf16"

    @property
    def bytes_per_token(self) -> int:
        """Cache bytes one token adds while it is inside every window (the short-context cost)."""
        return self.layer_bytes * (self.full_layers + self.window_layers)

    def bytes_for(self, tokens: int) -> int:
        """Cache bytes of one sequence of ``tokens`` tokens (sliding layers capped at their window)."""
        windowed = min(tokens, self.window) if self.window else tokens
        return self.layer_bytes * (self.full_layers * tokens + self.window_layers * windowed)

    def to_dict(self) -> dict:
        return {"layout": self.layout, "dtype": self.dtype, "bytes_per_token": self.bytes_per_token,
                "layer_bytes": self.layer_bytes, "full_layers": self.full_layers,
                "window_layers": self.window_layers, "window": self.window}


def window_layer_count(spec: ModelSpec) -> tuple[int, int | None]:
    """(layers with a sliding window, the window) as transformers 5 builds the model's layers."""
    c, n = spec.config, spec.layers
    window = c.get("sliding_window")
    types = c.get("layer_types")
    if isinstance(types, list) and types:
        sliding = sum(1 for t in types if t == "sliding_attention")
        return (sliding, window) if sliding and window else (0, None)
    if not window:
        return 0, None
    if spec.family == "gemma2":  # Gemma2Config: layer i slides when (i + 1) % 2 == 1
        return sum(1 for i in range(n) if (i + 1) % 2), window
    if spec.family in ("gemma3", "gemma3_text"):  # Gemma3TextConfig: (i + 1) % pattern != 0 slides
        pattern = int(c.get("sliding_window_pattern") or 6)
        return sum(1 for i in range(n) if (i + 1) % pattern), window
    if "use_sliding_window" in c:  # Qwen2/Qwen3: layers from max_window_layers on slide when enabled
        if not c.get("use_sliding_window"):
            return 0, None
        first = int(c.get("max_window_layers") or 0)
        return max(n - first, 0), window
    return n, window  # Mistral v0.1, Phi-3: every layer slides


def kv_cache(spec: ModelSpec, dtype: str = "bf16", layout: str = "served") -> KVCache:
    """The cache of ``spec`` in ``dtype``; ``layout`` ``served`` is what vLLM/SGLang keep (MLA's latent),
    ``transformers`` what ``DynamicCache`` keeps in ``model.generate()``."""
    if dtype not in KV_DTYPE_BYTES:
        raise InputError(f"KV cache dtype must be one of {', '.join(KV_DTYPE_BYTES)} (got {dtype!r})")
    b, c = KV_DTYPE_BYTES[dtype], spec.config
    if spec.kind == "encoder":
        return KVCache(0, 0, 0, None, "none", dtype)
    if spec.kind == "encoder_decoder":
        decoder = int(c.get("num_decoder_layers") or c.get("num_layers") or spec.layers // 2)
        return KVCache(2 * spec.heads * spec.head_dim * b, decoder, 0, None, "encoder_decoder", dtype)
    sliding, window = window_layer_count(spec)
    if c.get("kv_lora_rank"):
        rope, rank = int(c.get("qk_rope_head_dim") or 0), int(c["kv_lora_rank"])
        if layout == "served":
            per_layer = (rank + rope) * b
        else:
            nope, v = int(c.get("qk_nope_head_dim") or 0), int(c.get("v_head_dim") or 0)
            per_layer = spec.heads * (nope + rope + v) * b
        return KVCache(per_layer, spec.layers - sliding, sliding, window, "mla", dtype)
    per_layer = 2 * spec.kv_heads * spec.head_dim * b
    return KVCache(per_layer, spec.layers - sliding, sliding, window, "gqa", dtype)
