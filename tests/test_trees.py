"""PTB tree reader, raw-sentence trees, vocabulary and left-padded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textclf.errors import DataError
from textclf.trees import (
    OOV_ID,
    Tree,
    TreeVocab,
    binarize_labels,
    input_to_tree,
    parse_tree,
    read_trees,
    sentence_to_tree,
    tokenize_sentence,
    tokens_to_tree,
    trees_to_batch,
)

SST_TREES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst_trees"


@pytest.fixture
def sst_trees_dir() -> Path:
    if not SST_TREES.is_dir():
        pytest.skip(f"SST trees not found at {SST_TREES} (needs ../shared/data)")
    return SST_TREES


def test_parse_gives_post_order_arrays():
    tree = parse_tree("(3 (2 It) (4 (2 's) (3 good)))")
    assert tree.tokens == ("It", "'s", "good")
    np.testing.assert_array_equal(tree.leaf, [0, 1, 2, -1, -1])
    np.testing.assert_array_equal(tree.left, [-1, -1, -1, 1, 0])
    np.testing.assert_array_equal(tree.right, [-1, -1, -1, 2, 3])
    np.testing.assert_array_equal(tree.labels, [2, 2, 3, 4, 3])
    np.testing.assert_array_equal(tree.height, [0, 0, 0, 1, 2])
    assert tree.words == ["It", "'s", "good", None, None]
    assert tree.root_label == 3


def test_parse_unescapes_brackets_and_slashes():
    tree = parse_tree(r"(2 (2 -LRB-) (2 (2 and\/or) (2 -RRB-)))")
    assert tree.tokens == ("(", "and/or", ")")
    assert tree.text == "( and/or )"


def test_single_leaf_tree_and_odd_spacing():
    tree = parse_tree("  (4   great )\r\n")
    assert tree.tokens == ("great",)
    np.testing.assert_array_equal(tree.labels, [4])
    np.testing.assert_array_equal(tree.height, [0])


def test_no_break_space_stays_inside_a_word():
    tree = parse_tree("(2 (2 8\xa01/2) (2 Women))")
    assert tree.tokens == ("8\xa01/2", "Women")


@pytest.mark.parametrize("line, col, message", [
    ("(3 (2 a) (2 b)", 15, "unbalanced brackets: 1 '(' not closed (the innermost opened at column 1)"),
    ("(3 (2 a) (2 b)))", 16, "unbalanced brackets: found ')' with no open '('"),
    ("( (2 a) (2 b))", 3, "expected an integer label 0-4 after '(', found '('"),
    ("(x (2 a) (2 b))", 2, "expected an integer label 0-4, found 'x'"),
    ("(3 (2 a) (2.5 b))", 11, "expected an integer label 0-4, found '2.5'"),
    ("(3 (2 a) (7 b))", 11, "expected an integer label 0-4, found '7'"),
    ("(3 (2 a) (2 ))", 13, "expected a word or two subtrees, found an empty leaf '()'"),
    ("(3 (2 a))", 1, "expected a binary node with 2 children, found 1"),
    ("(3 (2 a) (2 b) (2 c))", 1, "expected a binary node with 2 children, found 3"),
    ("(2 a b)", 6, "expected ')' after leaf word 'a', found another word 'b'"),
    ("(3 a (2 b))", 6, "expected ')' after leaf word 'a', found '('"),
    ("(3 (2 a) b)", 10, "expected '(' or ')' after a subtree, found word 'b'"),
    ("word", 1, "expected '(' to open a tree, found 'word'"),
    ("(2 a) (2 b)", 7, "expected the end of the line after the tree, found '('"),
    ("(", 2, "expected a label after '(', found the end of the line"),
    ("   ", 1, "expected a tree '(LABEL ...)', found an empty line"),
])
def test_malformed_tree_names_file_line_and_column(line, col, message):
    with pytest.raises(DataError) as info:
        parse_tree(line, "trees.txt", 7)
    assert str(info.value) == f"trees.txt:7:{col}: {message}"
    assert (info.value.path, info.value.line, info.value.column) == ("trees.txt", 7, col)


def test_read_trees_reports_the_failing_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("(3 (2 a) (4 b))\n\n(1 (0 c) (2 ))\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3:13: expected a word or two subtrees"):
        read_trees(path)
    assert [t.text for t in read_trees(path, on_bad_line="skip")] == ["a b"]


def test_read_trees_rejects_undecodable_bytes(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("(3 (2 caf\xe9) (3 ok))\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{path}:1: expected utf-8 text, found byte 0xe9"):
        read_trees(path)
    assert read_trees(path, encoding="latin-1")[0].tokens == ("caf\xe9", "ok")


def test_read_trees_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing.txt: no such file"):
        read_trees(tmp_path / "missing.txt")


def test_binary_mode_drops_neutral_roots_and_maps_phrases(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("(2 (3 a) (1 b))\n(4 (0 a) (2 b))\n(1 (4 c) (1 d))\n", encoding="utf-8")
    fine = read_trees(path)
    binary = read_trees(path, labels="binary")
    assert len(fine) == 3 and len(binary) == 2
    np.testing.assert_array_equal(binary[0].labels, [0, -1, 1])
    np.testing.assert_array_equal(binary[1].labels, [1, 0, 0])
    np.testing.assert_array_equal(binarize_labels(np.array([0, 1, 2, 3, 4, -1])),
                                  [0, 0, -1, 1, 1, -1])


@pytest.mark.parametrize("shape", ["balanced", "right", "left"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_tokens_to_tree_is_a_binary_tree_over_the_tokens(shape, n):
    tokens = [f"w{i}" for i in range(n)]
    tree = tokens_to_tree(tokens, shape)
    assert tree.n_nodes == 2 * n - 1
    assert [w for w in tree.words if w is not None] == tokens  # leaves in reading order
    inner = tree.leaf < 0
    assert np.all(tree.left[inner] >= 0) and np.all(tree.right[inner] >= 0)
    assert np.all(tree.labels == -1)
    expected_height = {"balanced": int(np.ceil(np.log2(n))), "right": n - 1, "left": n - 1}
    assert tree.height[-1] == expected_height[shape]


def test_tokens_to_tree_shapes():
    right = tokens_to_tree(["a", "b", "c"], "right")
    # (a (b c)): root's left child is leaf a, right child the node over (b c).
    assert right.words[right.left[-1]] == "a"
    assert right.leaf[right.right[-1]] == -1
    left = tokens_to_tree(["a", "b", "c"], "left")
    assert left.words[left.right[-1]] == "c"
    balanced = tokens_to_tree(["a", "b", "c"], "balanced")
    # ((a b) c): the left half takes the extra token.
    assert balanced.leaf[balanced.left[-1]] == -1


def test_long_input_needs_no_recursion():
    tree = tokens_to_tree([str(i) for i in range(5000)], "balanced")
    assert tree.height[-1] == 13


def test_empty_text_becomes_one_oov_leaf():
    tree = sentence_to_tree("   ")
    assert tree.tokens == ("",)
    assert TreeVocab(["a"]).ids(tree.tokens).tolist() == [OOV_ID]


def test_input_to_tree_uses_a_parse_when_there_is_one():
    parsed = input_to_tree("(3 (2 a) (3 (2 b) (2 c)))")
    np.testing.assert_array_equal(parsed.left, [-1, -1, -1, 1, 0])  # right-branching as given
    raw = input_to_tree("(sic) a b c")
    assert raw.tokens == ("(", "sic", ")", "a", "b", "c")
    assert raw.height[-1] == 3  # balanced over 6 tokens
    assert input_to_tree("a b c", shape="left").words[-2] == "c"


@pytest.mark.parametrize("text, tokens", [
    ("It isn't good.", ["It", "is", "n't", "good", "."]),
    ("the film's (mostly) fine, really!", ["the", "film", "'s", "(", "mostly", ")", "fine", ",",
                                           "really", "!"]),
    ('He said "wow"...', ["He", "said", "``", "wow", "''", "..."]),
    ("Mr. Smith vs. the U.S. -- again .", ["Mr.", "Smith", "vs.", "the", "U.S.", "--", "again",
                                          "."]),
    ("It 's a `` Conan '' .", ["It", "'s", "a", "``", "Conan", "''", "."]),
])
def test_tokenize_sentence(text, tokens):
    assert tokenize_sentence(text) == tokens


def test_vocab_ids_padding_oov_lowercase_and_min_count():
    trees = [tokens_to_tree(t) for t in (["The", "cat"], ["the", "dog"], ["The", "cat", "sat"])]
    vocab = TreeVocab.build(trees, lowercase=True, min_count=2)
    assert vocab.words_ == ["", "[UNK]", "the", "cat"]
    assert vocab.ids(["THE", "cat", "dog", "zebra"]).tolist() == [2, 3, 1, 1]
    cased = TreeVocab.build(trees, lowercase=False)
    assert cased.ids(["The", "the"]).tolist() == [2, 6]  # The 2, cat 2; then dog, sat, the
    again = TreeVocab.from_dict(vocab.to_dict())
    assert again.words_ == vocab.words_ and again.lowercase
    assert len(TreeVocab.build(trees, max_tokens=3)) == 3


def test_batch_is_left_padded_with_roots_in_the_last_column():
    small = parse_tree("(1 bad)")
    big = parse_tree("(3 (2 It) (4 (2 's) (3 good)))")
    vocab = TreeVocab.build([big])
    batch = trees_to_batch([small, big], vocab)
    assert batch["word_ids"].shape == (2, 5)
    np.testing.assert_array_equal(batch["word_ids"][0], [0, 0, 0, 0, OOV_ID])
    np.testing.assert_array_equal(batch["height"][0], [-1, -1, -1, -1, 0])
    np.testing.assert_array_equal(batch["labels"][:, -1], [1, 3])
    np.testing.assert_array_equal(batch["left"][1], [-1, -1, -1, 1, 0])
    np.testing.assert_array_equal(batch["word_ids"][1], vocab.ids(["It", "'s", "good"]).tolist()
                                  + [0, 0])
    wider = trees_to_batch([small], vocab, n_nodes=3)
    np.testing.assert_array_equal(wider["height"][0], [-1, -1, 0])


def test_tree_rejects_children_after_parents():
    with pytest.raises(ValueError, match="post-order"):
        Tree(("a", "b"), np.array([-1, 0, 1]), np.array([1, -1, -1]), np.array([2, -1, -1]),
             np.array([0, 0, 0]))


def test_sst_files(sst_trees_dir):
    counts = {split: len(read_trees(sst_trees_dir / f"{split}.txt"))
              for split in ("train", "dev", "test")}
    assert counts == {"train": 8544, "dev": 1101, "test": 2210}
    test = read_trees(sst_trees_dir / "test.txt", labels="binary")
    assert len(test) == 1821
    assert all(t.n_nodes == 2 * len(t.tokens) - 1 for t in test)
    # The raw-text tokeniser leaves SST's own tokenisation (almost always) alone.
    same = sum(tokenize_sentence(t.text) == list(t.tokens) for t in test)
    assert same / len(test) > 0.99
