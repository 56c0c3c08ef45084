"""Runner overhead: tokens/s of the trial runner vs a minimal hand-written PEFT loop on the same
tiny model, data shape and settings (LoRA, fp32, CPU). Prints the ratio (goal: >= 0.95).

    python bench/trial_overhead.py [--steps 30] [--batch-size 4] [--seq-len 128]
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    tmp = Path(tempfile.mkdtemp())
    os.environ["TUNING_ADVISOR_HOME"] = str(tmp / "home")
    cfg = transformers.LlamaConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=688, vocab_size=4096, max_position_embeddings=1024)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp / "model")
    rows = [{"text": " ".join(f"word{(i * j) % 97}" for j in range(400))} for i in range(64)]
    (tmp / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))

    from tuners import launch

    request = {"model": str(tmp / "model"), "data": str(tmp / "data.jsonl"), "method": "lora", "steps": args.steps,
               "batch_size": args.batch_size, "seq_len": args.seq_len, "precision": "fp32"}
    res = launch.follow(launch.start(request)[0])
    assert res["status"] == "completed", res["error"]
    runner_tps = res["measured"]["tokens_per_second"]

    # The same work by hand: load, wrap with PEFT, AdamW, fixed-shape batches, forward/backward/step.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp / "model", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    ids = torch.randint(0, 4096, (args.batch_size, args.seq_len))
    times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    hand_tps = args.batch_size * args.seq_len / (sum(times) / len(times))
    print(f"runner: {runner_tps:,.0f} tokens/s   hand-written loop: {hand_tps:,.0f} tokens/s   "
          f"ratio {runner_tps / hand_tps:.3f} (goal >= 0.95; LoRA r=16, fp32, batch {args.batch_size} x "
          f"{args.seq_len}, {args.steps} steps, CPU)")


if __name__ == "__main__":
    main()
