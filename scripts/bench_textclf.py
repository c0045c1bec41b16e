"""textclf's rows of ``make bench``: the shipped recipes, trained by the tool itself.

Training goes through ``textclf.training.train`` (what ``textclf train`` runs:
same data, vectoriser, bucketed batches, callbacks, checkpoints, run
directory). Two of its module-level steps are wrapped for the length of the
call, in plain sight (:func:`train_with_clock`):

- ``prepare_data`` is wrapped to keep the tokenised splits, from which the
  batch plan (hence the padded widths and FLOPs) and the test set come;
- ``make_callbacks`` is wrapped to append an epoch clock
  (:func:`bench_common.make_epoch_clock`) after the tool's own callbacks; after
  each epoch it measures test accuracy, off the clock.

Nothing else about training changes. Bulk prediction then loads the finished
run directory with ``textclf.inference.predictor`` (Keras and NumPy engines),
the callables ``textclf predict`` streams its batches through.

    python scripts/bench_textclf.py run --spec SPEC.json --out RESULT.json
    python scripts/bench_textclf.py predict_extras --spec SPEC.json --out RESULT.json
    python scripts/bench_textclf.py ablation --spec SPEC.json --out RESULT.json
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench_common import (Architecture, cycled, dir_size, epoch_work,  # noqa: E402
                          inference_flops, make_epoch_clock, read_json, recurrent_ops,
                          steady_state, worker_main)


def train_with_clock(recipe: str, overrides: list[str], output: Path,
                     evaluate_each_epoch: bool) -> tuple[Path, dict]:
    """Run ``textclf.training.train`` with an epoch clock; returns the run
    directory and ``{"cfg", "data", "clock", "train_call_seconds"}``."""
    from textclf import training

    for name in ("prepare_data", "make_callbacks", "predict_ids", "train"):
        if not callable(getattr(training, name, None)):
            raise RuntimeError(f"textclf.training.{name} is gone: update scripts/bench_textclf.py")
    captured: dict = {}
    prepare_data, make_callbacks = training.prepare_data, training.make_callbacks

    def keeping_prepare_data(cfg, vocabulary=None):
        data = prepare_data(cfg, vocabulary)
        captured["cfg"], captured["data"] = cfg, data
        return data

    def test_accuracy(classifier) -> float:
        data = captured["data"]
        probabilities = training.predict_ids(classifier, data.sequences["test"], 64)
        return float(np.mean(probabilities.argmax(axis=1) == data.label_ids["test"]))

    def callbacks_and_clock(cfg, work, progress):
        callbacks, nan_stop = make_callbacks(cfg, work, progress)
        captured["clock"] = make_epoch_clock(test_accuracy if evaluate_each_epoch else None)
        return [*callbacks, captured["clock"]], nan_stop

    training.prepare_data, training.make_callbacks = keeping_prepare_data, callbacks_and_clock
    try:
        started = time.perf_counter()
        run_dir = training.train(str(recipe), tuple(overrides), str(output), True, None)
        captured["train_call_seconds"] = time.perf_counter() - started
    finally:
        training.prepare_data, training.make_callbacks = prepare_data, make_callbacks
    return Path(run_dir), captured


def training_work(cfg, data, n_epochs: int, pad_multiple: int = 1) -> list:
    """Per epoch, the batches the run trained on (textclf's own plan) as EpochWork;
    ``pad_multiple``: the run's resolved ``train.pad_to_multiple_of`` (run.json)."""
    from textclf.batching import BatchSequence, round_up

    sequences = data.sequences["train"]
    n_classes = len(data.labels)
    fixed = None if cfg.train.bucketing else cfg.text.max_length
    batches = BatchSequence(sequences, data.label_ids["train"], n_classes, cfg.train.batch_size,
                            seed=cfg.train.seed, shuffle=True, bucketing=cfg.train.bucketing,
                            fixed_length=fixed)
    lengths = batches.lengths
    arch = Architecture.from_model_config(cfg.model, n_classes)
    work = []
    for epoch in range(n_epochs):
        plan = batches.plan(epoch)
        widths = [max(fixed or batches.min_length, int(lengths[rows].max())) for rows in plan]
        if not fixed:
            widths = [round_up(w, pad_multiple) for w in widths]
        work.append(epoch_work(arch, plan, lengths, widths))
    return work


def time_prediction(predict_proba, docs: list[str], batch: int) -> float:
    """Seconds to turn ``docs`` into labels, ``batch`` at a time, in input order
    (as ``textclf predict`` calls the engine), after one untimed warm-up batch."""
    predict_proba(docs[:batch])
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        np.asarray(predict_proba(docs[start:start + batch])).argmax(axis=1)
    return time.perf_counter() - started


def prediction_widths(lengths: np.ndarray, char_lengths: np.ndarray, batch: int) -> np.ndarray:
    """Per document, the width the Keras engine runs it at.

    As textclf.inference.keras_predictor does: each batch of ``batch`` texts is
    cut into groups of LENGTH_GROUP by character length, and each group is
    padded to its longest (TextVectorization pads to the longest, TruncateTokens
    caps at max_length; ``lengths`` are token counts, already capped).
    """
    from textclf.inference import LENGTH_GROUP

    out = np.empty(len(lengths))
    for start in range(0, len(lengths), batch):
        rows = np.arange(start, min(start + batch, len(lengths)))
        order = rows[np.argsort(char_lengths[rows], kind="stable")]
        for group_start in range(0, len(order), LENGTH_GROUP):
            group = order[group_start:group_start + LENGTH_GROUP]
            out[group] = lengths[group].max()
    return out


def run_recipe(spec: dict) -> dict:
    """Train one shipped recipe, then measure bulk prediction on its run directory."""
    from textclf.artifact import open_run
    from textclf.inference import predictor
    from textclf.reference.export import nested_classifier

    output = Path(spec["workdir"]) / "runs" / spec["name"]
    run_dir, captured = train_with_clock(spec["recipe"], spec["overrides"], output, True)
    cfg, data, clock = captured["cfg"], captured["data"], captured["clock"]
    metrics = read_json(run_dir / "metrics.json")["test"]
    n_classes = len(data.labels)
    arch = Architecture.from_model_config(cfg.model, n_classes)
    run_info = read_json(run_dir / "run.json")
    steady = steady_state(clock.epochs, training_work(cfg, data, len(clock.epochs),
                                                      run_info.get("pad_to_multiple_of", 1)))

    run = open_run(run_dir)
    docs = cycled(data_texts(cfg, "test"), spec["predict_docs"])
    doc_lengths = np.array(cycled([len(s) for s in data.sequences["test"]], len(docs)),
                           dtype=np.float64)
    char_lengths = np.array([len(doc) for doc in docs])
    batch = spec["predict_batch"]
    seconds = time_prediction(predictor(run, "keras"), docs, batch)

    return {
        "contender": spec["contender"], "dataset": spec["dataset"], "family": spec["family"],
        "kind": "textclf", "n_train": len(data.label_ids["train"]),
        "n_test": len(data.label_ids["test"]),
        "test_accuracy": metrics["accuracy"], "macro_f1": metrics["macro"]["f1"],
        "train_seconds": clock.fit_seconds, "epochs": len(clock.epochs),
        "steady_ex_per_s": steady["ex_per_s"], "steady_note": steady["note"],
        "curve": clock.curve, "predict_docs": len(docs),
        "predict_docs_per_s": len(docs) / seconds, "predict_batch": batch,
        "model_bytes": (run_dir / "model.keras").stat().st_size,
        "flops": {"architecture": arch.describe(), "train": steady,
                  "predict": inference_flops(arch,
                                             prediction_widths(doc_lengths, char_lengths, batch),
                                             doc_lengths, seconds)},
        "extra": {"run_dir": str(run_dir), "train_call_seconds": captured["train_call_seconds"],
                  "weights_npz_bytes": (run_dir / "weights.npz").stat().st_size,
                  "run_dir_bytes": dir_size(run_dir),
                  "epoch_times": [{k: e[k] for k in ("train", "total", "first_batch_wait")}
                                  for e in clock.epochs],
                  "max_epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size,
                  "bucketing": cfg.train.bucketing,
                  "mixed_precision": run_info.get("mixed_precision", cfg.train.mixed_precision),
                  "pad_to_multiple_of": run_info.get("pad_to_multiple_of", 1),
                  "jit_compile": run_info.get("jit_compile"),
                  "recurrent_ops": (recurrent_ops(nested_classifier(run.model))
                                    if spec["family"] == "rnn" else [])},
    }


def predict_extras(spec: dict) -> dict:
    """Bulk prediction with other settings on a finished run: the NumPy engine
    first (no TensorFlow needed), then the Keras engine at other batch sizes and
    without its folded tables.
    A process of its own, so the main row's peak RSS covers one engine."""
    from textclf.artifact import open_run
    from textclf.inference import predictor

    from bench_common import load_recipe_splits

    run = open_run(spec["run_dir"])
    _, splits = load_recipe_splits(spec["recipe"], spec["overrides"])
    docs = cycled(splits.test.texts, spec["predict_docs"])
    batch = spec["predict_batch"]
    rates = {}
    numpy_docs = docs[:spec["numpy_predict_docs"]]
    if numpy_docs:
        seconds = time_prediction(predictor(run, "numpy"), numpy_docs, batch)
        rates[f"numpy engine, {batch} docs per call ({len(numpy_docs):,} docs)"] = (
            len(numpy_docs) / seconds)
    for other in spec["keras_batches"]:
        seconds = time_prediction(predictor(run, "keras"), docs, other)
        rates[f"keras engine, {other} docs per call ({len(docs):,} docs)"] = len(docs) / seconds
    # What the folded tables (textclf.models.folded_cnn / folded_lstm) buy: the
    # saved model itself, at the main row's batch.
    from textclf.inference import keras_predictor

    seconds = time_prediction(keras_predictor(run, fold=False), docs, batch)
    rates[f"keras engine, not folded, {batch} docs per call ({len(docs):,} docs)"] = (
        len(docs) / seconds)
    return {"predict_extra": rates}


def data_texts(cfg, split: str) -> list[str]:
    """The texts of a split, read again the way training read them."""
    from textclf.data import load_splits

    return getattr(load_splits(cfg.data), split).texts


def ablation(spec: dict) -> dict:
    """Steady-state training speed of one recipe under each variant's overrides.

    Every variant trains ``spec["epochs"]`` epochs (no early stop) from the
    same seed; the dtype policy and Keras state are reset between variants
    (``train.mixed_precision`` sets a global policy). scripts/bench.py gives
    each variant a process of its own, because TensorFlow's thread settings
    (textclf.runtime) can only be chosen before a process runs its first op.
    """
    import keras

    rows = []
    for variant in spec["variants"]:
        overrides = [*spec["overrides"], *variant["overrides"],
                     f"train.epochs={spec['epochs']}", "train.patience=null"]
        output = Path(spec["workdir"]) / "ablation" / f"{spec['name']}-{variant['name']}"
        try:
            run_dir, captured = train_with_clock(spec["recipe"], overrides, output, False)
        except Exception as exc:  # one failing lever must not sink the others
            rows.append({"name": variant["name"], "overrides": variant["overrides"],
                         "env": variant.get("env") or {},
                         "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            continue
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
            keras.backend.clear_session()
        cfg, data, clock = captured["cfg"], captured["data"], captured["clock"]
        run_info = read_json(run_dir / "run.json")
        steady = steady_state(clock.epochs, training_work(cfg, data, len(clock.epochs),
                                                          run_info.get("pad_to_multiple_of", 1)))
        rows.append({"name": variant["name"], "overrides": variant["overrides"],
                     "env": variant.get("env") or {},
                     "pad_to_multiple_of": run_info.get("pad_to_multiple_of", 1),
                     "jit_compile": run_info.get("jit_compile"),
                     "epoch_train_seconds": [e["train"] for e in clock.epochs], **steady})
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"name": spec["name"], "recipe": spec["recipe"], "epochs": spec["epochs"],
            "variants": rows}


if __name__ == "__main__":
    sys.exit(worker_main({"run": run_recipe, "predict_extras": predict_extras,
                          "ablation": ablation}))
