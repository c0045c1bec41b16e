"""Streaming batched prediction and the writers for its output.

:func:`predict_stream` turns an iterator of ``(line, text, id)`` into an
iterator of records, calling the model on ``batch_size`` texts at a time; it
holds at most one batch, so memory stays flat however long the input is.
The model arrives as a plain callable ``predict_proba(list[str]) ->
ndarray (batch, n_labels)``, which keeps TensorFlow out of this module (the
CLI imports it only inside the command that loads a model).

Record layout (one per input, in input order)::

    {"line": 12, "id": "doc-7", "label": "sport", "probability": 0.93,
     "top_k": [["sport", 0.93], ["business", 0.05]]}

``id`` is present only when the input carried one. ``top_k`` is sorted by
probability, highest first; ties keep label order, so ``top_k[0]`` is always
``label`` (the argmax). Records hold full-precision floats; the writers round
to 6 decimals, because the float32 softmax output is not meaningful beyond
that and 17-digit reprs make output noisy and harder to diff.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from typing import IO, Callable, Iterable, Iterator

import numpy as np

from .errors import TextclfError

PROBABILITY_DECIMALS = 6

TextItem = tuple[int, str, object]  # (line number, text, id or None)


class Progress:
    """A one-line counter on stderr, redrawn at most every ``interval`` seconds.

    Silent unless the stream is a terminal (or ``enabled=True``), so logs and
    pipes never get carriage returns. Never writes to stdout, where the
    predictions may be going.
    """

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.5,
                 enabled: bool | None = None, what: str = "texts predicted"):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):   # no isatty, or a closed stream
                enabled = False
        self.enabled = enabled
        self.interval = interval
        self.what = what
        self._last = float("-inf")
        self._count = 0
        self._drawn = False

    def update(self, count: int) -> None:
        """Record that ``count`` items are done in all; redraw if ``interval`` has passed."""
        self._count = count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw()

    def close(self) -> None:
        """Draw the final count and end the line (only if anything was drawn)."""
        if self.enabled and self._drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        self.stream.write(f"\r{self._count:,} {self.what}")
        self.stream.flush()
        self._drawn = True


def predict_stream(texts: Iterable[TextItem], predict_proba: Callable[[list[str]], np.ndarray],
                   labels: list[str], batch_size: int, top_k: int,
                   progress: Progress | None = None) -> Iterator[dict]:
    """Yield one record per input text, in input order, predicting in batches.

    Args:
        texts: ``(line, text, id)`` triples; ``id`` is ``None`` when the input
            has none. Consumed lazily, ``batch_size`` at a time. Empty texts are
            passed to the model like any other and get a record.
        predict_proba: maps a list of ``b`` texts (``1 <= b <= batch_size``) to
            probabilities of shape ``(b, len(labels))``.
        labels: label names; column ``k`` of the probabilities is ``labels[k]``.
        batch_size: most texts per ``predict_proba`` call, >= 1.
        top_k: entries in each record's ``top_k`` list, >= 1; capped at
            ``len(labels)``.
        progress: told the running count after each batch.

    Yields:
        ``{"line", ["id",] "label", "probability", "top_k"}`` records; see the
        module docstring.

    Raises:
        ValueError: ``batch_size`` or ``top_k`` below 1 (the CLI validates its
            options first, so this is a caller bug).
        TextclfError: the model returned the wrong shape or a non-finite value.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
    if top_k < 1:
        raise ValueError(f"top_k must be a positive integer; got {top_k}")
    labels = list(labels)
    k = min(top_k, len(labels))
    items = iter(texts)
    done = 0
    try:
        while True:
            batch = list(itertools.islice(items, batch_size))
            if not batch:
                break
            yield from _predict_batch(batch, predict_proba, labels, k)
            done += len(batch)
            if progress is not None:
                progress.update(done)
    finally:
        # Also on an interrupt or an early stop, so what follows starts on a fresh line.
        if progress is not None:
            progress.close()


def _predict_batch(batch: list[TextItem], predict_proba: Callable[[list[str]], np.ndarray],
                   labels: list[str], k: int) -> Iterator[dict]:
    """Records for one batch of (line, text, id); see :func:`predict_stream`."""
    probs = np.asarray(predict_proba([text for _, text, _ in batch]), dtype=np.float64)
    if probs.shape != (len(batch), len(labels)):
        raise TextclfError(
            f"model returned probabilities of shape {probs.shape} for {len(batch)} texts; "
            f"expected ({len(batch)}, {len(labels)}) for {len(labels)} labels")
    finite = np.isfinite(probs).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise TextclfError(f"model returned a non-finite probability for input line {batch[row][0]}")
    # Stable sort of -p: ties keep label order, so column 0 equals argmax.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top_p = np.take_along_axis(probs, order, axis=1)
    for (line, _, ident), idx, ps in zip(batch, order.tolist(), top_p.tolist()):
        record: dict = {"line": line}
        if ident is not None:
            record["id"] = ident
        record["label"] = labels[idx[0]]
        record["probability"] = ps[0]
        record["top_k"] = [[labels[i], p] for i, p in zip(idx, ps)]
        yield record


def _round(p: float) -> float:
    return round(float(p), PROBABILITY_DECIMALS)


class JsonlWriter:
    """One JSON object per line, UTF-8 as is (``ensure_ascii=False``), readable by ``jq``.

    Probabilities are rounded to 6 decimals. Ids that are not JSON types are
    written as ``str(id)``. U+2028/U+2029 are escaped so tools that split on
    every Unicode line break still see one record per line.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.count = 0

    def write(self, record: dict) -> None:
        out = dict(record)
        out["probability"] = _round(record["probability"])
        out["top_k"] = [[label, _round(p)] for label, p in record["top_k"]]
        text = json.dumps(out, ensure_ascii=False, allow_nan=False, default=str)
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        self.stream.write(text + "\n")
        self.count += 1

    def write_all(self, records: Iterable[dict]) -> int:
        """Write every record; return how many this writer has written in all."""
        for record in records:
            self.write(record)
        return self.count


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


_ESCAPED_COMMA = "\\,"


def tsv_escape(text: str) -> str:
    r"""Backslash-escape ``\``, tab, newline and carriage return so a field stays one cell."""
    return text.translate(_TSV_ESCAPES)


class TsvWriter:
    r"""Tab-separated rows under a header, one per record.

    Header: ``line<TAB>label<TAB>probability<TAB>top_k``, with an ``id`` column
    after ``line`` when ``include_id`` is true, and an ``input`` column first
    (the input file of the record) when ``include_input`` is. ``top_k`` is written as
    ``label:p,label:p``; probabilities have exactly 6 decimals. In ids and
    labels ``\``, tab, newline and CR are written ``\\``, ``\t``, ``\n``,
    ``\r``; inside ``top_k`` a comma in a label is also written ``\,`` so the
    list splits unambiguously (split on unescaped commas, then on the last
    colon). The header is written when the writer is made, so empty input still
    gives a valid file.
    """

    def __init__(self, stream: IO[str], include_id: bool = False, include_input: bool = False):
        self.stream = stream
        self.include_id = include_id
        self.include_input = include_input  # several input files: a first column names each
        self.count = 0
        columns = ["line", "id", "label", "probability", "top_k"] if include_id else \
            ["line", "label", "probability", "top_k"]
        if include_input:
            columns.insert(0, "input")
        self.stream.write("\t".join(columns) + "\n")

    def write(self, record: dict) -> None:
        fields = [str(record["line"])]
        if self.include_input:
            fields.insert(0, tsv_escape(str(record["input"])))
        if self.include_id:
            ident = record.get("id")
            fields.append("" if ident is None else tsv_escape(str(ident)))
        elif "id" in record:
            raise ValueError("record has an id but the TsvWriter was made with include_id=False")
        fields.append(tsv_escape(record["label"]))
        fields.append(f"{_round(record['probability']):.{PROBABILITY_DECIMALS}f}")
        fields.append(",".join(
            f"{tsv_escape(label).replace(',', _ESCAPED_COMMA)}:{_round(p):.{PROBABILITY_DECIMALS}f}"
            for label, p in record["top_k"]))
        self.stream.write("\t".join(fields) + "\n")
        self.count += 1

    def write_all(self, records: Iterable[dict]) -> int:
        """Write every record; return how many this writer has written in all."""
        for record in records:
            self.write(record)
        return self.count


FORMATS = ("jsonl", "tsv")


def make_writer(fmt: str, stream: IO[str], include_id: bool = False,
                include_input: bool = False) -> JsonlWriter | TsvWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`) on ``stream``."""
    if fmt == "jsonl":
        return JsonlWriter(stream)
    if fmt == "tsv":
        return TsvWriter(stream, include_id=include_id, include_input=include_input)
    raise ValueError(f"output format must be one of {', '.join(FORMATS)}; got {fmt!r}")
