"""``textclf tune``: the ``tune`` config section (checked against the real schema)
and KerasTuner random search / Bayesian optimisation on a tiny CNN."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import yaml

from textclf.cli import cli
from textclf.config import config_from_dict, load_config
from textclf.errors import ConfigError

BASE = {"data": {"train": "train.tsv", "format": "tsv"}}


def with_space(space, **tune) -> dict:
    return {**BASE, "tune": {**tune, "space": space}}


@pytest.mark.parametrize("raw, message", [
    (with_space({"model.filtrs": {"choice": [4]}}),
     "unknown key tune.space.model.filtrs in section tune.space; did you mean model.filters?"),
    (with_space({"data.train": {"choice": ["a.tsv"]}}),
     "unknown key tune.space.data.train in section tune.space"),
    (with_space({"model.filters": {"choice": [0, 8]}}),
     "tune.space.model.filters must be a positive integer; got 0"),
    (with_space({"model.filters": {"uniform": [4, 8]}}),
     "tune.space.model.filters must be {choice: a non-empty list of values} or "
     "{int: [low, high] or [low, high, step]}; got {'uniform': [4, 8]}"),
    (with_space({"train.learning_rate": {"log_uniform": [0.1, 0.001]}}),
     "tune.space.train.learning_rate must be {log_uniform: [low, high], low above 0} with "
     "low below high"),
    (with_space({"train.optimizer": {"choice": ["adam", "adamw"]}}),
     "tune.space.train.optimizer must be one of adam, keras_adam, sgd, rmsprop, adagrad; "
     "got 'adamw'"),
    (with_space({"model.units": {"int": [8, 64, 0]}}),
     "tune.space.model.units.int must be a positive integer step; got 0"),
    (with_space({}), "tune.space must be a non-empty mapping of config keys"),
    (with_space({"model.filters": {"choice": [4]}}, algorithm="grid"),
     "tune.algorithm must be one of random, bayesian; got 'grid'"),
    (with_space({"model.filters": {"choice": [4]}}, objective="accuracy"),
     "tune.objective must be one of val_loss, val_accuracy, val_macro_f1"),
])
def test_tune_section_errors_use_the_config_template(raw, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert message in str(caught.value)


def test_a_valid_space_is_normalised_and_dumped():
    space = {"model.filters": {"choice": [4, 8]}, "model.kernel_sizes": {"choice": [[2], [2, 3]]},
             "model.units": {"int": [8, 64, 8]}, "model.dropout": {"uniform": [0.1, 0.6]},
             "train.learning_rate": {"log_uniform": [1e-4, 1e-2]}}
    cfg = config_from_dict(with_space(space, trials=4))
    assert cfg.tune.space == space and cfg.tune.trials == 4 and cfg.tune.algorithm == "random"


@pytest.fixture
def tune_config(tmp_path, tiny_tsv):
    path = tmp_path / "tune.yaml"
    raw = yaml.safe_load(
        "data: {train: train.tsv, format: tsv}\n"
        "text: {max_tokens: 100, max_length: 30}\n"
        "model: {type: cnn, embedding_dim: 16, filters: 8, kernel_sizes: [2, 3]}\n"
        "train: {epochs: 2, batch_size: 16, learning_rate: 0.01, verbose: quiet}\n"
        "tune:\n  trials: 3\n  objective: val_accuracy\n  space:\n"
        "    model.filters: {choice: [4, 8]}\n"
        "    model.kernel_sizes: {choice: [[2], [2, 3]]}\n"
        "    train.learning_rate: {log_uniform: [0.001, 0.03]}\n")
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_tune_writes_trials_and_a_best_config_that_trains(runner, tune_config, tmp_path,
                                                          algorithm):
    pytest.importorskip("keras_tuner")
    if algorithm == "bayesian":
        pytest.importorskip("sklearn")
    out = tmp_path / "search"
    # Bayesian: two random trials, then one the Gaussian process proposes.
    result = runner.invoke(cli, ["tune", "-c", str(tune_config), "--trials", "3",
                                 "--algorithm", algorithm, "-o", str(out), "--json",
                                 "--set", "tune.initial_points=2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["algorithm"] == algorithm and summary["objective"] == "val_accuracy"
    trials = summary["trials"]
    assert len(trials) == 3 and all(t["status"] == "COMPLETED" for t in trials)
    best = max(trials, key=lambda t: t["score"])
    assert summary["best"]["score"] == best["score"]
    for trial in trials:
        assert trial["values"]["model.filters"] in (4, 8)
        assert trial["values"]["model.kernel_sizes"] in ([2], [2, 3])
        assert 0.001 <= trial["values"]["train.learning_rate"] <= 0.03
        assert 1 <= trial["best_epoch"] <= 2

    with open(out / "trials.tsv", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["trial"] for row in table] == [t["trial"] for t in trials]
    assert [json.loads(row["model.kernel_sizes"]) for row in table] == \
        [t["values"]["model.kernel_sizes"] for t in trials]
    assert json.loads((out / "trials.json").read_text()) == trials

    tuned = load_config(out / "best_config.yaml")
    values = summary["best"]["values"]
    assert tuned.model.filters == values["model.filters"]
    assert list(tuned.model.kernel_sizes) == values["model.kernel_sizes"]
    assert tuned.train.learning_rate == pytest.approx(values["train.learning_rate"])
    if algorithm == "random":  # once is enough: the best config trains as it is
        trained = runner.invoke(cli, ["train", "-c", str(out / "best_config.yaml"), "-o",
                                      str(tmp_path / "best"), "--set", "train.epochs=1"])
        assert trained.exit_code == 0, trained.output


def test_tune_refuses_an_existing_output_and_a_config_without_space(runner, tune_config,
                                                                    tiny_config, tmp_path):
    pytest.importorskip("keras_tuner")
    (tmp_path / "taken").mkdir()
    taken = runner.invoke(cli, ["tune", "-c", str(tune_config), "-o", str(tmp_path / "taken")])
    assert taken.exit_code == 2 and "exists; pass --force" in taken.output
    no_space = runner.invoke(cli, ["tune", "-c", str(tiny_config), "-o", str(tmp_path / "x")])
    assert no_space.exit_code == 2
    assert "tune.space must be a non-empty mapping of config keys" in no_space.output


def test_a_trial_config_that_cannot_train_fails_before_the_search(runner, tune_config, tmp_path):
    """Each range is tried at its ends through the cross-field checks first."""
    pytest.importorskip("keras_tuner")
    raw = yaml.safe_load(tune_config.read_text())
    raw["tune"]["space"] = {"train.momentum": {"uniform": [0.0, 0.9]}}  # adam has none
    tune_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(cli, ["tune", "-c", str(tune_config), "-o", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "train.momentum must be 0 unless train.optimizer is sgd or rmsprop" in result.output
    assert not (tmp_path / "s").exists()


def test_tune_without_keras_tuner_says_how_to_install_it(runner, tune_config, tmp_path,
                                                         monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # import keras_tuner fails
    result = runner.invoke(cli, ["tune", "-c", str(tune_config), "-o", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "textclf tune needs KerasTuner: pip install 'keras-textclf[tune]'" in result.output
