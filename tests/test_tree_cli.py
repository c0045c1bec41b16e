"""Tree nets through the command line: train -> evaluate -> predict -> check, --resume,
and the treenet config cross-checks, on tiny synthetic PTB trees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textclf.cli import cli

FILLER = ("the", "film", "is", "a", "plot", "very")


def invoke(runner, *args, input=None):
    return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def _bracket(words: list[str], rng) -> tuple[str, set]:
    """A random binary bracketing of ``words``; a node is 4 if its span holds 'good',
    0 if 'bad', else 2 (neutral: unlabelled under tree_labels binary)."""
    if len(words) == 1:
        span = {words[0]}
        return f"({_label(span)} {words[0]})", span
    cut = int(rng.integers(1, len(words)))
    left, left_span = _bracket(words[:cut], rng)
    right, right_span = _bracket(words[cut:], rng)
    span = left_span | right_span
    return f"({_label(span)} {left} {right})", span


def _label(span: set) -> int:
    return 4 if "good" in span else 0 if "bad" in span else 2


def write_trees(path, n: int, seed: int):
    """``n`` PTB lines; about 1 in 20 has no sentiment word (a neutral root, dropped)."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(1, 7))))
        if rng.random() < 0.95:
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(["good", "bad"])))
        lines.append(_bracket(words, rng)[0] + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_config(folder, *data_lines: str):
    """A fast Tree-LSTM recipe over ``folder/train.txt``; ``data_lines`` add data keys."""
    path = folder / "tiny_tree.yaml"
    path.write_text("\n".join([
        "data:", "  train: train.txt", "  format: ptb_trees", "  tree_labels: binary",
        *data_lines,
        "model:", "  type: treenet", "  embedding_dim: 8", "  units: 8", "  dropout: 0.1",
        "train:", "  epochs: 4", "  batch_size: 16", "  learning_rate: 0.02",
        "  monitor: val_accuracy", "  verbose: quiet", ""]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tree_run(tmp_path_factory):
    """One tiny Tree-LSTM run (valid from dev.txt, test carved from train.txt)."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("trees")
    write_trees(folder / "train.txt", 200, seed=0)
    write_trees(folder / "dev.txt", 60, seed=1)
    config = write_config(folder, "  valid: dev.txt")
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "-o", str(folder / "run")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_tree_run_directory_is_complete(tree_run):
    from textclf.trees import TreeVocab, read_trees

    names = {p.name for p in tree_run.iterdir()}
    assert {"run.json", "config.yaml", "labels.json", "tree_vocab.json", "model.keras",
            "tree_weights.npz", "metrics.json", "history.csv", "split.json"} <= names
    assert "checkpoint" not in names and "vocabulary.txt" not in names
    info = json.loads((tree_run / "run.json").read_text())
    assert info["model_type"] == "treenet" and info["n_classes"] == 2
    assert json.loads((tree_run / "labels.json").read_text()) == {"labels": ["0", "1"]}
    vocab = TreeVocab.from_dict(json.loads((tree_run / "tree_vocab.json").read_text()))
    assert set(vocab.words_[2:]) == {*FILLER, "good", "bad"}
    assert info["vocabulary_size"] == len(vocab)
    # The test split is carved from train.txt on root labels; valid is dev.txt.
    split = json.loads((tree_run / "split.json").read_text())
    source = read_trees(tree_run.parent / "train.txt", labels="binary")
    assert split["valid"] == [] and len(split["test"]) > 0
    assert sorted(split["train"] + split["test"]) == list(range(len(source)))
    assert info["examples"] == {"train": len(split["train"]), "test": len(split["test"]),
                                "valid": len(read_trees(tree_run.parent / "dev.txt",
                                                        labels="binary"))}
    metrics = json.loads((tree_run / "metrics.json").read_text())
    for report in metrics.values():
        assert report["accuracy"] >= 0.9 and report["all_nodes_accuracy"] >= 0.9
        assert report["labels"] == ["0", "1"] and report["n_nodes"] > report["n_examples"]
    assert metrics["test"]["n_examples"] == len(split["test"])
    header = (tree_run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "loss", "accuracy", "all_nodes_accuracy", "val_accuracy",
            "val_all_nodes_accuracy"} <= set(header)


@pytest.mark.parametrize("split", ["test", "valid"])
def test_evaluate_json_reproduces_the_saved_metrics(runner, tree_run, split):
    result = invoke(runner, "evaluate", tree_run, "--split", split, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == json.loads((tree_run / "metrics.json").read_text())[split]


def test_evaluate_text_has_the_all_nodes_line_and_engines_agree(runner, tree_run):
    saved = json.loads((tree_run / "metrics.json").read_text())["valid"]
    text = invoke(runner, "evaluate", tree_run, tree_run.parent / "dev.txt").output
    assert (f"all-nodes accuracy {saved['all_nodes_accuracy']:.4f} "
            f"({saved['n_nodes']} labelled nodes)") in text
    assert text.index("weighted avg") < text.index("all-nodes") < text.index("confusion matrix")
    numpy = invoke(runner, "evaluate", tree_run, tree_run.parent / "dev.txt", "--engine",
                   "numpy", "--format", "json")
    assert numpy.exit_code == 0, numpy.output
    report = json.loads(numpy.output)
    assert report["confusion_matrix"] == saved["confusion_matrix"]
    assert report["all_nodes_accuracy"] == saved["all_nodes_accuracy"]


def test_predict_reads_trees_raw_sentences_and_empty_lines(runner, tree_run, tmp_path):
    lines = ["(0 (0 (2 the) (2 very)) (0 (0 good) (2 film)))", "a bad film.", "",
             "the very good film"]
    source = tmp_path / "inputs.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(runner, "predict", tree_run, source, "--batch-size", 3, "--top-k", 1)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert [records[i]["label"] for i in (0, 1, 3)] == ["1", "0", "1"]  # gold labels ignored
    assert all(len(r["top_k"]) == 1 and r["top_k"][0][0] == r["label"] for r in records)
    # The raw sentence gets the balanced tree ((the very) (good film)): line 1's structure.
    assert records[3]["probability"] == pytest.approx(records[0]["probability"], abs=2e-6)
    numpy = invoke(runner, "predict", tree_run, "-", "--engine", "numpy",
                   input="\n".join(lines) + "\n")
    for a, b in zip(records, map(json.loads, numpy.output.splitlines()), strict=True):
        assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) < 1e-5


def test_check_with_gradients_agrees(runner, tree_run):
    result = invoke(runner, "check", tree_run, "--n", 12, "--gradients")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("12 trees (")
    rows = [line.split()[0] for line in result.output.splitlines()[3:-1]]
    assert rows == ["node_vectors", "probabilities", "loss", "grad/embedding", "grad/kernel",
                    "grad/bias", "grad/output_kernel", "grad/output_bias",
                    "grad/recurrent_kernel"]
    assert result.output.rstrip().endswith("OK: Keras and NumPy agree")


def test_check_exits_1_when_a_difference_exceeds_tolerance(runner, tree_run, monkeypatch):
    from textclf.models import treenet

    real = treenet.compare_with_reference

    def off_by_a_little(*args, **kwargs):
        report = real(*args, **kwargs)
        report["probabilities"] = {"max_abs": 3e-4, "max_rel": 1e-3, "ok": False}
        return report

    monkeypatch.setattr(treenet, "compare_with_reference", off_by_a_little)
    result = runner.invoke(cli, ["check", str(tree_run), "--n", "4"])
    assert result.exit_code == 1
    assert "probabilities" in result.output and "EXCEEDS TOLERANCE" in result.output
    assert "FAILED: beyond tolerance: probabilities" in result.output
    assert "disagree beyond tolerance" in result.output


def test_export_refuses_a_tree_run(runner, tree_run, tmp_path):
    result = runner.invoke(cli, ["export", str(tree_run), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "a treenet run's model reads parsed trees" in result.output
    assert not (tmp_path / "out").exists()


def test_interrupted_tree_training_resumes_to_the_same_result(runner, tmp_path, monkeypatch):
    """Stop after epoch 2 (as Ctrl-C would), resume, and match an uninterrupted run."""
    from conftest import stop_after_epoch

    write_trees(tmp_path / "train.txt", 240, seed=2)  # valid and test both carved
    config = write_config(tmp_path)
    overrides = ["--set", "train.deterministic=true", "--set", "train.patience=null",
                 "--set", "train.epochs=3"]
    whole = invoke(runner, "train", "-c", config, "-o", tmp_path / "whole", *overrides)
    assert whole.exit_code == 0, whole.output

    undo = stop_after_epoch(monkeypatch, 1)
    target = tmp_path / "resumed"
    stopped = runner.invoke(cli, ["train", "-c", str(config), "-o", str(target), *overrides])
    assert stopped.exit_code == 1
    assert f"textclf train --resume {target}" in stopped.output
    assert not target.exists(), "an unfinished run must not look like a run"
    undo()

    resumed = invoke(runner, "train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    for name in ("metrics.json", "history.csv", "split.json", "tree_vocab.json"):
        assert (target / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert len((target / "history.csv").read_text().splitlines()) == 4  # header + 3 epochs


def test_steps_per_execution_leaves_a_tree_run_unchanged(runner, tmp_path):
    """train.steps_per_execution groups a tree net's steps per call too; the
    run is the one-step-per-call run, to the bit."""
    write_trees(tmp_path / "train.txt", 240, seed=3)
    config = write_config(tmp_path)
    overrides = ["--set", "train.deterministic=true", "--set", "train.epochs=2"]
    for name, steps in (("one", 1), ("four", 4)):
        result = invoke(runner, "train", "-c", config, "-o", tmp_path / name, *overrides,
                        "--set", f"train.steps_per_execution={steps}")
        assert result.exit_code == 0, result.output
    for name in ("metrics.json", "history.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "four" / name).read_text()


@pytest.mark.parametrize("overrides, message", [
    (["model.tree_cell=rnn", "model.units=6"],
     "model.units must be equal to model.embedding_dim (8) for model.tree_cell rnn; got 6"),
    (["train.monitor=val_macro_f1"],
     ("train.monitor must be val_loss or val_accuracy for model.type treenet; "
      "got 'val_macro_f1'")),
])
def test_treenet_config_cross_checks(runner, tmp_path, overrides, message):
    config = write_config(tmp_path)
    sets = [arg for item in overrides for arg in ("--set", item)]
    result = runner.invoke(cli, ["config", "validate", str(config), *sets])
    assert result.exit_code == 2
    assert f"Error: {message} ({config})" in result.output
    # embedding_dim == units == 8 in the recipe: the rnn cell and val_loss are fine.
    ok = invoke(runner, "config", "validate", config, "--set", "model.tree_cell=rnn",
                "--set", "train.monitor=val_loss")
    assert ok.exit_code == 0, ok.output


def test_unsupported_training_options_leave_nothing(runner, tmp_path):
    write_trees(tmp_path / "train.txt", 40, seed=3)
    config = write_config(tmp_path)
    result = runner.invoke(cli, ["train", "-c", str(config), "-o", str(tmp_path / "run"),
                                 "--set", "train.class_weight=balanced"])
    assert result.exit_code == 2
    assert "train.class_weight is not supported for model.type treenet" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()
