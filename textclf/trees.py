"""Binarised sentiment trees: PTB bracket reader, post-order arrays, vocabulary, batches.

A line of the Stanford Sentiment Treebank holds one tree, a 0-4 label on every
node, brackets inside words written ``-LRB-``/``-RRB-``::

    (3 (2 It) (4 (2 's) (3 good)))

A :class:`Tree` keeps it as post-order arrays, children before parents, root
last (node ``i``'s children have indices below ``i``)::

    node   0     1     2     3     4
    leaf   0     1     2     -1    -1      index into tokens, -1 = no word
    left   -1    -1    -1    1     0       post-order index, -1 = none
    right  -1    -1    -1    2     3
    label  2     2     3     4     3       -1 = no label (loss and accuracy skip it)
    height 0     0     0     1     2       0 for leaves, 1 + max(children) above

The arrays may describe more than SST's binary constituency trees: a node may
carry a word *and* children, or a single child. The degenerate "chain" used to
tie the Tree-LSTM to ``keras.layers.LSTM`` (node ``t`` reads word ``t`` and has
node ``t-1`` as its left child) is such a tree. The reader only ever makes SST
trees: every node is a leaf with a word or has exactly two children.

Batches (:func:`trees_to_batch`) pad the trees on the *left* so that every root
sits in the last column ``N - 1``: root accuracy is then a column read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError
from .readers import decoded_lines

FINE_LABELS = ("0", "1", "2", "3", "4")  # very negative .. very positive
BINARY_LABELS = ("0", "1")  # negative (0-1), positive (3-4); as in SST-2's stsa.binary files
PADDING_ID = 0
OOV_ID = 1
PADDING_TOKEN = ""
OOV_TOKEN = "[UNK]"

# PTB escapes found in SST leaves; the reverse map is applied to every leaf.
_PTB_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]",
                 "-LCB-": "{", "-RCB-": "}"}
# Words split on ASCII whitespace only: SST has "8\xa01\/2" (a no-break space) as one word.
_TOKEN = re.compile(r"\(|\)|[^ \t\r\n\f\v()]+")


def class_names(labels: str) -> tuple[str, ...]:
    """Class names for ``data.tree_labels`` ``fine`` (5) or ``binary`` (2)."""
    return FINE_LABELS if labels == "fine" else BINARY_LABELS


def unescape_token(token: str) -> str:
    """``-LRB-`` -> ``(``, ``\\/`` -> ``/``, ``\\*`` -> ``*``; other tokens unchanged."""
    token = _PTB_UNESCAPE.get(token, token)
    if "\\" in token:
        token = token.replace("\\/", "/").replace("\\*", "*")
    return token


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree as post-order arrays of ``n`` nodes (see the module docstring).

    ``tokens`` are the leaves' words left to right, unescaped (``(`` not
    ``-LRB-``); ``leaf[i]`` indexes them (-1: node ``i`` has no word).
    ``left``/``right``/``labels``/``height`` are int32 arrays of shape (n,).
    """

    tokens: tuple[str, ...]
    leaf: np.ndarray
    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray
    height: np.ndarray = field(default=None)  # computed from the children when None

    def __post_init__(self):
        n = len(self.leaf)
        for name in ("leaf", "left", "right", "labels"):
            array = np.asarray(getattr(self, name), dtype=np.int32)
            if array.shape != (n,):
                raise ValueError(f"Tree.{name} must have shape ({n},); got {array.shape}")
            object.__setattr__(self, name, array)
        if n == 0:
            raise ValueError("a Tree needs at least one node")
        index = np.arange(n)
        for name in ("left", "right"):
            child = getattr(self, name)
            if np.any(child >= index) or np.any(child < -1):
                raise ValueError(f"Tree.{name}: children must come before their parent "
                                 "(post-order) or be -1")
        if np.any(self.leaf >= len(self.tokens)) or np.any(self.leaf < -1):
            raise ValueError("Tree.leaf must index tokens or be -1")
        if self.height is None:
            object.__setattr__(self, "height", _heights(self.left, self.right))
        else:
            object.__setattr__(self, "height", np.asarray(self.height, dtype=np.int32))

    @property
    def n_nodes(self) -> int:
        return len(self.leaf)

    @property
    def root_label(self) -> int:
        return int(self.labels[-1])

    @property
    def words(self) -> list[str | None]:
        """The word of every node in post-order, None where a node has none."""
        return [self.tokens[k] if k >= 0 else None for k in self.leaf]

    @property
    def text(self) -> str:
        """The sentence: leaves joined by single spaces, brackets as brackets."""
        return " ".join(self.tokens)

    def with_labels(self, labels: np.ndarray) -> Tree:
        return Tree(self.tokens, self.leaf, self.left, self.right, labels, self.height)


def _heights(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Height of each node, post-order: 0 without children, else 1 + max(children)."""
    height = np.zeros(len(left), dtype=np.int32)
    for i in range(len(left)):
        l, r = left[i], right[i]
        if l >= 0 or r >= 0:
            height[i] = 1 + max(height[l] if l >= 0 else 0, height[r] if r >= 0 else 0)
    return height


# ------------------------------------------------------------------ reading


def parse_tree(line: str, path: object = "<string>", lineno: int = 1) -> Tree:
    """One PTB bracketed binary tree with a 0-4 label on every node -> :class:`Tree`.

    Raises :class:`DataError` ``path:line:col: what was expected, found what`` for
    unbalanced brackets, a missing or non-integer label, a label outside 0-4,
    an empty leaf, a node with one or more than two children, or text after
    the tree. Columns count from 1.
    """
    def fail(col: int, message: str):
        err = DataError(f"{path}:{lineno}:{col}: {message}")
        err.path, err.line, err.column = path, lineno, col
        raise err

    tokens = [(m.group(), m.start() + 1) for m in _TOKEN.finditer(line)]
    if not tokens:
        fail(1, "expected a tree '(LABEL ...)', found an empty line")
    words: list[str] = []
    leaf: list[int] = []
    left: list[int] = []
    right: list[int] = []
    labels: list[int] = []
    # Each open bracket: [label, column of '(', child node indices, word or None].
    stack: list[list] = []
    pos = 0
    done = False
    while pos < len(tokens):
        token, col = tokens[pos]
        if done:
            if token == ")":
                fail(col, "unbalanced brackets: found ')' with no open '('")
            fail(col, f"expected the end of the line after the tree, found {token!r}")
        if token == "(":
            if stack and stack[-1][3] is not None:
                fail(col, f"expected ')' after leaf word {stack[-1][3]!r}, found '('")
            if pos + 1 >= len(tokens):
                fail(col + 1, "expected a label after '(', found the end of the line")
            label_text, label_col = tokens[pos + 1]
            if label_text in "()":
                fail(label_col, f"expected an integer label 0-4 after '(', found {label_text!r}")
            if not re.fullmatch(r"[0-4]", label_text):
                fail(label_col, f"expected an integer label 0-4, found {label_text!r}")
            stack.append([int(label_text), col, [], None])
            pos += 2
            continue
        if token == ")":
            if not stack:
                fail(col, "unbalanced brackets: found ')' with no open '('")
            label, open_col, children, word = stack.pop()
            if word is not None:
                words.append(unescape_token(word))
                leaf.append(len(words) - 1)
                left.append(-1)
                right.append(-1)
            elif not children:
                fail(col, "expected a word or two subtrees, found an empty leaf '()'")
            elif len(children) != 2:
                fail(open_col, f"expected a binary node with 2 children, found {len(children)}")
            else:
                leaf.append(-1)
                left.append(children[0])
                right.append(children[1])
            labels.append(label)
            node = len(labels) - 1
            if stack:
                stack[-1][2].append(node)
            else:
                done = True
            pos += 1
            continue
        # A word.
        if not stack:
            fail(col, f"expected '(' to open a tree, found {token!r}")
        top = stack[-1]
        if top[2]:
            fail(col, f"expected '(' or ')' after a subtree, found word {token!r}")
        if top[3] is not None:
            fail(col, f"expected ')' after leaf word {top[3]!r}, found another word {token!r}")
        top[3] = token
        pos += 1
    if stack:
        fail(len(line.rstrip("\r\n")) + 1,
             f"unbalanced brackets: {len(stack)} '(' not closed "
             f"(the innermost opened at column {stack[-1][1]})")
    return Tree(tuple(words), np.array(leaf), np.array(left), np.array(right), np.array(labels))


def binarize_labels(labels: np.ndarray) -> np.ndarray:
    """0-1 -> 0 (negative), 3-4 -> 1 (positive), 2 (neutral) and -1 -> -1 (no label)."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, -1, dtype=np.int32)
    out[(labels == 0) | (labels == 1)] = 0
    out[(labels == 3) | (labels == 4)] = 1
    return out


def read_trees(paths: str | Path | Sequence[str | Path], encoding: str = "utf-8",
               labels: str = "fine", on_bad_line: str = "error") -> list[Tree]:
    """Trees of one or more SST-style files, one tree a line; blank lines are skipped.

    ``labels="fine"`` keeps the 5 classes. ``labels="binary"`` is the SST-2
    protocol: trees with a neutral (2) root are dropped, every node's label maps
    0-1 -> 0 and 3-4 -> 1, and neutral phrase labels become -1 (ignored by the
    loss and by all-node accuracy). ``on_bad_line="skip"`` drops malformed lines
    instead of raising :class:`DataError`.
    """
    if labels not in ("fine", "binary"):
        raise ValueError(f"labels must be 'fine' or 'binary'; got {labels!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    trees: list[Tree] = []
    for path in paths:
        # The shared line reader brings gzip, BOM, NUL-byte and encoding errors
        # with file:line, as for every other format.
        for lineno, line in decoded_lines(path, encoding):
            if not line.strip():
                continue
            try:
                tree = parse_tree(line, path, lineno)
            except DataError:
                if on_bad_line == "skip":
                    continue
                raise
            if labels == "binary":
                if tree.root_label == 2:
                    continue
                tree = tree.with_labels(binarize_labels(tree.labels))
            trees.append(tree)
    return trees


# ------------------------------------------------------------------ raw sentences

# Text without a parse gets a balanced binary tree over its tokens. Chosen on dev root
# accuracy of the Tree-LSTM recipes (scripts/treenet_sst.py), gold trees vs raw text:
#   SST-2 dev: gold 83.0; balanced 82.2, left-branching 80.3, right-branching 77.1
#         test: gold 83.3; balanced 82.1, left 78.7, right 78.1
#   SST-5 dev: gold 47.7; balanced 44.8, right 43.1, left 36.8 (test: 45.9; 44.8)
# (The plain rnn cell prefers right-branching: SST-2 dev 81.4 vs balanced 78.7.)
RAW_TREE_SHAPE = "balanced"

# A light Penn-Treebank-like tokeniser, so that raw text meets SST's vocabulary:
# "isn't" -> "is n't", "film's" -> "film 's", "(good)" -> "( good )", "end." ->
# "end .". Tokens that are already split (SST's own text) come out unchanged.
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_EDGE_PUNCT = "()[]{},;:!?\"`"


def tokenize_sentence(text: str) -> list[str]:
    """Split raw text into SST-style tokens (whitespace, edge punctuation, clitics).

    ``...`` and ``--`` stay whole; a final period splits off a word unless the
    word is a known abbreviation shape (``Mr.``, ``U.S.``). Double quotes become
    PTB's ````` / ``''``.
    """
    out: list[str] = []
    quote_open = False
    for word in text.split():
        head: list[str] = []
        tail: list[str] = []
        while len(word) > 1 and (word[0] in _EDGE_PUNCT or word.startswith("``")):
            step = 2 if word.startswith("``") else 1
            head.append(word[:step])
            word = word[step:]
        while len(word) > 1 and (word[-1] in _EDGE_PUNCT or word.endswith("''")
                                 or _splits_final_period(word)):
            if word.endswith("''"):
                tail.insert(0, "''")
                word = word[:-2]
            elif word.endswith("...") and word != "...":
                tail.insert(0, "...")
                word = word[:-3]
            else:
                tail.insert(0, word[-1])
                word = word[:-1]
        match = _CLITIC.match(word) if word not in ("n't", "'s") else None
        pieces = [match.group(1), match.group(2)] if match else [word]
        head = ["``" if p == '"' else p for p in head]  # "word -> `` word
        tail = ["''" if p == '"' else p for p in tail]  # word" -> word ''
        if pieces == ['"']:  # a lone quote: open, then close, alternately
            pieces = ["''" if quote_open else "``"]
        for piece in head + pieces + tail:
            if piece in ("``", "''"):
                quote_open = piece == "``"
            if piece:
                out.append(piece)
    return out


def _splits_final_period(word: str) -> bool:
    if not word.endswith(".") or word in (".", "..."):
        return False
    if word.endswith("..."):
        return True
    stem = word[:-1]
    # Mr. / Dr. / U.S. / vs. keep their period in SST.
    return not (re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]?", stem + ".") or
                re.fullmatch(r"(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Inc|Co|Ltd)", stem))


def tokens_to_tree(tokens: Sequence[str], shape: str = "balanced") -> Tree:
    """A binary tree over ``tokens`` with no labels (all -1), for text without a parse.

    ``balanced``: split at the middle, recursively (the left half gets the extra
    token), height ``ceil(log2 n)``. ``right``: right-branching
    ``(w1 (w2 (w3 w4)))``, the typical shape of English constituency trees.
    ``left``: left-branching ``(((w1 w2) w3) w4)``, a recurrent net read left to
    right. An empty token list becomes one leaf with the empty word (OOV).
    """
    if shape not in ("balanced", "right", "left"):
        raise ValueError(f"shape must be balanced, right or left; got {shape!r}")
    tokens = tuple(tokens) or ("",)
    leaf: list[int] = []
    left: list[int] = []
    right: list[int] = []

    def add(word: int, l: int, r: int) -> int:
        leaf.append(word)
        left.append(l)
        right.append(r)
        return len(leaf) - 1

    # Iterative post-order build, so very long inputs do not hit the recursion limit.
    if shape == "left":
        node = add(0, -1, -1)
        for k in range(1, len(tokens)):
            node = add(-1, node, add(k, -1, -1))
    elif shape == "right":
        # Post-order of (w0 (w1 (w2 w3))): all leaves, then the parents inside out.
        leaves = [add(k, -1, -1) for k in range(len(tokens))]
        node = leaves[-1]
        for k in range(len(tokens) - 2, -1, -1):
            node = add(-1, leaves[k], node)
    else:
        # Stack of (start, stop, done-children); children pushed before parent emits.
        results: list[int] = []
        work: list[tuple[int, int, bool]] = [(0, len(tokens), False)]
        while work:
            start, stop, expanded = work.pop()
            if stop - start == 1:
                results.append(add(start, -1, -1))
            elif expanded:
                r = results.pop()
                l = results.pop()
                results.append(add(-1, l, r))
            else:
                mid = start + (stop - start + 1) // 2
                work.append((start, stop, True))
                work.append((mid, stop, False))
                work.append((start, mid, False))
        node = results[0]
    n = len(leaf)
    return Tree(tokens, np.array(leaf), np.array(left), np.array(right),
                np.full(n, -1, dtype=np.int32))


def sentence_to_tree(text: str, shape: str = RAW_TREE_SHAPE) -> Tree:
    """Raw text -> :func:`tokenize_sentence` -> :func:`tokens_to_tree`."""
    return tokens_to_tree(tokenize_sentence(text), shape)


def input_to_tree(line: str, shape: str = RAW_TREE_SHAPE) -> Tree:
    """A prediction input: a PTB tree when the line parses as one, else raw text.

    A line that starts with ``(`` and parses is used with its own structure
    (its labels are ignored by prediction); anything else, ``(sic) a film``
    included, is tokenised and given a ``shape`` tree (:func:`sentence_to_tree`).
    """
    if line.lstrip().startswith("("):
        try:
            return parse_tree(line)
        except DataError:
            pass
    return sentence_to_tree(line, shape)


# ------------------------------------------------------------------ vocabulary


class TreeVocab:
    """Word -> id for tree leaves: 0 = padding (also "no word"), 1 = OOV, then words.

    Built from the training trees' leaves only (:meth:`build`); ``lowercase``
    follows ``text.lowercase``. Punctuation is kept whatever
    ``text.strip_punctuation`` says: in a tree a comma is a leaf with a label.
    Saved as JSON with :meth:`to_dict` / :meth:`from_dict`.
    """

    def __init__(self, words: Sequence[str], lowercase: bool = True):
        self.words_ = [PADDING_TOKEN, OOV_TOKEN, *words]
        self.lowercase = bool(lowercase)
        self.index_ = {w: i for i, w in enumerate(self.words_) if i >= 2}

    @classmethod
    def build(cls, trees: Iterable[Tree], lowercase: bool = True, min_count: int = 1,
              max_tokens: int | None = None) -> TreeVocab:
        """Words seen ``min_count`` times, most frequent first (ties alphabetical),
        ``max_tokens`` in all counting padding and OOV."""
        counts: Counter[str] = Counter()
        for tree in trees:
            counts.update(t.lower() if lowercase else t for t in tree.tokens)
        counts.pop("", None)
        kept = sorted((w for w, c in counts.items() if c >= min_count),
                      key=lambda w: (-counts[w], w))
        if max_tokens is not None:
            kept = kept[: max(0, max_tokens - 2)]
        return cls(kept, lowercase)

    def __len__(self) -> int:
        return len(self.words_)

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of ``tokens`` (unknown words -> 1)."""
        if self.lowercase:
            tokens = (t.lower() for t in tokens)
        return np.fromiter((self.index_.get(t, OOV_ID) for t in tokens), dtype=np.int32)

    def to_dict(self) -> dict:
        return {"words": self.words_[2:], "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict) -> TreeVocab:
        return cls(data["words"], data["lowercase"])


# ------------------------------------------------------------------ batches


def trees_to_batch(trees: Sequence[Tree], vocab: TreeVocab,
                   n_nodes: int | None = None) -> dict[str, np.ndarray]:
    """Pad ``B`` trees to ``N`` nodes on the left, every root in column ``N - 1``.

    Returns int32 arrays of shape (B, N):

    - ``word_ids``: vocabulary id of the node's word, 0 for no word and padding;
    - ``left``, ``right``: column of the child in the same row, -1 for none;
    - ``height``: node height, -1 for padding (the level loop never reaches it);
    - ``labels``: node label, -1 for no label and padding.

    ``N`` is the largest tree's node count (at least ``n_nodes`` when given).
    """
    if not trees:
        raise ValueError("trees_to_batch needs at least one tree")
    width = max(max(t.n_nodes for t in trees), n_nodes or 0)
    shape = (len(trees), width)
    word_ids = np.zeros(shape, dtype=np.int32)
    left = np.full(shape, -1, dtype=np.int32)
    right = np.full(shape, -1, dtype=np.int32)
    height = np.full(shape, -1, dtype=np.int32)
    labels = np.full(shape, -1, dtype=np.int32)
    for row, tree in enumerate(trees):
        shift = width - tree.n_nodes
        cols = slice(shift, width)
        has_word = tree.leaf >= 0
        ids = np.zeros(tree.n_nodes, dtype=np.int32)
        ids[has_word] = vocab.ids(tree.tokens[k] for k in tree.leaf[has_word])
        word_ids[row, cols] = ids
        left[row, cols] = np.where(tree.left >= 0, tree.left + shift, -1)
        right[row, cols] = np.where(tree.right >= 0, tree.right + shift, -1)
        height[row, cols] = tree.height
        labels[row, cols] = tree.labels
    return {"word_ids": word_ids, "left": left, "right": right, "height": height,
            "labels": labels}


MODEL_INPUTS = ("word_ids", "left", "right", "height")  # what the models take; labels are targets
