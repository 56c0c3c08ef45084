"""bench/gpu_micro.py on the CPU (--device cpu --quick): the same timing and bookkeeping code the GPU run uses,
checked against figures computed here, independently of the script."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_micro", ROOT / "bench" / "gpu_micro.py")
gpu_micro = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_micro)


def test_quick_cpu_run_writes_consistent_figures(tmp_path, capsys):
    out = tmp_path / "micro.json"
    assert gpu_micro.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["gemm"][0]["what"] == "ceiling" and res["gemm"][0]["of_ceiling"] == 1.0
    for g in res["gemm"]:  # FLOP/s from the shape and the timed seconds, recomputed here
        assert abs(g["tflops"] - 2 * g["m"] * g["k"] * g["n"] / g["seconds"] / 1e12) < 1e-9 * max(1, g["tflops"])
    lora = [g for g in res["gemm"] if g["what"] == "lora_A"]
    assert lora and all(g["n"] == 8 for g in lora)
    for e in res["elementwise"]:  # x.add_(y) in fp32 on the CPU: 3 passes of 4 bytes per element
        assert abs(e["tensor_mb"] - e["numel"] * 4 / 1e6) < 1e-9
        assert e["hot_gbs"] > 0 and e["cold_gbs"] > 0 and e["cold_pairs"] * 2 * e["tensor_mb"] * 1e6 >= 64 << 20
    assert res["launch"]["eager_us"] > 0 and res["launch"]["graph_us"] is None
    assert "launch floor" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_no_cuda_is_a_one_line_error(capsys):
    assert gpu_micro.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device")
