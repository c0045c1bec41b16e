"""Config loading: every error class names the key, what is allowed, what was found."""

from __future__ import annotations

from pathlib import Path

import pytest

from textclf.config import Config, config_from_dict, dump_config, load_config
from textclf.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = "data:\n  train: train.tsv\n"


@pytest.mark.parametrize("text, message", [
    (BASE + "model:\n  filtrs: 3\n",
     "unknown key model.filtrs in section model; did you mean model.filters?"),
    (BASE + "modle:\n  type: cnn\n", "unknown key modle in section config; did you mean model?"),
    (BASE + "model:\n  filters: 0\n", "model.filters must be a positive integer; got 0"),
    (BASE + "model:\n  filters: '100'\n", "model.filters must be a positive integer; got '100'"),
    (BASE + "model:\n  filters: true\n", "model.filters must be a positive integer; got True"),
    (BASE + "model:\n  type: transformer\n",
     "model.type must be one of cnn, rnn, treenet; got 'transformer'"),
    (BASE + "model:\n  dropout: 1.5\n", "model.dropout must be a number in [0, 1); got 1.5"),
    (BASE + "model:\n  kernel_sizes: [3, -1]\n",
     "model.kernel_sizes must be a non-empty list of positive integers; got [3, -1]"),
    (BASE + "train:\n  learning_rate: 0\n",
     "train.learning_rate must be a number in (0, inf]; got 0"),
    (BASE + "train:\n  learning_rate: .nan\n", "train.learning_rate must be a number"),
    (BASE + "train:\n  warmup_epochs: 1\n",
     "train.warmup_epochs must be 0 unless train.lr_schedule is cosine; got 1"),
    (BASE + "train:\n  lr_schedule: cosine\n  epochs: 2\n  warmup_epochs: 2\n",
     "train.warmup_epochs must be fewer than train.epochs (2); got 2"),
    (BASE + "model:\n  type: cnn\n  cpu_loop: keras\n", "model.cpu_loop"),
    (BASE + "model:\n  pool_gradient: first\n",
     "model.pool_gradient must be one of argmax, shared; got 'first'"),
    (BASE + "model:\n  type: rnn\n  pool_gradient: shared\n",
     "model.pool_gradient must be left out for model.type rnn; got 'shared'"),
    (BASE + "train:\n  momentum: 0.9\n",
     "train.momentum must be 0 unless train.optimizer is sgd or rmsprop; got 0.9"),
    (BASE + "text:\n  split: bpe\n", "text.split must be one of whitespace, character; got 'bpe'"),
    (BASE + "model:\n  type: rnn\n  filters: 64\n",
     "model.filters must be left out for model.type rnn; got 64"),
    ("data:\n  train: t.tsv\n  split: {valid: 0.6, test: 0.5}\n",
     "data.split must be fractions valid + test below 1; got 1.1"),
    (BASE + "data:\n  format: csv\n", "duplicate key 'data' at line 3"),
    ("data:\n  format: tsv\n", "data.train must be a path"),
    ("data:\n  train: builtin:nope\n", "data.train must be one of builtin:bbc-news"),
    (BASE + "train: 3\n", "train must be a mapping of keys to values; got 3"),
    ("- a\n- b\n", "config must be a mapping with sections data, text, model, train; got 'list'"),
    (BASE + "model:\n  type: cnn\n   filters: 3\n", "config must be valid YAML"),
    (BASE + "model:\n\ttype: cnn\n", "YAML forbids tabs"),
    (BASE + "train:\n  pad_to_multiple_of: 0\n",
     "train.pad_to_multiple_of must be auto or an integer in [1, 1024]; got 0"),
    (BASE + "train:\n  steps_per_execution: 0\n",
     "train.steps_per_execution must be an integer in [1, 1024]; got 0"),
    (BASE + "train:\n  jit_compile: sometimes\n",
     "train.jit_compile must be auto or true or false; got 'sometimes'"),
    (BASE + "train:\n  label_smoothing: 1\n",
     "train.label_smoothing must be a number in [0, 1); got 1"),
    ("data:\n  train: t.txt\n  format: ptb_trees\nmodel:\n  type: treenet\n"
     "train:\n  label_smoothing: 0.1\n",
     "train.label_smoothing must be 0 for model.type treenet; got 0.1"),
    (BASE + "train:\n  class_weight: heavy\n",
     "train.class_weight must be 'balanced' or a map of label to a positive weight"),
])
def test_config_errors_name_key_expectation_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config must be an existing YAML file"):
        load_config(tmp_path / "absent.yaml")


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(path, ["train.epochs=3", "model.kernel_sizes=[2, 4]", "text.lowercase=false"])
    assert cfg.train.epochs == 3
    assert cfg.model.kernel_sizes == (2, 4)
    assert cfg.text.lowercase is False
    with pytest.raises(ConfigError, match="train.epochs must be a positive integer; got 'three'"):
        load_config(path, ["train.epochs=three"])
    with pytest.raises(ConfigError, match="did you mean train.epochs"):
        load_config(path, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="--set must be key.path=value"):
        load_config(path, ["train.epochs"])


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("data:\n  train: [../a.tsv, builtin:bbc-news]\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.data.train == (str((tmp_path / "a.tsv").resolve()), "builtin:bbc-news")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "model:\n  type: rnn\n  cell: gru\n"))
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg
    assert isinstance(again, Config)


def test_config_is_frozen():
    cfg = config_from_dict({"data": {"train": "x"}})
    with pytest.raises(AttributeError):
        cfg.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    load_config(path)
