"""``make bench``: textclf against a naive Keras baseline and two peers (issue 7).

    python scripts/bench.py                        # full run, writes BENCHMARKS.md (long)
    python scripts/bench.py --quick --out /tmp/BENCH_quick.md   # smoke test: BBC subset, minutes
    python scripts/bench.py --datasets bbc --skip memory,reference --imdb-epochs 1 ...

Contenders, each on the same train/valid/test split (textclf's own stratified
split of the recipe's data section), each in a fresh child process so that its
peak RSS is its own:

- textclf with its shipped recipes (``configs/{bbc,imdb}_{cnn,rnn}.yaml``),
  trained by the library's ``train`` (scripts/bench_textclf.py);
- the naive baseline, a Keras-tutorial TextCNN and LSTM (scripts/bench_naive.py);
- TF-IDF + LinearSVC and fastText (scripts/bench_peers.py).

Then process-level checks of the ``textclf`` command (``--help``, a
10-document ``predict`` with both engines, peak RSS of ``predict`` on a short
and a long input), an ablation of textclf's training levers on BBC, the NumPy
LSTM reference timing (scripts/bench_reference.py, when present), and a float32
matmul peak measured at the start and the end of the run. The report
(scripts/bench_report.py) goes to ``--out`` (written atomically) and a summary
to stdout; ``--json`` also keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench_common import (ROOT, SCRIPTS, Result, child_env, load_recipe_splits,  # noqa: E402
                          matmul_peak, one_line, read_json, run_process, write_json)
from bench_targets import counterpart, targets, time_to_naive  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "bbc": {"title": "BBC News", "cnn": "configs/bbc_cnn.yaml", "rnn": "configs/bbc_rnn.yaml",
            "needs": None},
    "imdb": {"title": "IMDB", "cnn": "configs/imdb_cnn.yaml", "rnn": "configs/imdb_rnn.yaml",
             "needs": SHARED_DATA / "imdb"},
}
SKIPPABLE = ("rows", "extras", "peers", "process", "memory", "ablation", "reference", "lstm")


@dataclass
class Settings:
    """Everything a run depends on; ``--quick`` only changes these numbers."""

    quick: bool
    out: Path
    workdir: Path
    datasets: list
    skip: set
    bbc_epochs: int | None  # None: each recipe's own train.epochs (early stopping on)
    imdb_epochs: int
    predict_docs: int  # bulk prediction, in-process
    numpy_predict_docs: int  # bulk prediction with textclf's NumPy engine
    memory_lines: tuple  # (short, long) inputs of the streaming-memory check
    ablation_epochs: int
    repeats: int  # whole-process timings: median of this many
    help_repeats: int
    matmul_repeats: int
    gpu: bool
    subsets: dict = field(default_factory=dict)  # quick: dataset -> (train docs, test docs)
    data_overrides: dict = field(default_factory=dict)  # dataset -> --set pointing at a subset
    command: str = ""
    from_json: Path | None = None  # re-render this run's raw numbers, measure nothing
    stop_after: float | None = None  # seconds: start no worker past this, still write the report
    ablation_match: str | None = None  # regex: only these lever variants (and "shipped")
    textclf_first: bool = False  # run textclf's rows (its LSTM first) before the naive ones
    started: float = field(default_factory=time.perf_counter)


def parse_args(argv=None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny subsets, 1 epoch, 200 prediction docs")
    parser.add_argument("--out", type=Path,
                        help="the report (default: BENCHMARKS.md; quick: a file in the "
                             "temporary folder, so a smoke test never replaces the real one)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--workdir", type=Path,
                        help="keep runs, models and logs here (default: a temporary folder, "
                             "removed at the end)")
    parser.add_argument("--datasets", help="comma list of: bbc, imdb (default: both; "
                                           "quick: bbc)")
    parser.add_argument("--skip", default="",
                        help=f"comma list of: {', '.join(SKIPPABLE)} (rows: every dataset's "
                             "textclf, naive and peer rows, e.g. for an ablation-only run; "
                             "extras: textclf's NumPy-engine and batch-32 predictions)")
    parser.add_argument("--epochs", type=int, help="BBC: max epochs for textclf and naive "
                                                   "(default: each recipe's own)")
    parser.add_argument("--imdb-epochs", type=int, help="IMDB epochs (default 2; quick 1)")
    parser.add_argument("--predict-docs", type=int, help="bulk prediction documents "
                                                         "(default 20000; quick 200)")
    parser.add_argument("--numpy-predict-docs", type=int,
                        help="bulk prediction documents for the NumPy engine (default 2000)")
    parser.add_argument("--memory-lines", help="short,long input lines for the predict "
                                               "memory check (default 10000,1000000)")
    parser.add_argument("--ablation-epochs", type=int, help="epochs per ablation variant (3)")
    parser.add_argument("--ablation-match", metavar="REGEX",
                        help="run only the ablation variants whose name matches (re.search), "
                             "beside the shipped recipe (a leased machine's short time)")
    parser.add_argument("--repeats", type=int, help="whole-process timings: runs each (3)")
    parser.add_argument("--stop-after", type=float, metavar="MINUTES",
                        help="start no new training or prediction worker after this many "
                             "minutes; the rest is reported as not run (a leased machine's "
                             "time limit)")
    parser.add_argument("--textclf-first", action="store_true",
                        help="run textclf's rows, its recurrent recipe first, before the "
                             "naive models' (on a machine whose speed drifts, target 6's row "
                             "then runs in the run's first minutes)")
    parser.add_argument("--gpu", action="store_true",
                        help="leave GPUs visible (default: CUDA_VISIBLE_DEVICES='' everywhere)")
    parser.add_argument("--from-json", type=Path,
                        help="measure nothing: rebuild the targets and the report from the "
                             "raw numbers an earlier run wrote with --json")
    args = parser.parse_args(argv)
    datasets = [d.strip() for d in (args.datasets or ("bbc" if args.quick else "bbc,imdb"))
                .split(",") if d.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    for name in datasets:
        if name not in DATASETS:
            parser.error(f"--datasets: unknown {name!r} (known: {', '.join(DATASETS)})")
    for name in skip:
        if name not in SKIPPABLE:
            parser.error(f"--skip: unknown {name!r} (known: {', '.join(SKIPPABLE)})")
    if args.ablation_match is not None:
        try:
            re.compile(args.ablation_match)
        except re.error as error:
            parser.error(f"--ablation-match: not a regular expression ({error}): "
                         f"{args.ablation_match!r}")
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    memory = pick(args.memory_lines, "10000,1000000", "2000,20000")
    try:
        memory_lines = tuple(int(n) for n in memory.split(","))
    except ValueError:
        parser.error(f"--memory-lines: expected two integers like 10000,1000000; got {memory!r}")
    out = args.out or (Path(tempfile.gettempdir()) / "BENCHMARKS_quick.md" if quick
                       else ROOT / "BENCHMARKS.md")
    return Settings(
        quick=quick, out=out.resolve(),
        workdir=(args.workdir.resolve() if args.workdir else None),
        datasets=datasets, skip=skip, bbc_epochs=pick(args.epochs, None, 1),
        imdb_epochs=pick(args.imdb_epochs, 2, 1),
        predict_docs=pick(args.predict_docs, 20000, 200),
        numpy_predict_docs=pick(args.numpy_predict_docs, 2000, 200),
        memory_lines=memory_lines,
        ablation_epochs=pick(args.ablation_epochs, 3, 2),
        repeats=pick(args.repeats, 3, 1), help_repeats=5 if not quick else 3,
        matmul_repeats=10 if not quick else 3, gpu=args.gpu,
        subsets={"bbc": (400, None), "imdb": (600, 300)} if quick else {},
        command=" ".join(["python", "scripts/bench.py", *(argv if argv is not None
                                                           else sys.argv[1:])]),
        from_json=args.from_json,
        stop_after=None if args.stop_after is None else args.stop_after * 60,
        ablation_match=args.ablation_match, textclf_first=args.textclf_first,
    ), args.json


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------
# The machine.
# --------------------------------------------------------------------------


def _native_kernels(tf) -> str:
    """"in use", or why textclf's native LSTM ops are not (textclf.kernels)."""
    from textclf.kernels import unusable_because

    return unusable_because(tf.__version__) or "in use"


def machine_info(gpu: bool) -> dict:
    """Date, CPU, cores, load, library versions, git commit."""
    from textclf.runtime import import_tensorflow

    tf = import_tensorflow(verbose=False)  # without TensorFlow's start-up log
    import keras

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M) or [None, ""])[1].split())

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    from textclf import __version__ as textclf_version
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}),
        "memory_gb": _memory_gb(),
        "load_start": os.getloadavg(),
        "gpus": gpu_names(tf) if gpu else [],
        "versions": {"Python": platform.python_version(), "TensorFlow": tf.__version__,
                     "Keras": keras.__version__, "NumPy": np.__version__,
                     "scikit-learn": version("scikit-learn"),
                     "fasttext-wheel": version("fasttext-wheel"), "textclf": textclf_version},
        "git": _git_commit(),
        "platform": platform.platform(),
        "native_kernels": _native_kernels(tf),
    }


def gpu_names(tf) -> list[str]:
    """Each visible GPU as its card's name and compute capability."""
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = ".".join(str(n) for n in details.get("compute_capability", ()))
        names.append(f"{details.get('device_name', device.name)} (compute capability "
                     f"{capability or 'unknown'})")
    return names


def _memory_gb() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemTotal:\s+(\d+)", text).group(1)) / 1024 / 1024
    except (OSError, AttributeError):
        return None


def _git_commit() -> str:
    """The commit and whether the tree had changes (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peak_of(settings: Settings, dtype: str = "float32") -> dict:
    device = "/GPU:0" if settings.gpu and _has_gpu() else None
    # A 2048 product is too small to fill a GPU's matrix units.
    return matmul_peak(8192 if device else 2048, settings.matmul_repeats, dtype, device)


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# --------------------------------------------------------------------------
# Data for --quick: small stratified subsets written as JSON Lines.
# --------------------------------------------------------------------------


def data_overrides(settings: Settings, dataset: str) -> list[str]:
    """``--set`` overrides pointing a recipe at a subset (quick), else none."""
    if dataset not in settings.subsets:
        return []
    from textclf.config import load_config
    from textclf.data import load_data

    n_train, n_test = settings.subsets[dataset]
    cfg = load_config(ROOT / DATASETS[dataset]["cnn"])
    folder = settings.workdir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = ["data.format=jsonl"]
    for split, n in (("train", n_train), ("test", n_test)):
        if n is None:
            continue
        source = load_data(cfg.data, split)
        path = folder / f"{dataset}_{split}.jsonl"
        write_subset(source.texts, source.labels, n, path)
        overrides.append(f"data.{split}={path}")
    return overrides


def write_subset(texts: list[str], labels: list[str], n: int, path: Path) -> None:
    """About ``n`` examples, the same share of each label, seeded; JSON Lines."""
    import json

    rng = np.random.default_rng(0)
    labels_array = np.asarray(labels)
    chosen = []
    classes = sorted(set(labels))
    for label in classes:
        members = np.flatnonzero(labels_array == label)
        chosen.extend(rng.permutation(members)[:max(2, n // len(classes))])
    with open(path, "w", encoding="utf-8") as out:
        for i in sorted(chosen):
            out.write(json.dumps({"text": texts[i], "label": labels[i]}, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------
# Workers.
# --------------------------------------------------------------------------


def run_worker(settings: Settings, script: str, task: str, spec: dict,
               env: dict | None = None) -> dict:
    """Run ``scripts/SCRIPT TASK`` in a fresh process (``env``: variables to set
    there); its result dict, with the process's peak RSS, or an ``error`` entry
    with the log's tail."""
    name = spec["name"]
    spec = {**spec, "workdir": str(settings.workdir)}
    spec_path = settings.workdir / "specs" / f"{name}.json"
    out_path = settings.workdir / "results" / f"{name}.json"
    log = settings.workdir / "logs" / f"{name}.log"
    for folder in (spec_path.parent, out_path.parent, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    write_json(spec_path, spec)
    elapsed = time.perf_counter() - settings.started
    if settings.stop_after is not None and elapsed > settings.stop_after:
        say(f"{name}: not run: --stop-after {settings.stop_after / 60:g} min has passed")
        return {"error": f"not run: past --stop-after ({settings.stop_after / 60:g} min)",
                "worker_seconds": 0.0}
    say(f"{name}: {script} {task} (log: {log})")
    done = run_process([sys.executable, str(SCRIPTS / script), task, "--spec", str(spec_path),
                        "--out", str(out_path)], log, child_env(settings.gpu, env))
    if done.returncode != 0 or not out_path.exists():
        tail = done.tail(6).replace("\n", " | ")
        say(f"{name}: FAILED (exit {done.returncode}): {tail[-400:]}")
        return {"error": f"failed (exit {done.returncode}): {tail[-300:]}",
                "worker_seconds": done.seconds}
    result = read_json(out_path)
    result["peak_rss_bytes"] = done.peak_rss_bytes
    result.setdefault("extra", {})["worker_seconds"] = done.seconds
    say(f"{name}: done in {done.seconds:.0f} s")
    return result


# The naive models' own budget per dataset: (epoch cap, early-stopping patience
# on validation loss). Fixed here, not read from textclf's recipes, so that a
# recipe change does not move the yardstick; these were the recipes' values
# in every benchmark run from commit 226c2ca to s18 (bbc_rnn then went to 5).
# --epochs / --imdb-epochs replace the cap on both sides.
NAIVE_BUDGET = {"bbc": {"cnn": (10, 3), "rnn": (8, 3)},
                "imdb": {"cnn": (6, 2), "rnn": (5, 2)}}


def missing_data(dataset: str) -> str | None:
    """Why a dataset cannot run (its folder under ../shared/data is missing), or None."""
    needs = DATASETS[dataset]["needs"]
    if needs is not None and not needs.is_dir():
        return f"{needs} is missing (the shared datasets are not part of the repository)"
    return None


def bench_dataset(settings: Settings, dataset: str) -> list[Result]:
    """Every contender on one dataset, in order: naive, textclf, peers. With
    ``--textclf-first`` textclf's rows run first, its recurrent recipe first
    of all; the results are listed in the usual order either way."""
    info = DATASETS[dataset]
    overrides = settings.data_overrides[dataset]
    epochs = settings.imdb_epochs if dataset == "imdb" else settings.bbc_epochs
    common = {"dataset": dataset, "predict_docs": settings.predict_docs, "seed": 13}

    def naive_row(family: str) -> Result:
        label = {"cnn": "naive Keras TextCNN", "rnn": "naive Keras LSTM"}[family]
        recipe = str(ROOT / info[family])
        max_epochs, patience = NAIVE_BUDGET[dataset][family]
        spec = {**common, "name": f"{dataset}_naive_{family}", "contender": label,
                "family": family, "recipe": recipe, "overrides": overrides,
                "epochs": epochs or max_epochs, "patience": patience}
        return _result(probed_worker(settings, "bench_naive.py", "train", spec), spec, "naive")

    def textclf_row(family: str) -> Result:
        recipe = str(ROOT / info[family])
        extra = ["train.verbose=epoch"] + ([f"train.epochs={epochs}"] if epochs else [])
        spec = {**common, "name": f"{dataset}_textclf_{family}",
                "contender": f"textclf {Path(recipe).stem}", "family": family,
                "recipe": recipe, "overrides": overrides + extra, "predict_batch": 256}
        result = _result(probed_worker(settings, "bench_textclf.py", "run", spec), spec,
                         "textclf")
        if result.error is None and "extras" not in settings.skip:
            more = {**spec, "name": f"{spec['name']}_predict_extras",
                    "run_dir": result.extra["run_dir"],
                    "numpy_predict_docs": settings.numpy_predict_docs,
                    "keras_batches": [32] if dataset == "bbc" and not settings.quick else []}
            raw = run_worker(settings, "bench_textclf.py", "predict_extras", more)
            result.predict_extra = raw.get("predict_extra") or {"error": raw.get("error")}
        return result

    rows = [("naive", "cnn"), ("naive", "rnn"), ("textclf", "cnn"), ("textclf", "rnn")]
    run_order = ([("textclf", "rnn"), ("textclf", "cnn"), ("naive", "cnn"), ("naive", "rnn")]
                 if settings.textclf_first else rows)
    done = {row: (naive_row if row[0] == "naive" else textclf_row)(row[1]) for row in run_order}
    results = [done[row] for row in rows]

    if "peers" not in settings.skip:
        recipe = str(ROOT / info["cnn"])
        peers = [("svm", "TF-IDF + LinearSVC", "svm", {}),
                 ("fasttext", "fastText (defaults)", "fasttext_default", {}),
                 ("fasttext", "fastText (lr 1.0, 25 epochs)", "fasttext_tuned",
                  {"lr": 1.0, "epoch": 25})]
        for task, label, name, params in peers:
            spec = {**common, "name": f"{dataset}_{name}", "contender": label,
                    "family": task, "recipe": recipe, "overrides": overrides, "params": params}
            results.append(_result(run_worker(settings, "bench_peers.py", task, spec), spec,
                                   "peer"))
    return results


def probed_worker(settings: Settings, script: str, task: str, spec: dict) -> dict:
    """:func:`run_worker` for a training row, with the matmul peak probed in
    this process just before and just after it (``extra["speed_probe"]``,
    GFLOP/s). This machine's speed drifts, up to 2x within an hour on some
    VMs; the run's peak alone cannot tell a slow row from a slow phase."""
    before = peak_of(settings)["tf_gflop_per_s"]
    raw = run_worker(settings, script, task, spec)
    if "contender" in raw:  # no row (failed, or not run past --stop-after): nothing to probe
        after = peak_of(settings)["tf_gflop_per_s"]
        raw.setdefault("extra", {})["speed_probe"] = {"before": before, "after": after}
    return raw


def _result(raw: dict, spec: dict, kind: str) -> Result:
    if "contender" not in raw:  # the worker failed before writing its row
        return Result(contender=spec["contender"], dataset=spec["dataset"],
                      family=spec["family"], kind=kind, error=raw.get("error"))
    return Result.from_dict(raw)


# --------------------------------------------------------------------------
# Whole-process checks of the command.
# --------------------------------------------------------------------------


def textclf_command() -> list[str]:
    """The installed ``textclf`` script beside this Python, else ``python -m textclf.cli``."""
    script = Path(sys.executable).parent / "textclf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "textclf.cli"]


def timed(settings: Settings, label: str, command: list[str], repeats: int) -> dict:
    """Median and best wall time, and the largest peak RSS, of ``repeats`` fresh runs."""
    runs = []
    log = settings.workdir / "logs" / (re.sub(r"\W+", "_", label).strip("_") + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(repeats):
        done = run_process(command, log, child_env(settings.gpu))
        if done.returncode != 0:
            return {"label": label, "command": _shown(command),
                    "error": f"exit {done.returncode}: {done.tail(3)[-300:]}"}
        runs.append(done)
    seconds = [r.seconds for r in runs]
    return {"label": label, "command": _shown(command), "runs": repeats,
            "median_s": statistics.median(seconds), "min_s": min(seconds),
            "peak_rss_bytes": max(r.peak_rss_bytes for r in runs)}


def _shown(command: list[str]) -> str:
    """A command for the report, with local paths shortened."""
    text = " ".join(command)
    text = text.replace(sys.executable, "python").replace(str(ROOT) + "/", "")
    return re.sub(r"\S*/(textclf-bench-\w+|bench-work)/", "WORK/", text)


def process_checks(settings: Settings, results: list[Result]) -> dict:
    """``--help``; 10-document predict per engine; naive and fastText equivalents."""
    out = {"help": None, "predict10": []}
    say("process: textclf --help")
    out["help"] = timed(settings, "textclf --help", textclf_command() + ["--help"],
                        settings.help_repeats)
    bbc = {(r.kind, r.family): r for r in results if r.dataset == "bbc" and not r.error}
    test_texts = bbc_test_texts(settings)
    if not test_texts:
        return out
    ten = settings.workdir / "predict10.txt"
    ten.write_text("".join(one_line(t) + "\n" for t in test_texts[:10]), encoding="utf-8")
    answer = settings.workdir / "predict10.out"
    for family in ("cnn", "rnn"):
        run = bbc.get(("textclf", family))
        if run is None:
            continue
        for engine in ("keras", "numpy"):
            label = f"textclf predict, 10 docs, {family}, --engine {engine}"
            say(f"process: {label}")
            out["predict10"].append(timed(settings, label, textclf_command() + [
                "predict", run.extra["run_dir"], str(ten), "--output", str(answer), "--force",
                "--engine", engine], settings.repeats))
    for family in ("cnn", "rnn"):
        naive = bbc.get(("naive", family))
        if naive is not None:
            model = "TextCNN" if family == "cnn" else "LSTM"
            label = f"naive Keras {model}: load + predict 10 docs"
            say(f"process: {label}")
            out["predict10"].append(timed(settings, label, [
                sys.executable, str(SCRIPTS / "bench_naive.py"), "predict",
                naive.extra["model_path"], str(ten), str(answer)], settings.repeats))
    fast = [r for r in results if r.dataset == "bbc" and r.family == "fasttext" and not r.error
            and r.extra.get("params")]
    if fast:
        label = "fastText: load + predict 10 docs"
        say(f"process: {label}")
        out["predict10"].append(timed(settings, label, [
            sys.executable, str(SCRIPTS / "bench_peers.py"), "fasttext-predict",
            fast[0].extra["model_path"], str(ten), str(answer)], settings.repeats))
    return out


def bbc_test_texts(settings: Settings) -> list[str]:
    if "bbc" not in settings.datasets:
        return []
    _, splits = load_recipe_splits(str(ROOT / DATASETS["bbc"]["cnn"]),
                                   settings.data_overrides["bbc"])
    return splits.test.texts


def memory_check(settings: Settings, results: list[Result]) -> dict:
    """Peak RSS of ``textclf predict`` on a short and a long file of short lines."""
    run = next((r for r in results if r.dataset == "bbc" and r.kind == "textclf"
                and r.family == "cnn" and not r.error), None)
    texts = bbc_test_texts(settings)
    if run is None or not texts:
        return {"error": "no BBC textclf cnn run to predict with"}
    sentences = [" ".join(s.split()[:12]) for t in texts for s in re.split(r"(?<=[.!?])\s+", t)
                 if len(s.split()) >= 3]
    rows = []
    for n in settings.memory_lines:
        path = settings.workdir / f"lines_{n}.txt"
        with open(path, "w", encoding="utf-8") as out:
            for i in range(n):
                out.write(sentences[i % len(sentences)] + "\n")
        answer = settings.workdir / f"lines_{n}.jsonl"
        label = f"textclf predict, {n:,} short lines, cnn, --engine keras"
        say(f"memory: {label}")
        row = timed(settings, label, textclf_command() + [
            "predict", run.extra["run_dir"], str(path), "--output", str(answer), "--force"], 1)
        row.update(lines=n, input_bytes=path.stat().st_size)
        if "median_s" in row:
            row["lines_per_s"] = n / row["median_s"]
        rows.append(row)
        path.unlink(missing_ok=True)
        answer.unlink(missing_ok=True)
    return {"rows": rows}


# --------------------------------------------------------------------------
# Ablation and the reference engine.
# --------------------------------------------------------------------------


def native_kernels_built() -> bool:
    """True when textclf's native LSTM ops are compiled here for this
    TensorFlow and CPU (make kernels), whatever TEXTCLF_NATIVE_KERNELS says."""
    from textclf.kernels import build_problem
    from textclf.runtime import import_tensorflow

    return build_problem(import_tensorflow().__version__) is None


def lever_variants(recipe: Path, family: str, gpu: bool) -> list[dict]:
    """The shipped recipe, then each training lever flipped alone.

    A lever the recipe uses is turned off (what it buys), one it leaves off
    is turned on (what it would buy): bucketing, stop-word removal (off only),
    MaxPooledConv1D (bias and
    activation after the max), its gradient from the winning windows alone
    (``model.pool_gradient``), textclf's fused recurrent loop (CPU only: on a
    GPU both settings run cuDNN's kernel) and, for an LSTM, its native ops
    (the graph loop instead, where they are built; the switch turns off the
    native Adam op too), the native Adam op for the embedding (CPU, where
    built), Adam's fused kernel (Keras' class instead), one training step per
    call into TensorFlow (where the recipe groups several), batch 32 <-> 64, the mixed
    precision policies (on a GPU float32, float16 and bfloat16 each), and on
    a GPU the TextCNN's shape levers first (widths not rounded, XLA on,
    cuDNN's per-shape algorithm search off; a variant's ``env`` is set in its
    process).
    """
    from textclf.config import load_config

    config = load_config(recipe)
    train, model = config.train, config.model
    variants = [{"name": "shipped", "overrides": []}]
    if train.bucketing:
        variants.append({"name": "bucketing off", "overrides": ["train.bucketing=false"]})
    if config.text.stop_words is not None:
        variants.append({"name": "stop words kept", "overrides": ["text.stop_words=null"]})
    if family == "cnn" and model.pool_in_conv:
        variants.append({"name": "Conv1D then pooling", "overrides": ["model.pool_in_conv=false"]})
        if model.pool_gradient == "argmax":
            variants.append({"name": "max's gradient through dense backprops",
                             "overrides": ["model.pool_gradient=shared"]})
    if (family == "rnn" and model.cell in ("lstm", "gru") and model.cpu_loop == "auto"
            and not gpu):
        variants.append({"name": f"Keras {model.cell.upper()} loop",
                         "overrides": ["model.cpu_loop=keras"]})
        if model.cell == "lstm" and native_kernels_built():
            # FusedLSTM's graph loop (batch slices, one thread per op) instead.
            # The switch turns off the whole library, the Adam op with it.
            variants.append({"name": "native ops off (graph loop, TensorFlow's Adam ops)",
                             "overrides": [], "env": {"TEXTCLF_NATIVE_KERNELS": "0"}})
    if train.optimizer == "adam":
        if native_kernels_built() and not gpu:
            variants.append({"name": "native Adam op off (TensorFlow's Adam ops)",
                             "overrides": [], "env": {"TEXTCLF_NATIVE_ADAM": "0"}})
        variants.append({"name": "Keras' Adam", "overrides": ["train.optimizer=keras_adam"]})
    if train.steps_per_execution > 1:
        variants.append({"name": "one step per call", "overrides": ["train.steps_per_execution=1"]})
    other_batch = 64 if train.batch_size != 64 else 32
    variants.append({"name": f"batch {other_batch}",
                     "overrides": [f"train.batch_size={other_batch}"]})
    if gpu:  # every policy the recipe does not already resolve to on this card
        from textclf.precision import resolve_mixed_precision

        current = resolve_mixed_precision(train.mixed_precision)[0]
        policies = [p for p in ("none", "mixed_float16", "mixed_bfloat16") if p != current]
    else:
        policies = ["mixed_bfloat16" if train.mixed_precision == "none" else "none"]
    for policy in policies:
        variants.append({"name": "float32 (no mixed precision)" if policy == "none" else policy,
                         "overrides": [f"train.mixed_precision={policy}"]})
    if gpu and family == "cnn" and train.bucketing:
        # TensorFlow times every cuDNN convolution algorithm for each new input
        # shape (and XLA compiles once per shape); textclf.compilation's GPU
        # defaults bound the shapes and keep XLA off. Each flipped alone:
        variants[1:1] = [
            {"name": "widths not rounded to 64", "overrides": ["train.pad_to_multiple_of=1"]},
            {"name": "XLA on", "overrides": ["train.jit_compile=true"]},
            # Fewer shapes, fewer compiles: at most 4 widths for max_length 1,000.
            {"name": "XLA on, widths rounded to 256",
             "overrides": ["train.jit_compile=true", "train.pad_to_multiple_of=256"]},
            {"name": "cuDNN autotuning off", "overrides": [],
             "env": {"TF_CUDNN_USE_AUTOTUNE": "0"}}]
    return variants


def ablation(settings: Settings) -> list[dict]:
    """Each of textclf's training levers alone, steady-state ex/s on BBC."""
    if "bbc" not in settings.datasets:
        return []
    out = []
    for family in ("cnn", "rnn"):
        recipe = ROOT / DATASETS["bbc"][family]
        variants = lever_variants(recipe, family, settings.gpu)
        if settings.quick:  # the code paths only: the baseline and one dtype switch
            variants = variants[:1] + variants[-1:]
        if settings.ablation_match:
            variants = variants[:1] + [v for v in variants[1:]
                                       if re.search(settings.ablation_match, v["name"])]
        rows = []
        # One process per variant: a fresh TensorFlow chooses its own threads
        # (textclf.runtime.fused_loops_get_one_thread_per_op).
        for index, variant in enumerate(variants):
            spec = {"name": f"ablation_bbc_{family}_{index}", "recipe": str(recipe),
                    "overrides": settings.data_overrides["bbc"] + ["train.verbose=epoch"],
                    "epochs": settings.ablation_epochs, "variants": [variant]}
            raw = run_worker(settings, "bench_textclf.py", "ablation", spec,
                             variant.get("env"))
            rows += raw.get("variants") or [{"name": variant["name"],
                                            "overrides": variant["overrides"],
                                            "env": variant.get("env") or {},
                                            "error": raw.get("error", "no result")}]
        out.append({"name": f"ablation_bbc_{family}", "recipe": str(recipe), "family": family,
                    "epochs": settings.ablation_epochs, "variants": rows})
    return out


def lstm_layer_check(settings: Settings) -> dict:
    """scripts/bench_lstm.py (one LSTM layer: Keras' CPU loop vs FusedLSTM)."""
    options = ["--repeats", "2", "--steps", "50"] if settings.quick else ["--repeats", "9"]
    result = {"lines": [], "seconds": 0.0}
    # TensorFlow's default threads (what textclf trains with on its native LSTM
    # ops), then one thread per op (what it trains with on the graph loop).
    for threads in ("0", "1"):
        log = settings.workdir / "logs" / f"bench_lstm_{threads}.log"
        command = [sys.executable, str(SCRIPTS / "bench_lstm.py"), *options,
                   "--intra-op-threads", threads]
        say(f"lstm: {' '.join(command[1:])}")
        done = run_process(command, log, child_env(settings.gpu))
        text = log.read_text(encoding="utf-8", errors="replace")
        lines = [line.rstrip() for line in text.splitlines()
                 if line.startswith("LSTM layer") or line.startswith("  batch")]
        result["lines"] += [f"$ python scripts/bench_lstm.py --intra-op-threads {threads}"] + lines
        result["seconds"] += done.seconds
        if done.returncode != 0 or not lines:
            result["error"] = f"exit {done.returncode}: {done.tail(3)[-300:]}"
    return result


def reference_check(settings: Settings) -> dict:
    """scripts/bench_reference.py (NumPy LSTM forward+backward vs tf.GradientTape)."""
    script = SCRIPTS / "bench_reference.py"
    if not script.exists():
        return {"error": "scripts/bench_reference.py is not there yet"}
    log = settings.workdir / "logs" / "bench_reference.log"
    say("reference: scripts/bench_reference.py")
    options = ["--repeats", "3"] if settings.quick and "--repeats" in script.read_text() else []
    done = run_process([sys.executable, str(script), *options], log, child_env(settings.gpu))
    text = log.read_text(encoding="utf-8", errors="replace")
    ratios = {m.group(1): float(m.group(2))
              for m in re.finditer(r"numpy/(\w+)\s*=\s*([0-9.]+)", text)}
    lines = [line.rstrip() for line in text.splitlines()
             if line.strip() and ("numpy" in line or "LSTM" in line or "tf." in line)]
    result = {"returncode": done.returncode, "ratios": ratios, "lines": lines[-6:],
              "seconds": done.seconds}
    if done.returncode != 0 or not ratios:
        result["error"] = f"exit {done.returncode}; no 'numpy/X = R' line: {done.tail(3)[-300:]}"
    return result


# --------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------


def main(argv=None) -> int:
    settings, json_path = parse_args(argv)
    if settings.from_json:
        return rerender(settings.from_json, settings.out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not settings.gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    keep = settings.workdir is not None
    if settings.workdir is None:
        settings.workdir = Path(tempfile.mkdtemp(prefix="textclf-bench-"))
    settings.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say(f"work folder {settings.workdir}; report to {settings.out}"
        + (" (QUICK: smoke-test numbers only)" if settings.quick else ""))
    try:
        report = run_all(settings)
    finally:
        if not keep:
            shutil.rmtree(settings.workdir, ignore_errors=True)
    report["total_seconds"] = time.perf_counter() - started
    from bench_report import render, summary

    text = render(report)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = settings.out.with_name(f".{settings.out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, settings.out)
    if json_path:
        write_json(json_path, report)
    print(summary(report))
    say(f"wrote {settings.out} in {report['total_seconds']:.0f} s")
    return 0


def run_peak(peaks: dict, results: list[Result]) -> float:
    """The float32 peak that percentages use: the highest of the run's start and
    end measurements and the probes around its training rows, so that a slow
    start or end cannot inflate every share."""
    probes = [value for r in results for value in (r.extra.get("speed_probe") or {}).values()]
    return max([peaks["start"]["tf_gflop_per_s"], peaks["end"]["tf_gflop_per_s"], *probes])


def rerender(json_path: Path, out: Path) -> int:
    """The report of an earlier run (its ``--json`` file), targets recomputed with
    this version of bench_targets; the run's own command stays in the header."""
    from bench_report import render

    report = read_json(json_path)
    results = [Result.from_dict(r) for r in report["results"]]
    report["peak_gflops"] = run_peak(report["peaks"], results)
    report["targets"] = targets(results, report.get("process") or {},
                                report.get("memory") or {}, report.get("reference") or {},
                                report["peak_gflops"], report["machine"].get("gpus"))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render(report), encoding="utf-8")
    os.replace(tmp, out)
    say(f"wrote {out} from {json_path}")
    return 0


def run_all(settings: Settings) -> dict:
    say("machine and matmul peak")
    machine = machine_info(settings.gpu)
    peaks = {"start": peak_of(settings), "bf16": None}
    if machine["bf16_flags"] or settings.gpu:
        peaks["bf16"] = peak_of(settings, "bfloat16")
    results: list[Result] = []
    skipped = {}
    for dataset in settings.datasets:
        settings.data_overrides[dataset] = []
        skipped[dataset] = missing_data(dataset)
        if skipped[dataset]:
            say(f"{dataset}: skipped: {skipped[dataset]}")
            continue
        settings.data_overrides[dataset] = data_overrides(settings, dataset)
        if "rows" not in settings.skip:
            results.extend(bench_dataset(settings, dataset))
    process = process_checks(settings, results) if "process" not in settings.skip else {}
    memory = memory_check(settings, results) if "memory" not in settings.skip else {}
    ablations = ablation(settings) if "ablation" not in settings.skip else []
    reference = reference_check(settings) if "reference" not in settings.skip else {}
    lstm_layer = lstm_layer_check(settings) if "lstm" not in settings.skip else {}
    say("matmul peak again")
    peaks["end"] = peak_of(settings)
    machine["load_end"] = os.getloadavg()
    peak = run_peak(peaks, results)
    for result in results:
        result.extra["time_to_naive_s"] = time_to_naive(result, counterpart(results, result))
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set)
                         else v) for k, v in vars(settings).items()},
        "subsets": settings.subsets, "machine": machine,
        "datasets": {k: {"title": v["title"], "cnn": v["cnn"], "rnn": v["rnn"]}
                     for k, v in DATASETS.items()}, "peaks": peaks,
        "peak_gflops": peak, "results": [r.to_dict() for r in results], "skipped": skipped,
        "process": process, "memory": memory, "ablation": ablations,
        "reference": reference, "lstm_layer": lstm_layer,
        "targets": targets(results, process, memory, reference, peak, machine["gpus"]),
    }


if __name__ == "__main__":
    sys.exit(main())
