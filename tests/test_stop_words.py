"""``text.stop_words``: the list, the vocabulary's layout, and both engines dropping them."""

from __future__ import annotations

import numpy as np
import pytest

from textclf.config import TextConfig, load_config
from textclf.errors import ConfigError
from textclf.text import build_vectorizer, stop_words, vectorize

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

TRAIN = ["The cat sat on the mat", "Dogs don't bark at the mail man", "Stocks fell sharply today",
         "the match ended in a draw", "rates rise as markets fall", "a cat and a dog"]


def test_the_english_list_is_standardised_as_the_text_is():
    words = stop_words(TextConfig(stop_words="english"))
    assert {"the", "a", "and", "of", "dont", "isnt"} <= set(words)
    # Left out on purpose (the file says why): they are content words too.
    assert not {"us", "mine", "well", "hell", "ill", "shed"} & set(words)
    assert len(words) == len(set(words))
    kept_apostrophes = stop_words(TextConfig(stop_words="english", strip_punctuation=False))
    assert "don't" in kept_apostrophes and "dont" not in kept_apostrophes


def test_a_file_list_is_resolved_against_the_config_and_read_as_tokens(tmp_path):
    (tmp_path / "words.txt").write_text("# comment\nThe\n\nOn\nthe\nhot dog\nAT\n",
                                        encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(
        "data: {train: train.tsv}\ntext: {stop_words: words.txt}\n", encoding="utf-8")
    cfg = load_config(tmp_path / "recipe.yaml")
    assert cfg.text.stop_words == str((tmp_path / "words.txt").resolve())
    # lower-cased, repeats and comments dropped; "hot dog" can never be one token
    assert stop_words(cfg.text) == ["the", "on", "at"]
    chars = TextConfig(stop_words=str(tmp_path / "words.txt"), split="character")
    assert stop_words(chars) == []  # no single-character line


def test_a_missing_list_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="text.stop_words must be one of english or a file"):
        stop_words(TextConfig(stop_words=str(tmp_path / "nope.txt")))


def test_a_tree_net_refuses_stop_words(tmp_path):
    (tmp_path / "recipe.yaml").write_text(
        "data: {train: t.txt, format: ptb_trees}\ntext: {stop_words: english}\n"
        "model: {type: treenet}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="text.stop_words must be left out for model.type "
                                          "treenet"):
        load_config(tmp_path / "recipe.yaml")


def test_stop_words_take_the_ids_after_oov_and_leave_the_rest_to_max_tokens(tmp_path):
    (tmp_path / "words.txt").write_text("the\na\nzebra\n", encoding="utf-8")
    cfg = TextConfig(stop_words=str(tmp_path / "words.txt"), max_tokens=8)
    vocabulary = build_vectorizer(cfg, TRAIN).get_vocabulary()
    # "zebra" is in no training text and still gets its id: the list fixes the range.
    assert vocabulary[:5] == ["", "[UNK]", "the", "a", "zebra"]
    assert len(vocabulary) == 8 and not {"the", "a"} & set(vocabulary[5:])
    with pytest.raises(ConfigError, match="text.max_tokens must be above 5"):
        build_vectorizer(TextConfig(stop_words=cfg.stop_words, max_tokens=5), TRAIN)


def test_training_ids_drop_stop_words_before_the_cut():
    cfg = TextConfig(stop_words="english", max_tokens=300)
    vectorizer = build_vectorizer(cfg, TRAIN)
    vocabulary = vectorizer.get_vocabulary()
    n = len(stop_words(cfg))
    ids = vectorize(vectorizer, ["the cat sat on the mat", "The a an of", "zzz the dog"],
                    max_length=2, n_stop_words=n)
    words = [[vocabulary[i] for i in row] for row in ids]
    assert words == [["cat", "sat"], [], ["[UNK]", "dog"]]


def test_the_truncate_layer_drops_them_as_training_did():
    from textclf.models.layers import TruncateTokens

    cfg = TextConfig(stop_words="english", max_tokens=300)
    vectorizer = build_vectorizer(cfg, TRAIN)
    n = len(stop_words(cfg))
    texts = ["the cat sat on the mat", "The a an of", "zzz the dog", "stocks fell " * 5]
    layer = TruncateTokens(3, n)
    got = np.asarray(layer(vectorizer(tf.constant(texts))))
    expected = vectorize(vectorizer, texts, max_length=3, n_stop_words=n)
    assert got.shape == (4, 3)
    for row, want in zip(got, expected):
        np.testing.assert_array_equal(row[:len(want)], want)
        assert not row[len(want):].any()
    # Only stop words: one padding column, as for an empty batch.
    assert np.asarray(layer(vectorizer(tf.constant(["the of", "a"])))).shape == (2, 1)
    assert TruncateTokens.from_config(layer.get_config()).stop_words == n


def test_a_run_with_stop_words_predicts_the_same_with_both_engines(tmp_path):
    """Trained through the CLI with a list file that is then deleted: the run
    directory alone carries the words (ids in the vocabulary, their count in
    the truncate layer), and adding stop words to a text changes nothing."""
    from click.testing import CliRunner

    from textclf.cli import cli
    from textclf.artifact import open_run
    from textclf.inference import keras_predictor
    from textclf.reference.engine import NumpyEngine

    from conftest import TINY_LSTM_RECIPE, write_topic_tsv

    write_topic_tsv(tmp_path / "train.tsv", 120)
    (tmp_path / "words.txt").write_text("the\nof\nand\n", encoding="utf-8")
    recipe = TINY_LSTM_RECIPE.replace("text: {", "text: {stop_words: words.txt, ")
    (tmp_path / "lstm.yaml").write_text(recipe, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(tmp_path / "lstm.yaml"), "-o",
                                      str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "training documents: without its 3 stop words," in result.output
    (tmp_path / "words.txt").unlink()
    texts = ["goal match team", "the goal of the match and the team", "", "the of and",
             "market shares bank"]
    run = open_run(tmp_path / "run")
    keras_probs = keras_predictor(run)(texts)
    numpy_probs = NumpyEngine(tmp_path / "run").predict_proba(texts)
    np.testing.assert_allclose(numpy_probs, keras_probs, atol=1e-5)
    np.testing.assert_allclose(keras_probs[1], keras_probs[0], atol=1e-6)
    np.testing.assert_allclose(keras_probs[3], keras_probs[2], atol=1e-6)
    plain = keras_predictor(run, fold=False)(texts)  # the saved model itself, unfolded
    np.testing.assert_allclose(plain, keras_probs, atol=1e-5)
