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


def test_ablation_match_keeps_the_shipped_recipe_and_the_matching_levers(tmp_path, monkeypatch):
    settings, _ = bench.parse_args(["--datasets", "bbc", "--workdir", str(tmp_path),
                                    "--ablation-match", "dense backprops|Keras' Adam"])
    settings.data_overrides = {"bbc": []}  # main() fills it (quick subsets)
    specs = []

    def fake_worker(settings, script, task, spec, env=None):
        specs.append(spec)
        return {"variants": [{**spec["variants"][0], "epoch_train_seconds": [1.0]}]}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    tables = bench.ablation(settings)
    names = {table["family"]: [v["name"] for v in table["variants"]] for table in tables}
    assert names == {"cnn": ["shipped", "max's gradient through dense backprops", "Keras' Adam"],
                     "rnn": ["shipped", "Keras' Adam"]}
    assert len(specs) == 5


def test_ablation_match_must_be_a_regular_expression(capsys):
    with pytest.raises(SystemExit) as raised:
        bench.parse_args(["--ablation-match", "Keras' (Adam"])
    assert raised.value.code == 2
    assert "--ablation-match: not a regular expression" in capsys.readouterr().err


def test_skipping_extras_runs_no_prediction_extras(tmp_path, monkeypatch):
    settings, _ = bench.parse_args(["--datasets", "bbc", "--skip", "extras,peers",
                                    "--workdir", str(tmp_path)])
    settings.data_overrides = {"bbc": []}
    tasks = []

    def fake_worker(settings, script, task, spec, env=None):
        tasks.append(task)
        return {"contender": spec["contender"], "dataset": "bbc", "family": spec["family"],
                "kind": "textclf", "extra": {"run_dir": str(tmp_path)}}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    bench.bench_dataset(settings, "bbc")
    assert tasks == ["train", "train", "run", "run"]
    settings.skip = {"peers"}  # and without the skip, each textclf row has its extras
    tasks.clear()
    bench.bench_dataset(settings, "bbc")
    assert tasks == ["train", "train", "run", "predict_extras", "run", "predict_extras"]


def test_textclf_first_runs_its_lstm_row_first_and_lists_rows_as_usual(tmp_path, monkeypatch):
    settings, _ = bench.parse_args(["--datasets", "bbc", "--skip", "extras,peers",
                                    "--workdir", str(tmp_path), "--textclf-first"])
    settings.data_overrides = {"bbc": []}
    ran = []

    def fake_worker(settings, script, task, spec, env=None):
        ran.append(spec["name"])
        return {"contender": spec["contender"], "dataset": "bbc", "family": spec["family"],
                "kind": "textclf", "extra": {"run_dir": str(tmp_path)}}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    monkeypatch.setattr(bench, "peak_of", lambda settings: {"tf_gflop_per_s": 1.0})
    results = bench.bench_dataset(settings, "bbc")
    assert ran == ["bbc_textclf_rnn", "bbc_textclf_cnn", "bbc_naive_cnn", "bbc_naive_rnn"]
    assert [r.contender for r in results] == [
        "naive Keras TextCNN", "naive Keras LSTM", "textclf bbc_cnn", "textclf bbc_rnn"]
    assert "--textclf-first" in settings.command


@pytest.mark.parametrize("recipe, family", [("bbc_cnn", "cnn"), ("bbc_rnn", "rnn")])
def test_ablation_times_keras_adam_against_the_fused_one(recipe, family):
    variants = bench.lever_variants(ROOT / "configs" / f"{recipe}.yaml", family, gpu=False)
    assert {"name": "Keras' Adam", "overrides": ["train.optimizer=keras_adam"]} in variants


@pytest.mark.parametrize("built", [True, False])
def test_ablation_turns_the_native_adam_op_off_alone(monkeypatch, built):
    """Where the kernels are built, each Adam recipe gets a row with the Adam
    op alone switched off; the native-ops row's name says that its switch
    turns the Adam op off too. On a GPU the op never runs, so no row."""
    monkeypatch.setattr(bench, "native_kernels_built", lambda: built)
    for recipe, family in (("bbc_cnn", "cnn"), ("bbc_rnn", "rnn")):
        variants = bench.lever_variants(ROOT / "configs" / f"{recipe}.yaml", family, gpu=False)
        row = {"name": "native Adam op off (TensorFlow's Adam ops)", "overrides": [],
               "env": {"TEXTCLF_NATIVE_ADAM": "0"}}
        assert (row in variants) is built
        gpu = bench.lever_variants(ROOT / "configs" / f"{recipe}.yaml", family, gpu=True)
        assert row not in gpu
    names = [v["name"] for v in variants]
    assert ("native ops off (graph loop, TensorFlow's Adam ops)" in names) is built


def test_ablation_runs_one_step_per_call_where_the_recipe_groups_steps(tmp_path):
    row = {"name": "one step per call", "overrides": ["train.steps_per_execution=1"]}
    for recipe, family in (("bbc_cnn", "cnn"), ("bbc_rnn", "rnn")):
        assert row in bench.lever_variants(ROOT / "configs" / f"{recipe}.yaml", family, gpu=False)
    single = tmp_path / "single.yaml"
    single.write_text((ROOT / "configs" / "bbc_cnn.yaml").read_text().replace(
        "steps_per_execution: 8", "steps_per_execution: 1"))
    assert row not in bench.lever_variants(single, "cnn", gpu=False)


def test_ablation_keeps_the_stop_words_of_a_recipe_that_drops_them():
    variants = bench.lever_variants(ROOT / "configs" / "bbc_rnn.yaml", "rnn", gpu=False)
    assert {"name": "stop words kept", "overrides": ["text.stop_words=null"]} in variants
    plain = bench.lever_variants(ROOT / "configs" / "bbc_cnn.yaml", "cnn", gpu=False)
    assert not any(v["name"] == "stop words kept" for v in plain)


def test_the_naive_budget_does_not_follow_textclf_recipes(tmp_path, monkeypatch):
    """The yardstick's epoch cap and patience are the benchmark's own: bbc_rnn
    trains 5 epochs, the naive LSTM may still run 8."""
    settings, _ = bench.parse_args(["--datasets", "bbc", "--skip", "extras,peers",
                                    "--workdir", str(tmp_path)])
    settings.data_overrides = {"bbc": []}
    specs = {}

    def fake_worker(settings, script, task, spec, env=None):
        specs[spec["name"]] = spec
        return {"error": "not measured in this test"}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    bench.bench_dataset(settings, "bbc")
    assert (specs["bbc_naive_cnn"]["epochs"], specs["bbc_naive_cnn"]["patience"]) == (10, 3)
    assert (specs["bbc_naive_rnn"]["epochs"], specs["bbc_naive_rnn"]["patience"]) == (8, 3)


def test_ablation_times_the_dense_max_gradient_for_the_cnn_only():
    cnn = bench.lever_variants(ROOT / "configs" / "bbc_cnn.yaml", "cnn", gpu=False)
    assert {"name": "max's gradient through dense backprops",
            "overrides": ["model.pool_gradient=shared"]} in cnn
    rnn = bench.lever_variants(ROOT / "configs" / "bbc_rnn.yaml", "rnn", gpu=False)
    assert not any("model.pool_gradient=shared" in v["overrides"] for v in rnn)


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


def test_training_flops_count_what_the_cnn_backward_runs():
    """3x forward for dense backprops; forward + the winning windows' work for
    MaxPooledConv1D's argmax gradient (counted from the config)."""
    import numpy as np
    from bench_common import Architecture, forward_flops, training_flops

    from textclf.config import ModelConfig

    def arch(**options):
        return Architecture.from_model_config(
            ModelConfig(type="cnn", kernel_sizes=(3, 4), filters=10, embedding_dim=8, **options), 5)

    steps = np.array([50, 20])
    dense = arch(pool_gradient="shared")
    assert training_flops(dense, steps, True) == 3 * forward_flops(dense, steps, True)
    assert training_flops(arch(pool_in_conv=False), steps, True) == 3 * forward_flops(
        dense, steps, True)
    sparse = arch()
    assert sparse.argmax_pool_gradient and not dense.argmax_pool_gradient
    head = 2 * 2.0 * 2 * 10 * 5  # 2 examples x 2 x (2 branches x 10 filters) x 5 classes
    windows = 2 * 4.0 * (3 + 4) * 8 * 10
    assert training_flops(sparse, steps, True) == forward_flops(sparse, steps, True) + 2 * head + windows


def test_the_branch_benchmark_times_both_max_gradients(capsys):
    """scripts/bench_conv_max.py runs both pool gradients (tiny shapes) and
    leaves the global dtype policy as it found it for the tests after it."""
    import re

    pytest.importorskip("tensorflow")
    import bench_conv_max
    import keras

    policy = keras.config.dtype_policy().name
    assert bench_conv_max.main(["--batch", "3", "--length", "12", "--dim", "4",
                                "--filters", "2", "--widths", "2", "3", "--policy", "float32",
                                "--repeats", "1"]) == 0
    assert keras.config.dtype_policy().name == policy
    out = capsys.readouterr().out
    assert re.findall(r"pool_gradient (shared|argmax) +\d+\.\d\d$", out, re.M) == [
        "shared", "argmax"]
    assert re.search(r"forward alone +\d+\.\d\d$", out, re.M)


def test_the_runs_peak_is_the_highest_of_its_start_end_and_row_probes():
    peaks = {"start": {"tf_gflop_per_s": 110.0}, "end": {"tf_gflop_per_s": 150.0}}
    probed = bench.Result(contender="textclf bbc_rnn", dataset="bbc", family="rnn",
                          kind="textclf", extra={"speed_probe": {"before": 212.0, "after": 205.0}})
    unprobed = bench.Result(contender="TF-IDF + LinearSVC", dataset="bbc", family="svm",
                            kind="peer")
    # A machine slow at the start and end must not inflate every share.
    assert bench.run_peak(peaks, [probed, unprobed]) == 212.0
    assert bench.run_peak(peaks, [unprobed]) == 150.0  # runs without probes: as before
