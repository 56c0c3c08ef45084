"""What each criterion cited by the rules means, in the project's words (numbering of CRITERIA.md)."""

CRITERIA = {
    "C2.1": ("Expected outcome", "Prompt tuning does well when the task resembles what the model already knows. "
             "Full tuning customises most deeply given enough data and compute. LoRA reaches high quality with "
             "less overfitting but can trail full tuning; QLoRA adds a small risk from quantizing the base."),
    "C2.2": ("Compute needed", "Full tuning needs the most memory: every weight, its gradient and its optimizer "
             "state. LoRA needs far less; QLoRA less again because the frozen base is stored in 4 bits; prompt "
             "tuning least."),
    "C2.3": ("Tuning time", "Prompt tuning is quickest (minutes to hours); LoRA and QLoRA take hours; full "
             "tuning takes longest and grows with model and data size."),
    "C2.4": ("Cost", "Prompt tuning is cheapest to tune and to host. LoRA and QLoRA need less storage and "
             "compute, and many adapters can share one base model. Full tuning pays for tuning and for hosting a "
             "whole new model."),
    "C2.5": ("Purpose", "Prompt tuning: quick adaptation on limited resources. Full tuning: maximum accuracy when "
             "the cost is justified. LoRA/QLoRA: task-specific adapters, several tasks on one base."),
    "C2.6": ("Adapter layers", "Small inserted layers (a few percent of the parameters) get close to full tuning, "
             "add tasks without touching others and resist forgetting and overfitting, at the price of some "
             "inference latency and architectural complexity."),
    "C2.7": ("Knowledge distillation", "A smaller student learns to imitate a larger teacher's outputs, keeping "
             "most of its quality at a fraction of the serving cost: suited to mobile, edge and latency-bound use. "
             "Teacher and student must share a tokenizer, and the teacher's forward passes cost compute."),
    "C3.1": ("Style and tone", "Fine tuning reliably teaches a voice or tone, such as a brand's."),
    "C3.2": ("Specialization", "Fine tuning turns a general model into a specialist for one task."),
    "C3.3": ("Domain knowledge", "Vocabulary or knowledge missing from pretraining (legal, finance, medicine) "
             "is added by changing weights."),
    "C3.4": ("Proprietary data", "Tuning on private data builds it into the model."),
    "C3.5": ("Edge cases", "Examples teach the model cases it never saw in pretraining."),
    "C3.6": ("Many tasks", "To serve many different tasks, prefer per-task LoRA/QLoRA adapters on one shared base; "
             "a fully tuned model per task costs more and risks forgetting general skills."),
    "C3.7": ("Depth and distance", "Full tuning suits domain-intensive work where depth matters most, and is the "
             "most reliable choice when the domain is far from pretraining."),
    "C3.8": ("Data size", "Full tuning usually needs large data sets (up to millions of examples); adapters and "
             "LoRA help even with small ones."),
    "C4.1": ("Inference cost", "A prompt-tuned smaller model can stand in for a larger one, cutting serving cost."),
    "C4.2": ("Cheap style", "Prompt tuning adjusts style at low cost."),
    "C4.3": ("Output format", "Prompt tuning gets a reliable output form from zero-shot prompts, with fewer "
             "tokens per call."),
    "C4.4": ("Iteration", "Prompt tuning suits quick prototyping, scarce task data and tight compute."),
    "C4.5": ("Limits of prompt tuning", "Prompt tuning is weaker on tasks needing deep specialised knowledge and "
             "only catches up with full tuning on models of billions of parameters."),
    "C5.1": ("Factual recall", "Tuning improves factual accuracy only marginally: retrieve the facts at inference "
             "time (RAG). Tuning can still shape the answer's format."),
    "C6.1": ("How much data", "Tens to about a thousand examples are enough to start with prompt tuning or LoRA; "
             "full tuning pays off with hundreds of thousands to millions of tokens of examples and more."),
    "C6.2": ("LoRA vs full", "LoRA learns less and forgets less than full tuning; it trails on large domain shifts "
             "(code, maths, continued pretraining) where the needed weight change is high-rank."),
    "C6.3": ("Prompt tuning at small scale", "At ~3B parameters prompt tuning clearly trails LoRA and saves little "
             "memory, since activations dominate."),
    "C6.4": ("QLoRA speed", "QLoRA steps run about 1.4–1.5× slower than bf16 LoRA because weights are dequantized."),
    "C6.5": ("Gradient checkpointing", "Costs about 20–30% of throughput and saves most activation memory."),
    "C6.6": ("Full vs LoRA time", "Full tuning takes about 2–2.5× the time of LoRA on the same data."),
    "C6.7": ("Shared tokenizer", "Distillation requires teacher and student to share a tokenizer."),
    "C6.8": ("Multi-GPU memory", "Data parallelism does not reduce per-GPU memory; sharding (ZeRO-3/FSDP) does."),
    # Added by the project (not in CRITERIA.md's numbering): Liu et al. 2024, "DoRA: Weight-Decomposed
    # Low-Rank Adaptation" (ICML), Tables 1-2: +1 to +4 points over LoRA at the same rank on commonsense
    # reasoning with LLaMA 7B/13B; PEFT's docs note its extra step cost.
    "C6.9": ("DoRA", "DoRA splits each adapted weight into a magnitude and a direction and trains both (the "
             "direction through LoRA). At the same rank it closes part of LoRA's gap to full tuning, at the price of "
             "slower steps and slightly more memory; like LoRA it merges into the base for serving."),
    # Added for issue 11 (budget-, size- and hardware-aware advice), in the project's words.
    "C6.10": ("Budget", "A run over its time or money budget is ranked by how far over it is, and the advice "
              "says what would meet the budget: whole-run time and cost are linear in the tokens trained, so the "
              "share of the data (or of the epochs) that fits is the budget over the estimate; more GPUs of one "
              "type divide the time at the same GPU-hours, so the cheapest GPU type × count that meets both "
              "limits is searched over the catalog."),
    "C6.11": ("Hardware precision", "bf16 needs Ampere or newer tensor cores; on T4 and V100 training runs in "
              "fp16 with dynamic loss scaling, with fp32 master weights when every weight trains (Micikevicius "
              "et al. 2018, Mixed Precision Training). T5 was pretrained in bf16 and overflows in fp16, so it "
              "trains in fp32 there. Estimates default to pure 16-bit training (no fp32 master copy, ~8 bytes per "
              "parameter for full AdamW tuning); Trainer-style automatic mixed precision needs ~16."),
    "C6.12": ("Memory headroom", "A plan counts as fitting only with at least 5 % of the GPU's memory free: "
              "allocator fragmentation, an unusually long batch or a library's workspace take the rest. Between "
              "95 % and 100 % it is tight."),
    "C6.13": ("Model size bands", "Up to ~1B parameters, 1-10B, 10-100B and beyond 100B behave differently: "
              "full tuning is cheap below 1B, needs sharding over several GPUs from 10B, and is a multi-node job "
              "beyond 100B, where 4-bit storage decides what fits on one node."),
    "C6.14": ("Data in tokens", "Data is measured in tokens, and against the parameters that train: full "
              "tuning of a multi-billion model on under ~1 token per 1,000 parameters mostly overfits (Alpaca: "
              "~10M tokens on LLaMA-7B is just above), while from ~1 per 200 it has the signal to pull ahead of "
              "LoRA on hard shifts (Biderman et al. 2024, LoRA Learns Less and Forgets Less)."),
    "C6.15": ("Small models", "Below ~1B parameters and for encoders, full fine-tuning is cheap and the "
              "standard practice (Devlin et al. 2019 for BERT; Howard and Ruder 2018): its memory is a few GiB."),
    "C6.16": ("Where quantization pays", "4-bit storage (QLoRA, Dettmers et al. 2023) pays when the frozen "
              "base's size decides whether it fits (from ~10B); under ~1B it saves a fraction of a GiB for "
              "slower steps (dequantization on every pass)."),
    "C6.17": ("Served size", "The model served has the size of the model tuned: only distillation (or starting "
              "from a smaller base) makes it smaller for a phone, an edge device or a latency budget."),
    # Added for issue 25 (advice a practitioner signs).
    "C6.18": ("Epochs", "How many passes over the data scale with its size and the task: a few hundred examples "
              "take 3-5 epochs, tens of thousands 2, hundreds of thousands or 100M+ tokens one (Alpaca: 3 epochs "
              "on 52k; Llama 2's SFT: 2 on 27.5k; Komatsuzaki 2019: one epoch when data is plentiful). Tasks with "
              "one right answer (classification, extraction) take one more, open-ended generation and chat one "
              "fewer (OpenAI's fine-tuning guide: +1-2 epochs for a single ideal completion, -1-2 when outputs "
              "lose diversity). The number is a default: set ``epochs`` to override it."),
    "C6.19": ("Retrieval plus tuning", "When the facts come from retrieval, the tuning half only teaches the "
              "answer's format and style and how to use the retrieved context: a light LoRA-style update (RAFT, "
              "Zhang et al. 2024). Tuning on new facts teaches them slowly and raises hallucination (Gekhman et "
              "al. 2024), and retrieval beats tuning for knowledge (Ovadia et al. 2024): full tuning only when the "
              "domain itself is far."),
    "C6.20": ("Merging for serving", "LoRA, QLoRA and DoRA updates fold into the base weights, so the served "
              "model runs at the base's speed; adapter layers and soft prompts stay in the forward pass."),
    "C6.21": ("How a plan fits", "A plan that fits on each GPU as it is runs at full speed; sharding it (ZeRO, "
              "FSDP) adds communication every step; offloading optimizer states or parameters to CPU memory "
              "makes every step wait on host transfers (Ren et al. 2021, ZeRO-Offload). The score prefers the "
              "simplest route that fits."),
    "C6.22": ("Many tenants' tuning cost", "K tasks are K tuning runs (one adapter or prompt per task), or one "
              "multi-task run over all K tasks' data where one model serves them all: either way the tokens, "
              "hours and money are about K times one task's, and a budget covers all of them."),
}

NAMED: dict[str, dict[str, int]] = {
    # What each criterion says about the methods it names: +1 favours, -1 counts against. Every rule that
    # cites one of these criteria applies its effect to every method the criterion names, in that
    # direction (tests/test_advice_rules.py): a penalty for a class of methods hits the whole class.
    "C3.1": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": 1},
    "C3.2": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": 1, "distillation": 1},
    "C3.3": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": 1, "prompt_tuning": -1},
    "C3.4": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": 1},
    "C3.5": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": 1},
    "C3.6": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "prompt_tuning": 1, "full": -1, "distillation": -1},
    "C5.1": {m: -1 for m in ("prompt_tuning", "lora", "qlora", "full", "adapters", "distillation", "dora")},
    "C6.1": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "prompt_tuning": 1},
    "C6.2": {"lora": -1, "qlora": -1, "dora": -1, "adapters": -1},
    "C6.17": {m: -1 for m in ("prompt_tuning", "lora", "qlora", "full", "adapters", "dora")},
    "C6.19": {"lora": 1, "qlora": 1, "dora": 1, "adapters": 1, "full": -1, "distillation": -1},
    "C6.20": {"lora": 1, "qlora": 1, "dora": 1, "adapters": -1},
}
"""Criteria that speak about a class of methods (low-rank updates, per-task adapters, whole models...)."""


def explain(criterion: str) -> str:
    title, text = CRITERIA.get(criterion, (criterion, ""))
    return f"**{criterion} — {title}.** {text}"
