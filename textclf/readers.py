"""Record readers: one data file -> records of named fields, with file:line.

This module knows bytes, encodings and file formats; :mod:`textclf.data` turns
records into labelled examples, splits and label maps.

Rules every reader follows (tested in tests/test_data.py):

* gzip is recognised by its magic bytes (``1f 8b``), so ``train.tsv.gz`` and a
  gzipped stream on stdin are both read transparently.
* Files are read as byte lines split on ``\\n`` and decoded one line at a time,
  so a decoding error names the exact line. That needs an ASCII-compatible
  encoding (utf-8, latin-1, cp1252, gbk, ...); UTF-16/32 are refused with a
  hint to convert. Undecodable bytes and NUL bytes are always errors, whatever
  ``on_bad_line`` says: they mean a wrong ``data.encoding`` or a binary file,
  not one malformed record.
* A ``\\r\\n`` line ending counts as ``\\n``; a lone ``\\r`` inside a line is
  kept as part of the text.
* A leading U+FEFF (byte-order mark) is removed from the file and from every
  field: some CSV exports (20 reviews of the zh shopping corpus) carry one at
  the start of a field, and a label ``"\\ufeff1"`` must not become a class.
* Blank lines (only whitespace) are not records in tsv, csv, jsonl and
  fasttext files. In ``lines`` they are yielded, and the caller decides
  (training skips them, prediction treats them as empty documents).
* TSV is split on tab with no quoting. When the text column is the last
  column of the layout (the header's last column, or without a header the
  highest column index in use), it keeps any further tabs: ``pos<TAB>a<TAB>b``
  has the text ``a<TAB>b``. Otherwise columns beyond those used are ignored.
* CSV uses the stdlib ``csv`` module (quoted multi-line fields, strict
  quoting) with the field size limit raised so a 10 MB field reads.

A record is ``(line, fields)`` where ``fields`` maps a role (``"text"``,
``"label"``, ``"id"``) to its value, or ``(line, reason)`` with a string
``reason`` when the record is malformed; the caller raises or skips.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import json
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, DataError

GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"
# A C long on every platform: csv.field_size_limit(sys.maxsize) overflows on Windows.
CSV_FIELD_LIMIT = 2**31 - 1
# Extensions that say nothing about the class in a ``lines`` file name.
GENERIC_SUFFIXES = (".gz", ".txt", ".text")
AUTO_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
                ".ndjson": "jsonl"}

Record = tuple[int, "dict[str, Any] | str"]


# --------------------------------------------------------------------------
# Bytes -> decoded lines.
# --------------------------------------------------------------------------


def check_encoding(encoding: str) -> str:
    """Normalise ``encoding`` to a codec name; ConfigError if unusable here."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError("data.encoding", "a text encoding Python knows (e.g. utf-8, latin-1)",
                          encoding) from None
    if name == "utf-8-sig":  # the BOM is stripped anyway
        return "utf-8"
    probe = "\t\n\r ,\"'azAZ09"
    try:
        compatible = probe.encode(name) == probe.encode("ascii")
    except UnicodeError:
        compatible = False
    if not compatible:
        raise ConfigError("data.encoding", "an ASCII-compatible encoding (utf-8, latin-1, cp1252, "
                          "gbk...); convert UTF-16/32 files to UTF-8 first", encoding)
    return name


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


@contextlib.contextmanager
def open_bytes(path: str | Path):
    """Binary stream of ``path`` (``-`` = stdin), gunzipped if it starts like gzip."""
    name = display_name(path)
    if str(path) == "-":
        stream, owned = sys.stdin.buffer, False
    else:
        try:
            stream, owned = open(path, "rb"), True
        except FileNotFoundError:
            raise DataError("no such file", name) from None
        except IsADirectoryError:
            raise DataError("expected a file, found a directory (set data.format: folder "
                            "or lines)", name) from None
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", name) from None
    try:
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        yield gzip.GzipFile(fileobj=stream, mode="rb") if head == GZIP_MAGIC else stream
    finally:
        if owned:
            stream.close()


def decoded_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` lazily, 1-based, line endings kept.

    Raises DataError naming file:line for undecodable bytes, NUL bytes and
    corrupt gzip data.
    """
    encoding = check_encoding(encoding)
    name = display_name(path)
    with open_bytes(path) as stream:
        number = 0
        try:
            for raw in stream:
                number += 1
                if b"\x00" in raw:
                    raise DataError(f"expected text, found a NUL byte at byte {raw.index(0) + 1} "
                                    "(a binary or UTF-16 file?)", name, number)
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"expected {encoding} text, found byte 0x{raw[exc.start]:02x} at byte "
                        f"{exc.start + 1} (set data.encoding, e.g. latin-1)", name,
                        number) from None
                if number == 1 and line.startswith(BOM):
                    line = line[1:]
                yield number, line
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(f"corrupt or truncated gzip data after line {number} ({exc})",
                            name) from None


def chomp(line: str) -> str:
    """Drop one trailing ``\\n`` or ``\\r\\n``."""
    if line.endswith("\n"):
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
    return line


def clean(field: str) -> str:
    return field[1:] if field.startswith(BOM) else field


# --------------------------------------------------------------------------
# Formats.
# --------------------------------------------------------------------------


def guess_format(path: str | Path) -> str:
    """``auto``: the format from the extension (looking through ``.gz``)."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = AUTO_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError("cannot tell the format from the file name; set data.format to one of "
                        "tsv, csv, jsonl, fasttext, lines, folder, ptb_trees", display_name(path))
    return fmt


def label_from_filename(path: str | Path) -> str:
    """Class of a ``lines`` file: the name without ``.gz``/``.txt``/``.text``,
    then the part after the last remaining dot, if any.

    ``rt-polarity.pos`` -> ``pos``; ``neg.txt.gz`` -> ``neg``; ``sport`` -> ``sport``.
    """
    name = Path(path).name
    changed = True
    while changed:
        changed = False
        for suffix in GENERIC_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[:-len(suffix)], True
    return name.rsplit(".", 1)[-1] if "." in name.strip(".") else name


def iter_records(path: str | Path, fmt: str, columns: dict[str, Any],
                 encoding: str = "utf-8") -> Iterator[Record]:
    """Records of one file. ``columns`` maps each role to a name, an index or None.

    ``fmt`` is one of ``lines`` (role ``text`` is the whole line), ``fasttext``
    (roles ``label`` and ``text``), ``tsv``, ``csv``, ``jsonl``. Defaults for
    None: tsv/csv ``label`` 0, ``text`` 1, no header; but when any column is a
    name the file has a header row and the defaults are the names ``label``
    and ``text``; jsonl keys ``label`` and ``text``. Role ``id`` is only read
    when given.
    """
    lines = decoded_lines(path, encoding)
    name = display_name(path)
    if fmt == "lines":
        return ((n, {"text": chomp(line)}) for n, line in lines)
    if fmt == "fasttext":
        return _fasttext(lines)
    if fmt == "jsonl":
        return _jsonl(lines, name, _json_keys(columns))
    if fmt == "tsv":
        return _delimited(_tsv_rows(lines), name, columns, "<TAB>")
    if fmt == "csv":
        return _delimited(_csv_rows(lines, name), name, columns, ",")
    raise ValueError(f"no record reader for format {fmt!r}")


def _fasttext(lines) -> Iterator[Record]:
    for n, line in lines:
        parts = chomp(line).strip(" \t\r\f\v").split(None, 1)
        if not parts:
            continue
        label = clean(parts[0])
        text = parts[1] if len(parts) > 1 else ""
        if label.startswith("__label__"):
            label = label[len("__label__"):]
        if text.startswith("__label__"):
            yield n, "expected one label, found several (multi-label lines are not supported)"
            continue
        yield n, {"label": label, "text": text}


def _json_keys(columns: dict[str, Any]) -> dict[str, Any]:
    keys = {}
    for role, spec in columns.items():
        if spec is None and role in ("label", "text"):
            spec = role
        if spec is not None:
            keys[role] = spec
    return keys


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


def _jsonl(lines, name: str, keys: dict[str, Any]) -> Iterator[Record]:
    for n, line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == 1 and line.startswith("["):
                raise DataError("expected JSON Lines (one object per line), found a JSON array; "
                                "convert with: jq -c '.[]'", name, n) from None
            yield n, f"expected a JSON object, found invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        except (ValueError, RecursionError) as exc:
            # json.loads also fails on integers over 4300 digits (ValueError) and
            # on arrays/objects nested ~1000 deep (RecursionError).
            what = "nested too deeply" if isinstance(exc, RecursionError) else "an integer too long"
            yield n, f"expected a JSON object, found JSON that cannot be read ({what})"
            continue
        fields, problem = {}, None
        for role, key in keys.items():
            if isinstance(record, dict) and isinstance(key, str) and key in record:
                value = record[key]
            elif isinstance(record, list) and isinstance(key, int) and key < len(record):
                value = record[key]
            else:
                if isinstance(record, dict):
                    found = "keys " + ", ".join(map(repr, list(record)[:8]))
                elif isinstance(record, list):
                    found = f"{len(record)} items"
                else:
                    found = f"a JSON {_json_kind(record)}"
                what = f"key {key!r}" if isinstance(key, str) else f"item {key}"
                problem = f"expected {what} for the {role}, found {found}"
                break
            if role == "text" and not isinstance(value, str):
                problem = f"expected a string in {key!r}, found a JSON {_json_kind(value)}"
                break
            if role == "label":
                if isinstance(value, int) and not isinstance(value, bool):
                    value = str(value)
                elif not isinstance(value, str):
                    problem = (f"expected a string or integer label in {key!r}, "
                               f"found a JSON {_json_kind(value)}")
                    break
            fields[role] = clean(value) if isinstance(value, str) else value
        yield n, problem if problem else fields


def _tsv_rows(lines) -> Iterator[tuple[int, str, None]]:
    """Unsplit rows; the caller splits, knowing which column may keep tabs."""
    for n, line in lines:
        line = chomp(line)
        if line.strip():
            yield n, line, None


def _csv_rows(lines, name: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """``(first line of the record, fields, None)`` or ``(line, None, reason)``."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    counter = {"line": 0}

    def feed():
        for n, line in lines:
            counter["line"] = n
            yield line

    reader = csv.reader(feed(), strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                # Not skippable: the open quote swallowed the rest of the file.
                raise DataError("unclosed quote: the file ends inside the quoted field "
                                "that opens on this line", name, start) from None
            yield start, None, f"malformed CSV: {exc}"
            start = counter["line"] + 1
            continue
        if row and any(field.strip() for field in row):
            yield start, row, None
        start = counter["line"] + 1


def _delimited(rows, name: str, columns: dict[str, Any], sep: str) -> Iterator[Record]:
    """Pick columns out of tsv rows (strings, split here) or csv rows (lists)."""
    named = any(isinstance(spec, str) for spec in columns.values())
    specs = {role: spec for role, spec in columns.items() if spec is not None or role != "id"}
    if named:
        specs = {role: role if spec is None else spec for role, spec in specs.items()}
    else:
        specs = {role: {"label": 0, "text": 1}[role] if spec is None else spec
                 for role, spec in specs.items()}
    width = None
    if named:
        first = next(rows, None)
        if first is None:
            return
        header_line, header, problem = first
        if problem:
            raise DataError(f"expected a header row, found a {problem}", name, header_line)
        if isinstance(header, str):
            header = header.split("\t")
        header = [clean(h).strip() for h in header]
        index = {}
        for role, spec in specs.items():
            if isinstance(spec, int):
                index[role] = spec
            elif spec in header:
                index[role] = header.index(spec)
            else:
                raise DataError(f"expected a header with a column named {spec!r}, found "
                                + ", ".join(map(repr, header)), name, header_line)
        width = len(header)
    else:
        index = specs
    need = max(index.values()) + 1
    last = (width if width is not None else need) - 1
    by_index = {i: role for role, i in index.items()}
    layout = sep.join(by_index.get(i, "...") for i in range(need))
    for n, row, problem in rows:
        if problem:
            yield n, problem
            continue
        if isinstance(row, str):
            text_last = index.get("text") == last
            fields = row.split("\t", last) if text_last else row.split("\t")
        else:
            fields = row
        if len(fields) < need:
            s = "" if len(fields) == 1 else "s"
            yield n, f"has {len(fields)} column{s}, expected at least {need} ({layout})"
            continue
        yield n, {role: clean(fields[i]) for role, i in index.items()}
