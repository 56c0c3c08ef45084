"""Calibration: recorded measurements change later estimates on the same device, and say so."""
import pytest

from tuners import store
from estimators.catalog import gpu_by_id, model_by_id
from estimators.estimate import estimate
from estimators.setup import TrainSetup


@pytest.fixture(autouse=True)
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_ADVISOR_HOME", str(tmp_path))


SETUP = TrainSetup(method="lora", examples=1000, tokens_per_example=500)


def test_defaults_without_a_record():
    e = estimate(model_by_id("llama-3.1-8b"), SETUP, gpu_by_id("a100-80gb"))
    assert e.calibration is None and e.to_json()["calibrated"] is None
    assert any("default efficiency" in a for a in e.assumptions)


def test_recorded_efficiency_and_overhead_are_used_and_reported():
    spec, gpu = model_by_id("llama-3.1-8b"), gpu_by_id("a100-80gb")
    default = estimate(spec, SETUP, gpu)
    store.record_calibration("a100-80gb", "lora", "bf16", efficiency=0.225, run_id="r1", overhead_bytes=600 * 2**20,
                       slack=0.05)
    e = estimate(spec, SETUP, gpu, calibration=store.calibration_for("a100-80gb", "lora", "bf16"))
    # The compute term is the step-time model's at the recorded efficiency (below the catalog's default: slower;
    # not in proportion, since memory-bound GEMMs do not depend on it); the other terms do not depend on it.
    assert e.time.step.compute > default.time.step.compute * gpu.efficiency / 0.225 * 0.5
    assert e.time.step.compute > default.time.step.compute
    assert e.time.step.optimizer == pytest.approx(default.time.step.optimizer)
    assert e.time.seconds > default.time.seconds
    assert e.memory.overhead == 600 * 2**20 + int(0.05 * e.memory.peak_allocated)
    assert "calibrated on a100-80gb by 1 lora trial run(s), latest r1" in e.to_json()["calibrated"]
    assert any("calibrated" in a for a in e.assumptions)
    # Other devices and precisions keep the defaults.
    assert store.calibration_for("h100-sxm", "lora", "bf16") is None
    assert store.calibration_for("a100-80gb", "lora", "fp16") is None
    # Another method of the same family on the same device and precision borrows the base efficiency
    # (issue 12) and says whose it is; another family does not (issue 21: LoRA's ratio says nothing about
    # QLoRA's dequantization or full tuning's optimizer); the method's own record wins once there is one.
    borrowed = store.calibration_for("a100-80gb", "adapters", "bf16")
    assert borrowed.method == "lora" and borrowed.efficiency == 0.225
    assert store.calibration_for("a100-80gb", "full", "bf16") is None
    assert store.calibration_for("a100-80gb", "qlora", "bf16") is None
    store.record_calibration("a100-80gb", "full", "bf16", efficiency=0.3, run_id="r2")
    assert store.calibration_for("a100-80gb", "full", "bf16").run_id == "r2"
    assert store.calibration_for("a100-80gb", "lora", "bf16").run_id == "r1"
    assert estimate(spec, SETUP, gpu).time.seconds == pytest.approx(default.time.seconds)  # pure: no lookup


def test_records_count_runs_and_keep_the_latest():
    store.record_calibration("cpu", "full", "fp32", 0.3, "a")
    store.record_calibration("cpu", "full", "fp32", 0.4, "b")
    c = store.calibration_for("cpu", "full", "fp32")
    assert (c.runs, c.efficiency, c.run_id) == (2, 0.4, "b")
    with pytest.raises(ValueError):
        store.record_calibration("cpu", "full", "fp32", 0.0, "c")


def test_a_corrupt_store_gives_no_calibration_instead_of_failing(tmp_path):
    (tmp_path / "runs.db").write_bytes(b"this is not a database" * 100)
    assert store.calibration_for("a100-80gb", "lora", "bf16") is None


def test_a_time_ratio_outside_the_range_is_explained():
    from estimators.calibration import time_ratio_note

    assert time_ratio_note(1.1, None, False, {}) is None and time_ratio_note(None, None, False, {}) is None
    note = time_ratio_note(0.05, None, True, {"launch": 0.02, "compute": 0.3, "fixed": 0.0, "total": 0.4})
    assert "0.05×" in note and "slower" in note and "default efficiency" in note and "CPU" in note
    note = time_ratio_note(2.0, "calibrated on cpu by 1 lora trial run(s)", False, {"launch": 0.5, "compute": 0.1})
    assert "faster" in note and "issuing kernels" in note and "calibrating one" in note
