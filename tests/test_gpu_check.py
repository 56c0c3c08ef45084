"""bench/gpu_check.py's CPU-side logic: the case matrix, the result rows built from a real trial's JSON (the
contract the GPU run reads), the table and the results path. The GPU run itself needs a CUDA device."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_matrix_is_all_methods_on_1b_and_three_on_8b_at_two_shapes():
    cases = gpu_check.cases()
    assert {c["method"] for c in cases if c["model"] == "llama-3.2-1b"} == set(gpu_check.METHODS)
    from estimators.methods import REGISTRY

    assert set(gpu_check.METHODS) == set(REGISTRY)
    big = [c for c in cases if c["model"] == "llama-3.1-8b"]
    assert sorted({c["method"] for c in big}) == ["full", "lora", "qlora"]
    assert len({(c["batch"], c["seq"], c["ckpt"]) for c in big}) == 2 and len(big) == 6
    assert len({c["id"] for c in cases}) == len(cases)


def test_list_prints_the_matrix_without_a_gpu():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--list"], capture_output=True,
                         text=True, check=True).stdout
    assert "13 cases" in out and "8b-qlora-b4x1024-ckpt" in out and "--teacher llama-3.2-3b" in out


def test_folders_replace_catalog_ids_in_the_options():
    case = next(c for c in gpu_check.cases() if c["method"] == "distillation")
    args = gpu_check.setup_args(case, {"llama-3.2-1b": "/m/1b", "llama-3.2-3b": "/m/3b"})
    assert args[args.index("--model") + 1] == "/m/1b" and args[args.index("--teacher") + 1] == "/m/3b"


@pytest.mark.slow
def test_rows_and_table_from_a_real_trial(tmp_path):
    """A real (scaled-down, CPU) trial through the same CLI call the GPU run makes; its JSON must carry
    every field a row reads."""
    data = gpu_check.data_file(tmp_path)
    case = {"id": "tiny-lora", "model": "llama-3.2-1b", "method": "lora", "batch": 2, "seq": 64, "ckpt": False,
            "options": []}
    args = ["trial", *gpu_check.setup_args(case), "--scale-down", "--data", str(data), "--steps", "3"]
    args[args.index("bf16")] = "fp32"
    trial, err = gpu_check.cli(args, tmp_path / "home", 300)
    assert trial and trial["status"] == "completed", err
    row = gpu_check.row_from(case, trial, err, None, "the exact check does not cover this method")
    assert row["meas_peak_allocated"] == trial["measured"]["peak_allocated"] > 0
    assert row["est_tokens_per_second"] > 0 and row["meas_tokens_per_second"] > 0
    assert row["meas_peak_reserved"] is None  # a CPU has no caching allocator: absent, not invented
    failed = gpu_check.row_from(case, {"status": "failed", "error": "out of memory at step 1"}, "", None, "")
    text = gpu_check.table([row, failed])
    assert "tiny-lora" in text and "out of memory at step 1" in text
    ratio = row["meas_peak_allocated"] / row["est_peak_allocated"]
    assert f"{ratio:.3f}" in text
    json.dumps(row)  # the results file is JSON


def test_results_path_names_device_and_date():
    path = gpu_check.result_path("NVIDIA H200", "2026-12-03")
    assert path.name == "gpu-nvidia-h200-2026-12-03.json" and path.parent.name == "results"
