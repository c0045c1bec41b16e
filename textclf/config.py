"""YAML recipes -> frozen dataclasses, with every check in one place.

``load_config(path, overrides)`` is the only way a :class:`Config` is made from
user input. It reads the file with ``yaml.safe_load``, applies ``--set
key.path=value`` overrides (values parsed as YAML scalars, so ``--set
train.epochs=3`` is an int), rejects unknown keys with the closest valid name,
checks each value's type and range with the checker attached to its field, then
runs the cross-field checks in ``_CROSS_CHECKS`` in order.

Relative data paths resolve against the folder of the config file, so a recipe
in ``configs/`` reaches ``../../shared/data/...`` wherever it is run from.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ConfigError

# --------------------------------------------------------------------------
# Checkers: (value, key, source) -> normalised value, or raise ConfigError.
# --------------------------------------------------------------------------

Checker = Callable[[Any, str, "str | None"], Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float, e.g. 10**400
        return False


def integer(low: int | None = None, high: int | None = None) -> Checker:
    def check(value, key, source):
        if not _is_int(value) or (low is not None and value < low) or (
                high is not None and value > high):
            if low == 1 and high is None:
                expected = "a positive integer"
            elif high is None:
                expected = f"an integer >= {low}"
            else:
                expected = f"an integer in [{low}, {high}]"
            raise ConfigError(key, expected, value, source)
        return value
    return check


def number(low: float, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Checker:
    def check(value, key, source):
        ok = _is_number(value)
        if ok:
            ok = (value > low) if low_open else (value >= low)
        if ok and high is not None:
            ok = (value < high) if high_open else (value <= high)
        if not ok:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            top = "inf" if high is None else f"{high:g}"
            raise ConfigError(key, f"a number in {lo}{low:g}, {top}{hi}", value, source)
        return float(value)
    return check


def choice(*allowed: str) -> Checker:
    def check(value, key, source):
        if value not in allowed:
            raise ConfigError(key, "one of " + ", ".join(allowed), value, source)
        return value
    return check


def boolean(value, key, source):
    if not isinstance(value, bool):
        raise ConfigError(key, "true or false", value, source)
    return value


def string(value, key, source):
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "a non-empty string", value, source)
    return value


def auto_or(inner: Checker) -> Checker:
    """The string ``auto`` (resolved at run time), or a value ``inner`` accepts."""
    def check(value, key, source):
        if value == "auto":
            return value
        try:
            return inner(value, key, source)
        except ConfigError as err:
            raise ConfigError(key, f"auto or {err.expected}", value, source) from None
    return check


def optional(inner: Checker) -> Checker:
    def check(value, key, source):
        return None if value is None else inner(value, key, source)
    return check


def int_list(value, key, source):
    if not isinstance(value, list) or not value or not all(
            _is_int(v) and v > 0 for v in value):
        raise ConfigError(key, "a non-empty list of positive integers", value, source)
    return tuple(value)


def str_list(value, key, source):
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v for v in value):
        raise ConfigError(key, "a non-empty list of strings", value, source)
    return tuple(value)


def column(value, key, source):
    """A column name, or a 0-based index for files without a header."""
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return value
    raise ConfigError(key, "a column name or a 0-based column index", value, source)


def paths(value, key, source):
    """A path, ``builtin:NAME``, or a list of them; normalised to a tuple."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(key, "a path, a builtin:NAME, or a list of them", value, source)
    for item in items:
        if item.startswith("builtin:") and item[len("builtin:"):] not in BUILTIN_DATASETS:
            raise ConfigError(key, "one of builtin:" + ", builtin:".join(BUILTIN_DATASETS),
                              item, source)
    return tuple(items)


def class_weight(value, key, source):
    if value == "balanced":
        return value
    if isinstance(value, dict) and value and all(
            isinstance(k, (str, int)) and _is_number(v) and v > 0 for k, v in value.items()):
        return {str(k): float(v) for k, v in value.items()}
    raise ConfigError(key, "'balanced' or a map of label to a positive weight", value, source)


def _check(checker: Checker, default: Any = None, doc: str = "") -> Any:
    """A dataclass field carrying its checker (and a one-line doc) as metadata."""
    if isinstance(default, list):  # lists are stored as tuples: frozen all the way down
        default = tuple(default)
    return field(default=default, metadata={"check": checker, "doc": doc})


BUILTIN_DATASETS = ("bbc-news",)
STOP_WORD_LISTS = ("english",)  # shipped in textclf/stop_words/; anything else is a file
DATA_FORMATS = ("auto", "tsv", "csv", "jsonl", "fasttext", "folder", "lines", "ptb_trees")

# --------------------------------------------------------------------------
# The schema. One comment per field says what it means.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitConfig:
    """How valid/test are carved from the training source when not given."""

    valid: float = _check(number(0.0, 1.0, high_open=True), 0.1,
                          "share of the training source held out for validation")
    test: float = _check(number(0.0, 1.0, high_open=True), 0.1,
                         "share held out for the test split")
    seed: int = _check(integer(0), 13, "seed of the stratified shuffle")


@dataclass(frozen=True)
class DataConfig:
    train: tuple | None = _check(optional(paths), None, "training data: path(s) or builtin:NAME")
    valid: tuple | None = _check(optional(paths), None, "validation data; split from train if absent")
    test: tuple | None = _check(optional(paths), None, "test data; split from train if absent")
    format: str = _check(choice(*DATA_FORMATS), "auto", "file format; auto = from the extension")
    text_column: Any = _check(optional(column), None,
                              "text column (name or 0-based index); default per format")
    label_column: Any = _check(optional(column), None,
                               "label column (name or 0-based index); default per format")
    encoding: str = _check(string, "utf-8", "text encoding of the files (e.g. latin-1)")
    on_bad_line: str = _check(choice("error", "skip"), "error",
                              "what to do with a malformed line")
    tree_labels: str = _check(choice("fine", "binary"), "fine",
                              "ptb_trees: 5 classes, or binary with neutral roots dropped")
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass(frozen=True)
class TextConfig:
    lowercase: bool = _check(boolean, True, "lower-case before splitting")
    strip_punctuation: bool = _check(boolean, True, "remove ASCII punctuation before splitting")
    split: str = _check(choice("whitespace", "character"), "whitespace",
                        "tokens are words, or characters (Chinese)")
    max_tokens: int = _check(integer(2), 20000, "vocabulary size, padding and OOV included")
    min_count: int = _check(integer(1), 1, "drop tokens seen fewer times in training data")
    max_length: int = _check(integer(1), 400, "tokens kept per document (longer ones are cut)")
    stop_words: str | None = _check(optional(string), None,
                                    "tokens removed before the max_length cut: english "
                                    "(textclf's list of function words) or a file, one word "
                                    "per line")
    embeddings: str | None = _check(optional(string), None,
                                    "pretrained word vectors (word2vec/GloVe text format)")
    embeddings_trainable: bool = _check(boolean, True,
                                        "fine-tune pretrained vectors (Kim's non-static)")


@dataclass(frozen=True)
class ModelConfig:
    type: str = _check(choice("cnn", "rnn", "treenet"), "cnn", "architecture")
    embedding_dim: int = _check(integer(1), 128, "size of the token embeddings")
    dropout: float = _check(number(0.0, 1.0, high_open=True), 0.5,
                            "dropout before the softmax layer")
    l2: float = _check(number(0.0), 0.0, "L2 penalty on kernels")
    kernel_initializer: str = _check(string, "glorot_uniform", "Keras initializer of the kernels")
    activation: str | None = _check(optional(choice("relu", "tanh", "elu", "gelu", "linear")),
                                    None, "cnn: conv activation (relu); rnn: cell activation (tanh)")
    # cnn
    kernel_sizes: tuple = _check(int_list, [3, 4, 5], "cnn: widths of the parallel Conv1D branches")
    filters: int = _check(integer(1), 100, "cnn: filters per branch")
    max_norm: float | None = _check(optional(number(0.0, low_open=True)), 3.0,
                                    "cnn: max L2 norm of the output layer's weight columns (Kim: 3)")
    pool_in_conv: bool = _check(boolean, True,
                                "cnn: bias and activation after the max over time, in one "
                                "layer (the same function, faster to train; relu, tanh, elu, "
                                "linear); false = Conv1D then pooling")
    pool_gradient: str = _check(choice("argmax", "shared"), "argmax",
                                "cnn, with pool_in_conv: argmax = the max's gradient to one "
                                "winning window, computed from those windows alone (faster); "
                                "shared = split among tied windows, as TensorFlow's reduce_max, "
                                "through the convolution's dense backprops")
    # rnn
    cell: str = _check(choice("lstm", "gru", "simple_rnn"), "lstm", "rnn: recurrent cell")
    units: int = _check(integer(1), 128, "rnn/treenet: hidden units")
    bidirectional: bool = _check(boolean, False, "rnn: read both directions, concatenated")
    layers: int = _check(integer(1, 8), 1, "rnn: stacked recurrent layers")
    recurrent_initializer: str = _check(string, "orthogonal", "rnn: initializer of recurrent kernels")
    cpu_loop: str = _check(choice("auto", "keras"), "auto",
                           "rnn: auto = textclf's fused CPU loop for LSTM and GRU (GPUs keep "
                           "cuDNN); "
                           "keras = the stock loop")
    # treenet
    tree_cell: str = _check(choice("rnn", "tree_lstm"), "tree_lstm",
                            "treenet: tanh(W[l;r]+b) composition, or binary Tree-LSTM")
    tree_loss: str = _check(choice("all_nodes", "root"), "all_nodes",
                            "treenet: sum the loss over every node or roots only")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _check(integer(1), 10, "passes over the training data")
    batch_size: int = _check(integer(1), 32, "examples per step (global, across replicas)")
    learning_rate: float = _check(number(0.0, low_open=True), 1e-3, "optimizer step size")
    optimizer: str = _check(choice("adam", "keras_adam", "sgd", "rmsprop", "adagrad"), "adam",
                            "adam runs TensorFlow's fused Adam kernel; keras_adam is Keras' "
                            "slower class, whose v sums the squares of an embedding row's "
                            "repeats")
    momentum: float = _check(number(0.0, 1.0, high_open=True), 0.0, "sgd/rmsprop momentum")
    lr_schedule: str = _check(choice("constant", "cosine"), "constant",
                              "cosine: learning_rate decays to 0 over train.epochs "
                              "(after the warm-up)")
    warmup_epochs: float = _check(number(0.0), 0.0,
                                  "epochs of linear warm-up from 0 to learning_rate (cosine)")
    label_smoothing: float = _check(number(0.0, 1.0, high_open=True), 0.0,
                                    "cnn/rnn: share of each target spread evenly over "
                                    "all classes (0 = one-hot targets)")
    clipnorm: float | None = _check(optional(number(0.0, low_open=True)), None,
                                    "clip each gradient to this L2 norm")
    clipvalue: float | None = _check(optional(number(0.0, low_open=True)), None,
                                     "clip each gradient element to [-v, v]")
    # NumPy's legacy seeding (inside keras.utils.set_random_seed) takes 32 bits only.
    seed: int = _check(integer(0, 2**32 - 1), 13, "seeds Python, NumPy and TensorFlow")
    deterministic: bool = _check(boolean, False, "TensorFlow op determinism (slower)")
    monitor: str = _check(choice("val_loss", "val_accuracy", "val_macro_f1"), "val_loss",
                          "early stopping and best-weights metric")
    patience: int | None = _check(optional(integer(0)), 3,
                                  "epochs without improvement before stopping; null = never")
    class_weight: Any = _check(optional(class_weight), None, "'balanced' or {label: weight}")
    bucketing: bool = _check(boolean, True,
                             "batch documents of similar length, padded to their longest")
    mixed_precision: str = _check(choice("none", "mixed_float16", "mixed_bfloat16", "auto"),
                                  "none", "Keras dtype policy for training; auto = what the "
                                  "hardware accelerates (textclf.precision)")
    pad_to_multiple_of: Any = _check(auto_or(integer(1, 1024)), "auto",
                                     "round each batch's width up to a multiple of this; "
                                     "auto = 64 on a GPU, 1 on a CPU (textclf.compilation)")
    jit_compile: Any = _check(auto_or(boolean), "auto",
                              "XLA-compile the training step; auto = off with bucketing "
                              "(one compile per batch shape), else Keras' choice")
    steps_per_execution: int = _check(integer(1, 1024), 1,
                                      "training steps per call into TensorFlow "
                                      "(Keras' steps_per_execution); per-batch callbacks "
                                      "and progress see every Nth batch")
    distribute: str = _check(choice("none", "mirrored", "multi_worker"), "none",
                             "tf.distribute strategy")
    devices: tuple | None = _check(optional(str_list), None,
                                   "mirrored: devices, e.g. [/gpu:0, /gpu:1]; "
                                   "null = all GPUs, else the CPU")
    tensorboard: bool = _check(boolean, False, "write TensorBoard logs under RUN_DIR/logs")
    verbose: str = _check(choice("auto", "progress", "epoch", "quiet"), "auto",
                          "Keras progress output")


# Search-space ranges of tune.space: name -> what the range holds.
RANGE_KINDS = {"choice": "a non-empty list of values", "int": "[low, high] or [low, high, step]",
               "uniform": "[low, high]", "log_uniform": "[low, high], low above 0"}
TUNABLE_SECTIONS = ("text", "model", "train")


def _tunable_fields() -> dict:
    """Every leaf key of the sections a search may vary: 'model.filters' -> its Field."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    return {f"{section}.{f.name}": f for section in TUNABLE_SECTIONS
            for f in dataclasses.fields(_NESTED[sections[section]])}


def search_space(value, key, source):
    """``tune.space``: ``{dotted.key: {kind: ...}}``, each key a real config key and
    each bound or choice accepted by that key's own checker."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(key, "a non-empty mapping of config keys (e.g. model.filters) to "
                          "ranges", value, source)
    fields = _tunable_fields()
    space = {}
    for name, spec in value.items():
        if not isinstance(name, str) or name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError.unknown_key(f"{key}.{name}", key, hint, source)
        space[name] = _search_range(fields[name], spec, f"{key}.{name}", source)
    return space


def _search_range(fld, spec, key, source) -> dict:
    check = fld.metadata["check"]
    numeric = "int" if "int" in fld.type and "list" not in fld.type else (
        "float" if "float" in fld.type else None)
    allowed = ["choice"] + {"int": ["int"], "float": ["uniform", "log_uniform"]}.get(numeric, [])
    expected = " or ".join(f"{{{kind}: {RANGE_KINDS[kind]}}}" for kind in allowed)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in allowed:
        raise ConfigError(key, expected, spec, source)
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise ConfigError(key, expected, spec, source)
        for item in bounds:
            check(item, key, source)
        return {kind: list(bounds)}
    parts = 3 if kind == "int" else 2
    if not isinstance(bounds, list) or len(bounds) not in (2, parts):
        raise ConfigError(key, expected, spec, source)
    low, high = (check(b, key, source) for b in bounds[:2])
    if not low < high or (kind == "log_uniform" and low <= 0):
        raise ConfigError(key, f"{{{kind}: {RANGE_KINDS[kind]}}} with low below high",
                          spec, source)
    if kind == "int" and len(bounds) == 3 and not (isinstance(bounds[2], int) and bounds[2] > 0):
        raise ConfigError(f"{key}.int", "a positive integer step", bounds[2], source)
    return {kind: list(bounds)}


@dataclass(frozen=True)
class TuneConfig:
    """``textclf tune``: the search; training itself follows the other sections."""

    algorithm: str = _check(choice("random", "bayesian"), "random",
                            "KerasTuner random search or Bayesian optimisation")
    trials: int = _check(integer(1), 10, "configurations to train (--trials overrides)")
    objective: str | None = _check(optional(choice("val_loss", "val_accuracy", "val_macro_f1")),
                                   None, "metric to optimise, best epoch; null = train.monitor")
    seed: int | None = _check(optional(integer(0)), None, "seed of the search; null = train.seed")
    initial_points: int | None = _check(optional(integer(1)), None,
                                        "bayesian: random trials before the Gaussian process "
                                        "guides; null = 3 per searched key")
    space: dict | None = _check(optional(search_space), None,
                                "{model.filters: {choice: [64, 128]}, "
                                "train.learning_rate: {log_uniform: [1e-4, 1e-2]}, ...}")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    source: str | None = field(default=None, compare=False, metadata={"internal": True})


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------


def load_config(path: str | os.PathLike, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read, override, validate. Raises :class:`ConfigError` with key and file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("config", "an existing YAML file", source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", "a readable UTF-8 YAML file", f"{source} ({exc})") from None
    raw = parse_yaml(text, source)
    return config_from_dict(raw, overrides, source=source,
                            base_dir=Path(path).resolve().parent)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (plain YAML keeps the last
    silently, so a second ``data:`` section would quietly replace the first)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping as a key ('? [a]'): not hashable
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def parse_yaml(text: str, source: str) -> dict:
    """YAML text -> mapping, through a SafeLoader (no object construction)."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe_load semantics
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "\t" in text and "\\t" in str(problem) or "tab" in str(problem):
            problem += " (YAML forbids tabs for indentation: use spaces)"
        raise ConfigError("config", "valid YAML", f"{problem} at {where}", source) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError("config", "valid YAML", "collections nested too deeply", source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config", "a mapping with sections data, text, model, train",
                          type(raw).__name__, source)
    _check_expanded_size(raw, source)
    return raw


_MAX_VALUES = 100_000  # a full recipe holds about 60; aliases can make billions, or a cycle


def _check_expanded_size(raw: dict, source: str) -> None:
    """Refuse YAML whose aliases expand to a huge or endless structure ('a: &a [*a]',
    "billion laughs"), which copying and checking the config would never finish."""
    stack, count = [raw], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > _MAX_VALUES:
            raise ConfigError("config", f"at most {_MAX_VALUES} values with its aliases "
                              "expanded", "more (a recursive or exponential alias?)", source)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def config_from_dict(raw: dict, overrides=(), source: str | None = None,
                     base_dir: Path | None = None) -> Config:
    raw = _apply_overrides(raw, overrides, source)
    config = _build(Config, raw, "", source)
    config = dataclasses.replace(config, source=source)
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    for cross_check in _CROSS_CHECKS:
        cross_check(config, raw, source)
    return config


def _apply_overrides(raw: dict, overrides, source) -> dict:
    raw = _deep_copy(raw)
    for item in overrides:
        key, sep, value_text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--set", "key.path=value", item)
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError:
            value = value_text
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[:depth + 1]), "a section", child, "--set")
            node = child
        node[parts[-1]] = value
    return raw


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _build(cls, raw: Any, prefix: str, source: str | None):
    """Instantiate dataclass ``cls`` from mapping ``raw``, checking every key."""
    section = prefix.rstrip(".") or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(section, "a mapping of keys to values", raw, source)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in raw:
        if not isinstance(key, str) or key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError.unknown_key(f"{prefix}{key}", section, hint, source)
    values = {}
    for name, fld in fields.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(fld.type) or (isinstance(fld.type, str) and fld.type.endswith("Config")):
            nested_cls = _NESTED[fld.type] if isinstance(fld.type, str) else fld.type
            values[name] = _build(nested_cls, raw.get(name), key + ".", source)
        elif name in raw:
            values[name] = fld.metadata["check"](raw[name], key, source)
    return cls(**values)


_NESTED = {"SplitConfig": SplitConfig, "DataConfig": DataConfig, "TextConfig": TextConfig,
           "ModelConfig": ModelConfig, "TrainConfig": TrainConfig, "TuneConfig": TuneConfig}


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def resolve(items):
        if items is None:
            return None
        return tuple(p if p.startswith("builtin:") else
                     str((base_dir / os.path.expanduser(p)).resolve()) for p in items)

    data = dataclasses.replace(config.data, train=resolve(config.data.train),
                               valid=resolve(config.data.valid), test=resolve(config.data.test))
    text = config.text
    if text.embeddings is not None:
        text = dataclasses.replace(text, embeddings=resolve((text.embeddings,))[0])
    if text.stop_words is not None and text.stop_words not in STOP_WORD_LISTS:
        text = dataclasses.replace(text, stop_words=resolve((text.stop_words,))[0])
    return dataclasses.replace(config, data=data, text=text)


# --------------------------------------------------------------------------
# Cross-field checks, run in order. Each is (config, raw mapping, source) -> None.
# --------------------------------------------------------------------------

_CNN_ONLY = ("kernel_sizes", "filters", "max_norm", "pool_in_conv", "pool_gradient")
_RNN_ONLY = ("cell", "bidirectional", "layers", "recurrent_initializer", "cpu_loop")
_TREE_ONLY = ("tree_cell", "tree_loss")


def _check_train_data_given(config, raw, source):
    if config.data.train is None:
        raise ConfigError("data.train", "a path, a builtin:NAME, or a list of them", None, source)


def _check_split_fractions(config, raw, source):
    split = config.data.split
    if split.valid + split.test >= 1.0:
        raise ConfigError("data.split", "fractions valid + test below 1",
                          split.valid + split.test, source)
    if config.data.valid is None and split.valid == 0.0:
        raise ConfigError("data.split.valid", "above 0 when data.valid is not given",
                          split.valid, source)


def _check_model_options_match_type(config, raw, source):
    """Options of another architecture set away from their defaults are a sign of
    a mistaken recipe. (Defaults are allowed, so a resolved config loads back.)"""
    foreign = {"cnn": _RNN_ONLY + _TREE_ONLY, "rnn": _CNN_ONLY + _TREE_ONLY,
               "treenet": _CNN_ONLY + _RNN_ONLY}[config.model.type]
    defaults = ModelConfig()
    for name in foreign:
        value = getattr(config.model, name)
        if value != getattr(defaults, name):
            raise ConfigError(f"model.{name}", f"left out for model.type {config.model.type}",
                              list(value) if isinstance(value, tuple) else value, source)


def _check_momentum(config, raw, source):
    if config.train.momentum and config.train.optimizer not in ("sgd", "rmsprop"):
        raise ConfigError("train.momentum", "0 unless train.optimizer is sgd or rmsprop",
                          config.train.momentum, source)


def _check_warmup_needs_schedule(config, raw, source):
    if config.train.warmup_epochs and config.train.lr_schedule == "constant":
        raise ConfigError("train.warmup_epochs", "0 unless train.lr_schedule is cosine",
                          config.train.warmup_epochs, source)
    if config.train.warmup_epochs >= config.train.epochs:
        raise ConfigError("train.warmup_epochs", f"fewer than train.epochs ({config.train.epochs})",
                          config.train.warmup_epochs, source)


def _check_tree_format(config, raw, source):
    trees = config.data.format == "ptb_trees"
    if trees != (config.model.type == "treenet"):
        raise ConfigError("data.format", "ptb_trees exactly when model.type is treenet",
                          config.data.format, source)


def _check_devices_need_mirrored(config, raw, source):
    if config.train.devices is not None and config.train.distribute != "mirrored":
        raise ConfigError("train.devices", "left out unless train.distribute is mirrored",
                          list(config.train.devices), source)


def _check_tree_rnn_sizes(config, raw, source):
    """The rnn tree cell composes leaves' embedding rows directly: same width as states."""
    model = config.model
    if model.type == "treenet" and model.tree_cell == "rnn" and model.embedding_dim != model.units:
        raise ConfigError("model.units", f"equal to model.embedding_dim ({model.embedding_dim}) "
                          "for model.tree_cell rnn", model.units, source)


def _check_tree_monitor(config, raw, source):
    """A tree net logs val_loss, val_accuracy (roots) and val_all_nodes_accuracy only."""
    if config.model.type == "treenet" and config.train.monitor == "val_macro_f1":
        raise ConfigError("train.monitor", "val_loss or val_accuracy for model.type treenet",
                          config.train.monitor, source)


def _check_tree_stop_words(config, raw, source):
    """A tree net reads every leaf of its parse trees (each carries a label)."""
    if config.model.type == "treenet" and config.text.stop_words is not None:
        raise ConfigError("text.stop_words", "left out for model.type treenet",
                          config.text.stop_words, source)


def _check_tree_label_smoothing(config, raw, source):
    """A tree net's node loss reads class ids, not smoothed targets."""
    if config.model.type == "treenet" and config.train.label_smoothing:
        raise ConfigError("train.label_smoothing", "0 for model.type treenet",
                          config.train.label_smoothing, source)


_CROSS_CHECKS = (_check_train_data_given, _check_split_fractions,
                 _check_model_options_match_type, _check_momentum,
                 _check_warmup_needs_schedule, _check_tree_format,
                 _check_devices_need_mirrored, _check_tree_rnn_sizes, _check_tree_monitor,
                 _check_tree_stop_words, _check_tree_label_smoothing)


# --------------------------------------------------------------------------
# Writing back.
# --------------------------------------------------------------------------


def config_to_dict(config: Config) -> dict:
    """Plain YAML-able dict with every default filled in (tuples as lists)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if not f.metadata.get("internal")}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
