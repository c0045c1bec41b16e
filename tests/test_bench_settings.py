"""scripts/bench.py's run control: --stop-after and the ablation's levers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402


def test_no_worker_starts_past_stop_after(tmp_path, monkeypatch):
    settings, _ = bench.parse_args(["--stop-after", "1", "--workdir", str(tmp_path)])
    started = []
    monkeypatch.setattr(bench, "run_process", lambda *args, **kw: started.append(args))
    settings.started = time.perf_counter() - 61  # one minute and a second ago
    result = bench.run_worker(settings, "bench_naive.py", "train", {"name": "late"})
    assert started == [] and result["error"].startswith("not run: past --stop-after")


@pytest.mark.parametrize("recipe, family", [("bbc_cnn", "cnn"), ("bbc_rnn", "rnn")])
def test_ablation_times_keras_adam_against_the_fused_one(recipe, family):
    variants = bench.lever_variants(ROOT / "configs" / f"{recipe}.yaml", family, gpu=False)
    assert {"name": "Keras' Adam", "overrides": ["train.optimizer=keras_adam"]} in variants


def test_gpu_ablation_flips_the_shape_levers_of_a_bucketed_cnn():
    variants = bench.lever_variants(ROOT / "configs" / "bbc_cnn.yaml", "cnn", gpu=False)
    names = [v["name"] for v in variants]
    assert "XLA on" not in names and "widths not rounded to 64" not in names
    gpu_variants = {v["name"]: v for v in bench.lever_variants(
        ROOT / "configs" / "bbc_cnn.yaml", "cnn", gpu=True)}
    assert gpu_variants["XLA on"]["overrides"] == ["train.jit_compile=true"]
    assert gpu_variants["widths not rounded to 64"]["overrides"] == [
        "train.pad_to_multiple_of=1"]
    assert gpu_variants["cuDNN autotuning off"]["env"] == {"TF_CUDNN_USE_AUTOTUNE": "0"}
