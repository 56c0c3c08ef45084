"""Any architecture transformers can build: our parameter counts and LoRA trainable counts against the
real modules on the meta device (hand-written arithmetic where we have it, the derived spec elsewhere)."""
import warnings

import pytest

from estimators import derived
from estimators.errors import InputError
from estimators.methods import lora_params, lora_target_modules
from estimators.setup import TrainSetup
from estimators.spec import PEFT_EXPERT_FAMILIES, SUPPORTED_FAMILIES, spec_from_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

# The new families, the older hand-written ones, and popular causal LMs transformers builds from its
# default config (types whose defaults are incomplete, e.g. nemotron, are left out).
CAUSAL_TYPES = [
    "qwen3", "qwen3_moe", "gemma3_text", "olmo2", "smollm3", "gpt_oss", "phi", "gpt_neox",
    "llama", "mistral", "mixtral", "qwen2", "gemma2", "phi3", "granite", "gpt2", "deepseek_v3",
    "qwen2_moe", "gemma", "phimoe", "gptj", "gpt_bigcode", "falcon", "olmo", "olmo3", "olmoe", "granitemoe",
    "cohere", "cohere2", "stablelm", "starcoder2", "glm", "glm4", "exaone4", "helium", "bloom", "opt", "mpt",
    "codegen", "persimmon", "seed_oss", "apertus", "arcee", "ernie4_5", "minimax", "qwen3_next", "bitnet",
]


@pytest.fixture
def derive_here(tmp_path, monkeypatch):
    from tuners import metaspec

    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path))
    metaspec.install()
    yield tmp_path
    derived.install(None)


def few_experts(cfg: dict) -> dict:
    """Four experts, two per token, one dense layer: small enough for PEFT on the meta device."""
    return {**cfg, "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
            "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1}


def small_config(model_type: str, layers: int = 4) -> dict:
    conf = transformers.AutoConfig.for_model(model_type)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(conf, key, None), int):
            setattr(conf, key, layers)
    cfg = conf.to_dict()
    cfg["model_type"] = model_type
    cfg.pop("layer_types", None)  # sized for the default depth
    return cfg


def meta_model(cfg: dict):
    conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_config(conf)


def test_at_least_25_causal_types():
    assert len(set(CAUSAL_TYPES)) >= 25


@pytest.mark.parametrize("model_type", CAUSAL_TYPES)
def test_count_equals_meta_device(model_type, derive_here):
    cfg = small_config(model_type)
    expected = sum(p.numel() for p in meta_model(cfg).parameters())
    spec = spec_from_config(cfg, model_type)
    assert spec.total_params == expected
    assert spec.derived == (model_type not in SUPPORTED_FAMILIES)
    if spec.derived:  # cached for the torch-free estimators
        assert list((derive_here / "specs").glob("*.json"))


def _peft_trainable(cfg: dict, targets) -> int:
    model = peft.get_peft_model(meta_model(cfg), peft.LoraConfig(r=4, target_modules=targets))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


LORA_CASES = [
    ("gpt2", "q,v"), ("gpt2", "o"), ("gpt2", "all-linear"), ("gpt2", "lm_head"), ("gpt2", "all-linear,lm_head"),
    ("llama", "all-linear"), ("llama", "q,v,lm_head"), ("llama", "embed_tokens"), ("gpt_neox", "q,v,o"),
    ("phi", "all-linear"), ("qwen3_moe", "all-linear"), ("mixtral", "all-linear"), ("gpt_oss", "all-linear"),
    ("deepseek_v3", "all-linear"), ("olmoe", "all-linear"), ("gptj", "all-linear"), ("qwen3_moe", "q,v"),
]


@pytest.mark.parametrize("model_type,targets", LORA_CASES)
def test_lora_trainable_equals_peft(model_type, targets, derive_here):
    """The one resolver gives PEFT names it accepts, and our count equals what PEFT 0.21 trains
    (MoE: fused experts and router adapted only in the families PEFT converts)."""
    cfg = small_config(model_type, layers=2)
    if model_type in ("qwen3_moe", "mixtral", "gpt_oss", "deepseek_v3", "olmoe"):
        cfg = few_experts(cfg)
    spec = spec_from_config(cfg, model_type)
    setup = TrainSetup(method="lora", lora_rank=4, lora_targets=targets)
    assert lora_params(spec, setup) == _peft_trainable(cfg, lora_target_modules(spec, targets))


def _library_expert_families() -> set[str]:
    """Model types whose fused experts the installed PEFT adapts under all-linear (see estimators/spec.py)."""
    from tuners.metaspec import library_expert_families

    return library_expert_families()


def test_expert_table_holds_for_known_families():
    """Every family in our table that the installed transformers knows, the installed PEFT adapts too."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    known_here = {t for t in PEFT_EXPERT_FAMILIES if t in CONFIG_MAPPING_NAMES}
    assert known_here, "the installed transformers knows none of our fused-expert families"
    assert known_here <= _library_expert_families()


def _new_expert_families() -> list[str]:
    try:
        return sorted(_library_expert_families() - PEFT_EXPERT_FAMILIES)
    except ImportError:
        return []


@pytest.mark.parametrize("model_type", _new_expert_families() or ["(none)"])
def test_new_expert_families_fall_back_to_the_meta_spec(model_type, derive_here):
    """A fused-expert family newer than our table is reported, not a failure: its estimate comes from the
    meta-device spec, whose LoRA count must equal what the installed PEFT trains."""
    if model_type == "(none)":
        pytest.skip("the installed libraries know no fused-expert family beyond estimators/spec.py's table")
    import transformers

    warnings.warn(f"transformers {transformers.__version__} knows a fused-expert family not in "
                  f"estimators/spec.py's table: {model_type} (estimated through the meta-device spec)", stacklevel=2)
    cfg = few_experts(small_config(model_type, layers=2))
    spec = spec_from_config(cfg, model_type)
    setup = TrainSetup(method="lora", lora_rank=4, lora_targets="all-linear")
    assert spec.lora_experts
    assert lora_params(spec, setup) == _peft_trainable(cfg, lora_target_modules(spec, "all-linear"))


def test_unknown_type_without_deriver_is_one_clear_error():
    derived.install(None)
    with pytest.raises(InputError, match="no built-in arithmetic"):
        spec_from_config(small_config("olmoe"), "olmoe")


def test_cache_is_reused(derive_here, monkeypatch):
    from tuners import metaspec

    cfg = small_config("starcoder2")
    first = spec_from_config(cfg, "a")
    monkeypatch.setattr(metaspec, "derive", lambda *a, **k: pytest.fail("derived again"))
    assert spec_from_config(cfg, "b").total_params == first.total_params


@pytest.mark.slow  # derives specs in a fresh interpreter that imports transformers
def test_child_process_derivation(derive_here):
    from tuners import metaspec

    metaspec.install(in_child=True)
    spec = spec_from_config(small_config("stablelm", layers=2), "stablelm")
    assert spec.derived and spec.total_params == sum(p.numel() for p in meta_model(small_config("stablelm", 2)).parameters())


def test_derived_estimate_names_generic_activations_and_exact_check(derive_here):
    from estimators.estimate import estimate

    spec = spec_from_config(small_config("starcoder2", layers=2), "starcoder2")
    text = " ".join(estimate(spec, TrainSetup(method="lora")).assumptions)
    assert "generic" in text and "exact check" in text


def test_unbuildable_config_is_an_input_error(derive_here):
    with pytest.raises(InputError):
        spec_from_config({"model_type": "no_such_architecture", "hidden_size": 8}, "x")


@pytest.mark.parametrize("model_id", ["qwen3-30b-a3b", "gpt-oss-20b", "smollm3-3b", "gemma-3-1b", "qwen3-1.7b"])
def test_scaled_down_copies_of_new_families_build(model_id):
    """--scale-down keeps per-layer lists (layer_types, no_rope_layers) and expert counts consistent."""
    from estimators.catalog import model_configs
    from estimators.spec import clean_config
    from tuners.models import scale_down

    cfg = scale_down(clean_config(model_configs()[model_id]))
    assert spec_from_config(cfg).total_params == sum(p.numel() for p in meta_model(cfg).parameters())


def test_moe_lora_assumptions_say_what_peft_does():
    from estimators.catalog import model_by_id
    from estimators.estimate import estimate

    qwen = " ".join(estimate(model_by_id("qwen3-30b-a3b"), TrainSetup(method="lora")).assumptions)
    oss = " ".join(estimate(model_by_id("gpt-oss-20b"), TrainSetup(method="lora")).assumptions)
    assert "adapts the router and every expert" in qwen and "folds" in qwen
    assert "leaves the fused experts and the router frozen" in oss and "attention sinks" in oss
