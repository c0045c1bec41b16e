"""``text.embeddings``: word2vec/GloVe text vectors, Kim's out-of-vocabulary rows,
CNN-static (frozen) and non-static (fine-tuned) training, coverage in the log."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TOPIC_WORDS
from textclf.cli import cli
from textclf.errors import DataError
from textclf.text import load_embeddings

VOCAB = ["", "[UNK]", "goal", "bank", "robot", "unseen"]


def vectors(words, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {w: rng.normal(0.0, 0.4, dim).astype(np.float32) for w in words}


def write_vectors(path: Path, table: dict, header: bool = False, compress: bool = False) -> Path:
    """The word2vec text format (``header``: a first line "<count> <dim>") or GloVe's."""
    dim = len(next(iter(table.values())))
    lines = [f"{len(table)} {dim}\n"] if header else []
    lines += [w + " " + " ".join(f"{x:.6f}" for x in v) + "\n" for w, v in table.items()]
    text = "".join(lines)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [False, True], ids=["glove", "word2vec"])
@pytest.mark.parametrize("compress", [False, True], ids=["text", "gzip"])
def test_formats_read_alike_and_known_rows_are_the_file_vectors(tmp_path, header, compress):
    table = vectors(["goal", "bank", "robot", "other"], dim=5)
    path = write_vectors(tmp_path / "vec.txt", table, header, compress)
    matrix, found = load_embeddings(str(path), VOCAB, 5, seed=3)
    assert matrix.shape == (6, 5) and matrix.dtype == np.float32
    assert found == 3  # goal, bank, robot; "other" is not in the vocabulary
    np.testing.assert_array_equal(matrix[0], 0.0)  # padding
    for row, word in enumerate(VOCAB[2:5], start=2):
        np.testing.assert_allclose(matrix[row], table[word], atol=1e-6)
    # Unknown rows ([UNK], "unseen") are drawn, not zero, and lie in [-a, a].
    known = matrix[2:5]
    a = np.sqrt(3 * known.var())
    for row in (1, 5):
        assert np.all(np.abs(matrix[row]) <= a) and np.any(matrix[row] != 0)


def test_unknown_rows_have_the_variance_of_the_pretrained_ones(tmp_path):
    """Kim (2014): U[-a, a] with a chosen so unknown words vary as much as known ones."""
    words = [f"w{i}" for i in range(3000)]
    table = vectors(words[:300], dim=20, seed=1)
    path = write_vectors(tmp_path / "vec.txt", table)
    matrix, found = load_embeddings(str(path), ["", "[UNK]", *words], 20, seed=0)
    assert found == 300
    known, unknown = matrix[2:302], matrix[302:]
    assert unknown.var() == pytest.approx(known.var(), rel=0.05)
    assert np.abs(unknown).max() <= np.sqrt(3 * known.var()) + 1e-6
    again, _ = load_embeddings(str(path), ["", "[UNK]", *words], 20, seed=0)
    np.testing.assert_array_equal(matrix, again)  # the seed fixes the draw


@pytest.mark.parametrize("content, message", [
    ("goal 0.1 0.2\n", "vec.txt:1: vector has 2 values, expected 3 (model.embedding_dim)"),
    ("bank 0.1 0.2 0.3\ngoal 0.1 x 0.3\n", "vec.txt:2: vector values must be numbers"),
    (b"goal 0.1 \xff 0.3\n", "vec.txt: not UTF-8"),
])
def test_malformed_vectors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "vec.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_embeddings(str(path), VOCAB, 3, seed=0)


def test_missing_vectors_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file \\(text.embeddings\\)"):
        load_embeddings(str(tmp_path / "absent.txt"), VOCAB, 3, seed=0)


# --------------------------------------------------------------------------
# Training with pretrained vectors (tiny CNN, two epochs).
# --------------------------------------------------------------------------


@pytest.fixture
def vectors_file(tmp_path) -> Path:
    """16-d vectors for the topic words and a few words the data never use."""
    words = sorted({w for group in TOPIC_WORDS.values() for w in group}) + ["absent", "words"]
    return write_vectors(tmp_path / "vectors.txt", vectors(words, 16, seed=2), header=True,
                         compress=True)


@pytest.mark.parametrize("trainable", [False, True], ids=["static", "non-static"])
def test_training_starts_from_the_vectors_and_freezes_them_when_static(
        runner, tmp_path, tiny_config, vectors_file, trainable):
    run = tmp_path / "run"
    result = runner.invoke(cli, [
        "train", "-c", str(tiny_config), "-o", str(run), "--set", "train.epochs=2",
        "--set", f"text.embeddings={vectors_file}",
        "--set", f"text.embeddings_trainable={str(trainable).lower()}"])
    assert result.exit_code == 0, result.output
    vocabulary = (run / "vocabulary.txt").read_text("utf-8").split("\n")[:-1]
    words = len(vocabulary) - 2
    # Every word of the tiny data is a topic word or a filler; fillers have no vector.
    known = sum(w in {x for g in TOPIC_WORDS.values() for x in g} for w in vocabulary)
    assert f"pretrained vectors for {known} of {words} vocabulary words " \
           f"({known / words:.1%})" in result.output
    start, _ = load_embeddings(str(vectors_file), vocabulary, 16, seed=13)  # train.seed
    with np.load(run / "weights.npz", allow_pickle=False) as weights:
        trained = weights["embedding/embeddings"]
    if trainable:
        assert np.abs(trained - start).max() > 1e-3, "non-static: the vectors were tuned"
    else:
        np.testing.assert_array_equal(trained, start)
    # The matrix is in the weights, not repeated in the model's JSON config.
    with zipfile.ZipFile(run / "model.keras") as archive:
        config = archive.read("config.json")
    assert b"Constant" not in config and len(config) < 100_000
