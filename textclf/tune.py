"""``textclf tune``: KerasTuner search over the ranges in the config's ``tune`` section.

Each trial is an ordinary textclf training: the trial's values are written into
the resolved config by their dotted keys, the result goes through the same
validation as ``textclf train`` (so a trial config is always a valid config),
the data are read and tokenised (cached per distinct ``data``/``text``
section), and the model is fitted with early stopping on ``train.monitor``.
KerasTuner scores a trial by the best epoch's ``tune.objective`` on the
validation split (default: ``train.monitor``).

Writes into OUT (``-o``, default ``runs/<config name>-tune``)::

    best_config.yaml   the resolved config with the best trial's values: `textclf train -c` it
    trials.tsv         one row per trial: id, status, objective, each searched value
    trials.json        the same as JSON
    keras_tuner/       KerasTuner's own state (oracle, per-trial checkpoints)

Search space (``tune.space``), keys checked against the config schema::

    model.filters:        {choice: [64, 128]}        any key; lists allowed as values
    model.units:          {int: [32, 256, 32]}       integer keys: low, high[, step]
    model.dropout:        {uniform: [0.1, 0.6]}      float keys
    train.learning_rate:  {log_uniform: [1e-4, 1e-2]}
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

from .config import Config, config_from_dict, config_to_dict, dump_config, load_config
from .errors import ConfigError, TextclfError, UsageError

TUNER_DIR = "keras_tuner"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def require_keras_tuner(algorithm: str):
    """``keras_tuner``, or a one-line error saying how to install it."""
    try:
        import keras_tuner
    except ImportError:
        raise UsageError("textclf tune needs KerasTuner: pip install 'keras-textclf[tune]'") \
            from None
    if algorithm == "bayesian":
        try:
            import scipy  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise UsageError("tune.algorithm bayesian needs scikit-learn and scipy: "
                             "pip install 'keras-textclf[tune]'") from None
    return keras_tuner


# --------------------------------------------------------------------------
# From hyperparameters to a config.
# --------------------------------------------------------------------------


def _scalar_choices(values: list) -> bool:
    """KerasTuner's Choice holds int, float, str or bool values, all of one type."""
    kinds = {type(v) for v in values}
    return len(kinds) == 1 and kinds <= {int, float, str, bool}


def sample(hp, name: str, spec: dict):
    """Declare ``name``'s range on KerasTuner's ``hp`` and return the trial's value."""
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        if _scalar_choices(bounds):
            return hp.Choice(name, bounds)
        # Lists, nulls and mixed types travel as JSON text.
        return json.loads(hp.Choice(name, [json.dumps(v) for v in bounds]))
    if kind == "int":
        step = bounds[2] if len(bounds) == 3 else 1
        return hp.Int(name, bounds[0], bounds[1], step=step)
    return hp.Float(name, float(bounds[0]), float(bounds[1]),
                    sampling="log" if kind == "log_uniform" else "linear")


def with_values(raw: dict, values: dict, source: str | None) -> Config:
    """The resolved config ``raw`` with ``values`` (dotted key -> value), validated."""
    raw = json.loads(json.dumps(raw))  # a deep copy of plain YAML types
    for key, value in values.items():
        section, name = key.split(".", 1)
        raw[section][name] = value
    return config_from_dict(raw, source=source)


def corner_configs(raw: dict, space: dict) -> list[dict]:
    """One-key-at-a-time extremes of the space (each choice, each bound)."""
    corners = []
    for name, spec in space.items():
        kind, bounds = next(iter(spec.items()))
        for value in (bounds if kind == "choice" else bounds[:2]):
            corners.append({name: value})
    return corners


# --------------------------------------------------------------------------
# The hypermodel: textclf's own pipeline per trial.
# --------------------------------------------------------------------------


def make_hypermodel(kt, raw: dict, space: dict, source: str | None):
    from .compilation import resolve_jit_compile, resolve_pad_multiple
    from .models import build_model, layers  # noqa: F401  layers: registers custom layers
    from .text import load_embeddings
    from .training import compile_classifier, prepare_data, seed_everything

    class TextclfHyperModel(kt.HyperModel):
        """``build(hp)`` -> compiled classifier; ``fit`` -> its History on our batches."""

        def __init__(self):
            super().__init__(name="textclf")
            self._data: dict = {}

        def config(self, hp) -> Config:
            values = {name: sample(hp, name, spec) for name, spec in space.items()}
            try:
                return with_values(raw, values, source)
            except ConfigError as exc:  # stop the search: every trial would say the same
                raise kt.errors.FatalError(str(exc)) from None

        def data(self, cfg: Config):
            key = (cfg.data, cfg.text)
            if key not in self._data:
                prepared = prepare_data(cfg)
                vocabulary = prepared.vectorizer.get_vocabulary()
                pretrained = None
                if cfg.text.embeddings:
                    pretrained, _ = load_embeddings(cfg.text.embeddings, vocabulary,
                                                    cfg.model.embedding_dim, cfg.train.seed)
                self._data[key] = (prepared, vocabulary, pretrained)
            return self._data[key]

        def build(self, hp):
            cfg = self.config(hp)
            seed_everything(cfg.train.seed, cfg.train.deterministic)
            prepared, vocabulary, pretrained = self.data(cfg)
            if pretrained is not None and pretrained.shape[1] != cfg.model.embedding_dim:
                raise kt.errors.FatalError("model.embedding_dim cannot be searched together "
                                           "with text.embeddings")
            model = build_model(cfg.model, len(vocabulary), len(prepared.labels), pretrained,
                                cfg.text.embeddings_trainable)
            jit_compile = resolve_jit_compile(cfg.train.jit_compile, cfg.train.bucketing)[0]
            compile_classifier(model, cfg, len(prepared.sequences["train"]), jit_compile)
            return model

        def fit(self, hp, model, *args, callbacks=(), **kwargs):
            import keras

            from .batching import BatchSequence
            from .training import class_weights

            cfg = self.config(hp)
            prepared = self.data(cfg)[0]
            n_classes = len(prepared.labels)
            weights = class_weights(cfg.train, prepared.labels, prepared.label_ids["train"])
            fixed = None if cfg.train.bucketing else cfg.text.max_length
            multiple = resolve_pad_multiple(cfg.train.pad_to_multiple_of)[0]
            train = BatchSequence(
                prepared.sequences["train"], prepared.label_ids["train"], n_classes,
                cfg.train.batch_size, seed=cfg.train.seed, bucketing=cfg.train.bucketing,
                fixed_length=fixed, pad_multiple=multiple,
                sample_weights=None if weights is None else weights[prepared.label_ids["train"]])
            valid = BatchSequence(prepared.sequences["valid"], prepared.label_ids["valid"],
                                  n_classes, cfg.train.batch_size, shuffle=False,
                                  fixed_length=fixed, pad_multiple=multiple)
            stop = keras.callbacks.EarlyStopping(
                monitor=cfg.train.monitor, mode="min" if cfg.train.monitor == "val_loss" else "max",
                patience=cfg.train.epochs if cfg.train.patience is None else cfg.train.patience)
            return model.fit(train.as_dataset(), validation_data=valid.as_dataset(),
                             epochs=cfg.train.epochs, callbacks=[*callbacks, stop],
                             shuffle=False, verbose=0)

    return TextclfHyperModel()


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


def tune(config_path: str, overrides=(), trials: int | None = None,
         algorithm: str | None = None, output: str | None = None, force: bool = False) -> dict:
    """Run ``textclf tune``; returns paths, the best values and the trial table."""
    cfg = load_config(config_path, overrides)
    settings = cfg.tune
    if settings.space is None:
        raise ConfigError("tune.space", "a non-empty mapping of config keys (e.g. "
                          "model.filters) to ranges", None, cfg.source)
    algorithm = algorithm or settings.algorithm
    n_trials = trials or settings.trials
    objective = settings.objective or cfg.train.monitor
    direction = "min" if objective == "val_loss" else "max"
    kt = require_keras_tuner(algorithm)
    raw = config_to_dict(cfg)
    for corner in corner_configs(raw, settings.space):  # fail now, not at trial 7
        with_values(raw, corner, cfg.source)

    out = Path(output) if output else Path("runs") / f"{Path(config_path).stem}-tune"
    if out.exists():
        if not force:
            raise UsageError(f"{out} exists; pass --force to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    options = dict(objective=kt.Objective(objective, direction), max_trials=n_trials,
                   seed=cfg.train.seed if settings.seed is None else settings.seed,
                   directory=str(out), project_name=TUNER_DIR, overwrite=True)
    hypermodel = make_hypermodel(kt, raw, settings.space, cfg.source)
    if algorithm == "bayesian":
        tuner = kt.BayesianOptimization(hypermodel, num_initial_points=settings.initial_points,
                                        **options)
    else:
        tuner = kt.RandomSearch(hypermodel, **options)
    log(f"{algorithm} search: {n_trials} trials over {', '.join(settings.space)}; "
        f"objective {objective} ({direction})")
    # KerasTuner prints its progress tables on stdout, which belongs to the result.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        # The Gaussian process warns whenever a length scale meets its bound: noise here.
        warnings.filterwarnings("ignore", category=UserWarning,
                                module=r"sklearn\.gaussian_process")
        try:
            tuner.search(verbose=0)
        except kt.errors.FatalError as exc:
            raise UsageError(str(exc)) from None

    rows = trial_rows(tuner, settings.space)
    finished = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    if not finished:
        raise TextclfError(f"no trial finished; see {out / TUNER_DIR} for KerasTuner's records")
    best = tuner.oracle.get_best_trials(1)[0]
    best_values = {name: decode(best.hyperparameters.values[name], spec)
                   for name, spec in settings.space.items()}
    best_cfg = with_values(raw, best_values, cfg.source)
    from .artifact import write_json, write_text

    write_text(out / "best_config.yaml", dump_config(best_cfg))
    write_text(out / "trials.tsv", trials_tsv(rows, settings.space))
    write_json(out / "trials.json", rows)
    for row in rows:
        log(f"trial {row['trial']}: {row['status'].lower()}, {objective} {row['score']}: "
            + ", ".join(f"{k}={v}" for k, v in row["values"].items()))
    return {"output": str(out), "best_config": str(out / "best_config.yaml"),
            "trials_table": str(out / "trials.tsv"), "algorithm": algorithm,
            "objective": objective, "direction": direction, "trials": rows,
            "best": {"trial": best.trial_id, "score": best.score, "values": best_values}}


def decode(value, spec: dict):
    """A value as KerasTuner stored it -> the config value (JSON-encoded choices)."""
    kind, bounds = next(iter(spec.items()))
    if kind == "choice" and not _scalar_choices(bounds):
        return json.loads(value)
    return value


def trial_rows(tuner, space: dict) -> list[dict]:
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        values = {name: decode(trial.hyperparameters.values[name], spec)
                  for name, spec in space.items() if name in trial.hyperparameters.values}
        score = trial.score
        rows.append({"trial": trial_id, "status": str(trial.status),
                     "score": None if score is None or not math.isfinite(score) else score,
                     # KerasTuner counts epochs from 0; history.csv and reports from 1.
                     "best_epoch": None if trial.best_step is None else trial.best_step + 1,
                     "values": values})
    return rows


def trials_tsv(rows: list[dict], space: dict) -> str:
    header = ["trial", "status", "score", "best_epoch", *space]
    lines = ["\t".join(header)]
    for row in rows:
        cells = [row["trial"], row["status"], "" if row["score"] is None else
                 f"{row['score']:.6g}", "" if row["best_epoch"] is None else row["best_epoch"]]
        cells += [json.dumps(row["values"].get(name)) for name in space]
        lines.append("\t".join(str(c) for c in cells))
    return "\n".join(lines) + "\n"
