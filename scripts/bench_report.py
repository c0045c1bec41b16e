"""BENCHMARKS.md from the raw numbers of scripts/bench.py (``render``), and the
short summary it prints (``summary``). Formatting only: every number comes in
the report dict."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import Result, find, ran_cudnn, waits_before_reaching  # noqa: E402

DASH = "–"


def fastest_epoch_ex_per_s(result: Result) -> float | None:
    """Training examples/s of the fastest epoch after the first (None without epoch times).

    A cross-check of the median: an epoch's time includes the wait for its first
    batch, and with Keras' own array pipeline (the naive models) tf.data's
    autotune thread makes some epochs start seconds late (a 5 s epoch becomes
    10 s), so a median over few epochs can land on either side. Each model's
    fastest epoch is its least disturbed one.
    """
    times = [e["train"] for e in (result.extra.get("epoch_times") or [])[1:] if e.get("train")]
    if not times or not result.n_train:
        return None
    return result.n_train / min(times)


def _f(value, fmt: str = "{:,.0f}", suffix: str = "") -> str:
    return DASH if value is None else fmt.format(value) + suffix


def _pct(value) -> str:
    return DASH if value is None else f"{value:.1%}"


def _mb(value) -> str:
    return DASH if value is None else f"{value / 2**20:,.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _of_peak(gflops, peak) -> str:
    if gflops is None:
        return DASH
    return f"{gflops:,.1f} ({gflops / peak:.0%})" if peak else f"{gflops:,.1f}"


# --------------------------------------------------------------------------


def render(report: dict) -> str:
    settings, machine, peaks = report["settings"], report["machine"], report["peaks"]
    peak = report["peak_gflops"]
    results = [Result.from_dict(r) for r in report["results"]]
    out = ["# Benchmarks", ""]
    if settings["quick"]:
        out += ["> **QUICK MODE (`--quick`): tiny subsets, 1 training epoch (2 per ablation "
                "variant), 200 prediction documents. These numbers only show that the "
                "benchmark runs; they measure nothing.**", ""]
    out += header(report, settings, machine, peaks)
    for dataset in settings["datasets"]:
        out += dataset_section(report, dataset, [r for r in results if r.dataset == dataset],
                               peak)
    out += targets_section(report["targets"])
    out += ablation_section(report.get("ablation") or [], results, peak, peaks)
    out += process_section(report.get("process") or {}, report.get("memory") or {})
    out += script_output_section(
        "One LSTM layer: Keras' CPU loop against FusedLSTM (scripts/bench_lstm.py)",
        report.get("lstm_layer") or {})
    out += script_output_section("NumPy reference LSTM (scripts/bench_reference.py)",
                                 report.get("reference") or {})
    out += notes_section(report)
    return "\n".join(out).rstrip() + "\n"


def header(report, settings, machine, peaks) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    load = machine.get("load_start"), machine.get("load_end")
    lines = [
        f"Written by `{settings['command']}` (`make bench` runs it without options) on "
        f"{machine['date']}, in {report.get('total_seconds', 0) / 60:.0f} minutes.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable by this process), "
        f"{_f(machine.get('memory_gb'), '{:.0f}', ' GB')} RAM; bf16 CPU flags: "
        f"{', '.join(machine['bf16_flags']) or 'none'}"
        + (f"; GPUs: {', '.join(machine['gpus'])}" if machine.get("gpus") else "; no GPU used")
        + (f"; textclf's native LSTM ops: {machine['native_kernels']}"
           if "native_kernels" in machine else "")
        + ".",
        f"- Load average (1, 5, 15 min) at the start {_load(load[0])}, at the end "
        f"{_load(load[1])} (the end includes this run)."
        + (" **The machine was busy when the run started: these numbers are not comparable "
           "with an idle machine's.**" if load[0] and load[0][0] > 0.5 * machine["usable_cores"]
           else ""),
        f"- Software: {versions}; {machine['platform']}; textclf commit {machine['git']}.",
        f"- float32 matmul peak ({_size(peaks['start'])}, best of {peaks['start']['repeats']}"
        + ("; TF32, TensorFlow's default for float32 on a GPU" if machine.get("gpus") else "")
        + "): "
        f"TensorFlow {peaks['start']['tf_gflop_per_s']:,.1f} GFLOP/s at the start, "
        f"{peaks['end']['tf_gflop_per_s']:,.1f} at the end; NumPy "
        f"{peaks['start'].get('numpy_gflop_per_s', 0):,.1f}."
        + (f" bfloat16 (TensorFlow): {peaks['bf16']['tf_gflop_per_s']:,.1f} GFLOP/s."
           if peaks.get("bf16") else "")
        + f" Percentages of peak below use {report['peak_gflops']:,.1f} GFLOP/s"
        + (", the highest of these and of the probes around each training row (FLOP table)."
           if any((r.get("extra") or {}).get("speed_probe") for r in report["results"])
           else "."),
        "",
    ]
    return lines


def _size(peak: dict) -> str:
    size = peak.get("size", 2048)  # runs before the size was recorded used 2048
    return f"{size} x {size}"


def _load(values) -> str:
    return DASH if not values else " / ".join(f"{v:.2f}" for v in values)


def dataset_section(report, dataset: str, results: list[Result], peak) -> list[str]:
    info = report["datasets"][dataset]
    out = [f"## {info['title']}", ""]
    skipped = (report.get("skipped") or {}).get(dataset)
    if skipped:
        return out + [f"Not run: {skipped}.", ""]
    first = next((r for r in results if r.n_train), None)
    if first:
        out.append(f"Split: {first.n_train:,} training and {first.n_test:,} test documents, "
                   f"the same for every row (textclf's stratified split of "
                   f"`{info['cnn']}`'s data section).")
    subset = report["subsets"].get(dataset)
    if subset:
        out.append(f"**Quick subset**: about {subset[0]} training-source documents"
                   + (f" and {subset[1]} test documents" if subset[1] else "") + ".")
    settings = report["settings"]
    epochs = settings["imdb_epochs"] if dataset == "imdb" else settings["bbc_epochs"]
    if epochs:
        out.append(f"Epochs capped at {epochs} for textclf and the naive models "
                   f"(`{'--imdb-epochs' if dataset == 'imdb' else '--epochs'}`): accuracies "
                   "are not those of a full training.")
    out.append("")
    header = ["contender", "test acc", "macro-F1", "epochs", "train s", "train ex/s",
              "fastest epoch ex/s", "s to naive acc", "predict docs/s", "train GFLOP/s (% peak)",
              "predict GFLOP/s (% peak)", "peak RSS MB", "model MB"]
    rows = []
    for r in results:
        if r.error:
            rows.append([r.contender, f"*{r.error}*"] + [DASH] * (len(header) - 2))
            continue
        train = r.flops.get("train") or {}
        predict = r.flops.get("predict") or {}
        rows.append([
            r.contender, _pct(r.test_accuracy), _f(r.macro_f1, "{:.3f}"), _f(r.epochs),
            _f(r.train_seconds, "{:,.1f}"), _f(r.steady_ex_per_s),
            _f(fastest_epoch_ex_per_s(r)),
            _f(r.extra.get("time_to_naive_s"), "{:,.1f}") if r.extra.get("time_to_naive_s")
            is not None else "not reached",
            _f(r.predict_docs_per_s), _of_peak(train.get("executed_gflop_per_s"), peak),
            _of_peak(predict.get("executed_gflop_per_s"), peak), _mb(r.peak_rss_bytes),
            _mb(r.model_bytes)])
    out += _table(header, rows)
    out += ratio_lines(results)
    out += kernel_lines(results)
    extra = [(r.contender, k, v) for r in results if not r.error
             for k, v in r.predict_extra.items()]
    if extra:
        out += ["Other prediction settings (same documents unless said):", ""]
        out += _table(["contender", "engine / batch", "docs/s"],
                      [[c, k, _f(v) if isinstance(v, (int, float)) else f"*{v}*"]
                       for c, k, v in extra])
    out += flops_table(results, peak)
    return out


def ratio_lines(results: list[Result]) -> list[str]:
    """textclf against its naive counterpart, one line per architecture."""
    lines = []
    for family, name in (("cnn", "TextCNN"), ("rnn", "recurrent")):
        dataset = results[0].dataset if results else None
        tool, naive = find(results, dataset, "textclf", family), find(results, dataset, "naive",
                                                                       family)
        if not tool or not naive or not naive.steady_ex_per_s:
            continue
        ttn, ttn_naive = tool.extra.get("time_to_naive_s"), naive.extra.get("time_to_naive_s")
        waited = waits_before_reaching(naive, naive.test_accuracy) if ttn_naive else 0.0
        fast_tool, fast_naive = fastest_epoch_ex_per_s(tool), fastest_epoch_ex_per_s(naive)
        lines.append(
            f"- {name}: textclf trains at {tool.steady_ex_per_s / naive.steady_ex_per_s:.2f}x "
            f"the naive model's examples/s (medians"
            + (f"; {fast_tool / fast_naive:.2f}x fastest epoch against fastest epoch"
               if fast_tool and fast_naive else "")
            + "), predicts at "
            f"{tool.predict_docs_per_s / naive.predict_docs_per_s:.2f}x its documents/s, "
            f"test accuracy {100 * (tool.test_accuracy - naive.test_accuracy):+.1f} points"
            + (f", reaches the naive accuracy in {ttn / ttn_naive:.2f}x its time "
               f"({ttn / (ttn_naive - waited):.2f}x without the naive model's waits for "
               f"first batches)"
               if ttn is not None and ttn_naive else ", does not reach the naive accuracy"
               if ttn is None else "")
            + f"; time per epoch outside the training batches (validation, callbacks, "
              f"checkpoint): {_overhead(tool)} s vs {_overhead(naive)} s; waiting for an "
              f"epoch's first batch: {_first_batch_waits(tool)} vs {_first_batch_waits(naive)}.")
    return lines + [""] if lines else []


def kernel_lines(results: list[Result]) -> list[str]:
    """Which op ran each recurrent row's recurrence in a training step
    (bench_common.recurrent_ops): cuDNN's fused kernel or a step loop."""
    lines = [f"- {r.contender}: the recurrence ran as "
             + ", ".join(f"`{op}`" for op in r.extra["recurrent_ops"])
             + (" (cuDNN's fused kernel, forward and backward)"
                if ran_cudnn(r.extra["recurrent_ops"])
                else " (a loop over the time steps)") + "."
             for r in results if r.extra.get("recurrent_ops")]
    return lines + [""] if lines else []


def _first_batch_waits(result: Result) -> str:
    """Seconds from an epoch's start to its first training batch, over epochs 2 onward:
    'total s (n epochs over 1 s)'. With tf.data autotuning on (Keras' own array
    pipeline), deleting the previous epoch's iterator waits for the autotune
    thread: seconds-long stalls at some epoch starts (textclf.batching)."""
    waits = [t.get("first_batch_wait") for t in (result.extra.get("epoch_times") or [])[1:]]
    waits = [w for w in waits if w is not None]
    if not waits:
        return DASH
    return f"{sum(waits):.1f} s ({sum(w > 1 for w in waits)} of {len(waits)} epochs over 1 s)"


def _overhead(result: Result) -> str:
    """Mean seconds per epoch between the last training batch and the epoch's end."""
    times = result.extra.get("epoch_times") or []
    if not times:
        return DASH
    return f"{sum(t['total'] - t['train'] for t in times) / len(times):.1f}"


def flops_table(results: list[Result], peak) -> list[str]:
    rows = []
    for r in results:
        if r.error or not r.flops:
            continue
        t, p = r.flops.get("train") or {}, r.flops.get("predict") or {}
        rows.append([r.contender, r.flops.get("architecture", DASH),
                     _of_peak(t.get("executed_gflop_per_s"), peak),
                     _of_peak(t.get("useful_gflop_per_s"), peak), _pct(t.get("padded_share")),
                     _of_peak(p.get("executed_gflop_per_s"), peak),
                     _of_peak(p.get("useful_gflop_per_s"), peak), _pct(p.get("padded_share")),
                     _probe(r)])
    if not rows:
        return []
    return ["FLOP efficiency (GFLOP/s and share of the matmul peak; executed = at the padded "
            "widths the kernels ran, useful = at the real token counts; padding = share of "
            "executed work spent on padding; matmul probe = the 2048 x 2048 peak measured "
            "just before / just after the row's worker, GFLOP/s, to show whether the "
            "machine was slow around it):", ""] + _table(
        ["contender", "model", "train executed", "train useful", "train padding",
         "predict executed", "predict useful", "predict padding", "matmul probe"], rows)


def _probe(result: Result) -> str:
    probe = result.extra.get("speed_probe")
    return f"{probe['before']:,.1f} / {probe['after']:,.1f}" if probe else DASH


def targets_section(rows: list[dict]) -> list[str]:
    mark = {True: "yes", False: "**no**", None: DASH}
    return ["## Targets (issue 7, ratios from this run, BBC News)", ""] + _table(
        ["#", "target", "measured", "met?"],
        [[r["number"], r["target"], r["measured"], mark[r["met"]]] for r in rows])


def ablation_section(ablations: list[dict], results: list[Result], peak, peaks) -> list[str]:
    if not ablations:
        return []

    out = ["## Ablation: textclf's training levers, one at a time (BBC News)", "",
           "Each variant trains the shipped recipe with one override for the same number of "
           "epochs (no early stop), in one process per model; examples/s is the median of "
           "the epochs after the first. `bucketing off` pads every batch to the recipe's "
           "`text.max_length` (1,000 tokens for bbc_cnn, 600 for bbc_rnn; the naive models "
           "cut at 400). The naive row is the main table's. Percentages "
           "are of the float32 matmul peak (a bfloat16 variant can pass 100%).", ""]
    for block in ablations:
        family = block.get("family")
        name = "TextCNN (bbc_cnn)" if family == "cnn" else "LSTM (bbc_rnn)"
        if block.get("error"):
            out += [f"### {name}", "", f"Not measured: {block['error']}", ""]
            continue
        variants = block["variants"]
        base = next((v for v in variants if v["name"] == "shipped" and v.get("ex_per_s")), None)
        naive = find(results, "bbc", "naive", family)
        rows = []
        for v in variants:
            if v.get("error"):
                rows.append([v["name"], _overrides(v), f"*{v['error']}*", DASH, DASH, DASH, DASH])
                continue
            rows.append([v["name"], _overrides(v), _f(v["ex_per_s"]),
                         _f(v["ex_per_s"] / base["ex_per_s"], "{:.2f}x") if base else DASH,
                         _f(v["ex_per_s"] / naive.steady_ex_per_s, "{:.2f}x") if naive else DASH,
                         _pct(v.get("padded_share")),
                         _of_peak(v.get("executed_gflop_per_s"), peak)])
        if naive:
            train = naive.flops.get("train") or {}
            rows.append(["naive Keras (main table)", DASH, _f(naive.steady_ex_per_s),
                         _f(naive.steady_ex_per_s / base["ex_per_s"], "{:.2f}x") if base else DASH,
                         "1.00x", _pct(train.get("padded_share")),
                         _of_peak(train.get("executed_gflop_per_s"), peak)])
        out += [f"### {name}, {block['epochs']} epochs per variant", ""]
        shipped = find(results, "bbc", "textclf", family)
        if shipped:
            e = shipped.extra
            out += [f"Shipped recipe: batch {e.get('batch_size')}, bucketing "
                    f"{'on' if e.get('bucketing') else 'off'}, mixed precision "
                    f"{e.get('mixed_precision')}.", ""]
        out += _table(["variant", "override", "train ex/s", "x shipped", "x naive",
                       "padding", "executed GFLOP/s (% peak)"], rows)
        out += what_bought_what(variants, base, naive, peaks)
    return out


def _overrides(variant: dict) -> str:
    changes = [*variant["overrides"], *(f"{k}={v} (environment)"
                                        for k, v in (variant.get("env") or {}).items())]
    return ", ".join(f"`{c}`" for c in changes) or "(recipe as shipped)"


def what_bought_what(variants: list[dict], base: dict | None, naive: Result | None,
                     peaks: dict) -> list[str]:
    """Sentences computed from the table: each lever's factor, and what is left."""
    if not base:
        return []
    by_name = {v["name"]: v for v in variants if v.get("ex_per_s")}
    lines = []
    off = by_name.get("bucketing off")
    if off:
        lines.append(f"- Length bucketing: {base['ex_per_s'] / off['ex_per_s']:.2f}x over "
                     f"batches padded to `text.max_length` (padding "
                     f"{_pct(off.get('padded_share'))} -> {_pct(base.get('padded_share'))} "
                     "of executed work).")
        if naive and naive.steady_ex_per_s:
            lines.append(f"- textclf with fixed-width batches vs the naive model: "
                         f"{off['ex_per_s'] / naive.steady_ex_per_s:.2f}x, though its rows "
                         "are longer than the naive model's 400 tokens (more work per "
                         "example).")
    for name, v in by_name.items():
        if name not in ("shipped", "bucketing off"):
            lines.append(f"- {name}: {v['ex_per_s'] / base['ex_per_s']:.2f}x the shipped "
                         "recipe's training examples/s.")
    if peaks.get("bf16") and ({"mixed_bfloat16", "float32 (no mixed precision)"} & set(by_name)):
        bf16, fp32 = peaks["bf16"]["tf_gflop_per_s"], peaks["start"]["tf_gflop_per_s"]
        lines.append(f"- For scale: a bfloat16 matmul runs at {bf16:,.0f} GFLOP/s here against "
                     f"{fp32:,.0f} for float32.")
    return lines + [""]


def process_section(process: dict, memory: dict) -> list[str]:
    rows = []
    for entry in [process.get("help")] + list(process.get("predict10") or []) + list(
            (memory or {}).get("rows") or []):
        if not entry:
            continue
        if entry.get("error"):
            rows.append([entry["label"], f"`{entry['command']}`", f"*{entry['error']}*", DASH,
                         DASH, DASH])
            continue
        rows.append([entry["label"], f"`{entry['command']}`", _f(entry["runs"]),
                     _f(entry["median_s"], "{:.3f}"), _f(entry["min_s"], "{:.3f}"),
                     _mb(entry["peak_rss_bytes"])])
    if not rows:
        return []
    out = ["## Whole processes", "",
           "Wall time from fork to exit and peak RSS of the command as a user runs it, each "
           "run a fresh process.", ""]
    out += _table(["what", "command", "runs", "median s", "best s", "peak RSS MB"], rows)
    mem = [r for r in (memory or {}).get("rows", []) if r.get("lines_per_s")]
    if mem:
        out += ["Streaming prediction of short lines (the memory check): " + "; ".join(
            f"{r['lines']:,} lines at {r['lines_per_s']:,.0f} lines/s" for r in mem) + ".", ""]
    return out


def script_output_section(title: str, result: dict) -> list[str]:
    """A section quoting a timing script's output lines (or why it has none)."""
    if not result:
        return []
    out = [f"## {title}", ""]
    if result.get("error"):
        out.append(f"Not measured: {result['error']}")
    out += ["```"] + result.get("lines", []) + ["```", ""] if result.get("lines") else [""]
    return out


def notes_section(report: dict) -> list[str]:
    settings = report["settings"]
    return ["## How these numbers are taken", "",
            "- **Same data.** Every contender reads the recipe's data section through "
            "`textclf.data.load_splits` (textclf's seeded stratified split) and trains on the "
            "training split; the neural models early-stop on the validation split; all are "
            "scored on the test split with `textclf.evaluation.classification_report`.",
            "- **textclf** rows train through `textclf.training.train` (what `textclf train` "
            "runs, checkpoints and early stopping included); scripts/bench_textclf.py wraps "
            "two of its module functions for the call, to keep the tokenised splits and to "
            "append an epoch clock after the tool's own callbacks.",
            "- **naive** rows are scripts/bench_naive.py: the Keras-tutorial models of the "
            "issue (fixed 400 tokens, vocabulary 20,000, Adam at its defaults, batch 32, "
            "early stopping on validation loss, best weights restored, `model.fit` on "
            "NumPy arrays), with an epoch cap and patience of their own, not the "
            "recipes' (scripts/bench.py, NAIVE_BUDGET: BBC at most 10 epochs for the "
            "TextCNN and 8 for the LSTM, patience 3; on IMDB the --imdb-epochs cap of "
            "both sides). On IMDB the textclf "
            "recurrent recipe is a GRU with 64 units, the naive one an LSTM with 128.",
            "- **train s**: wall time of `fit`, from `on_train_begin` to `on_train_end`, "
            "with the per-epoch test evaluation taken off the clock; it includes graph "
            "tracing, validation, and for textclf its per-epoch checkpoint. Vectoriser "
            "adaptation is outside it for all neural rows. TF-IDF + SVM: vectoriser and SVM "
            "fit. fastText: `train_supervised`.",
            "- **train ex/s** (steady state): training examples over the time from an "
            "epoch's start to the end of its last training batch (no validation, no "
            "checkpoint), the median over epochs 2 onward; with a single epoch, the batches "
            "after the first 5%. TF-IDF + SVM and fastText: the whole fit (examples x epochs "
            "/ fit time). **fastest epoch ex/s**: the same from the fastest epoch after the "
            "first, a cross-check: the naive models' epochs sometimes start seconds late "
            "(tf.data's autotune thread delays the previous epoch's iterator teardown in "
            "Keras' array pipeline; textclf's pipeline runs without autotuning), which "
            "lowers their medians; target 1 counts as met only when medians and fastest "
            "epochs both show it. The waits are reported per architecture below the table.",
            "- **s to naive acc**: the clock reading (as in train s) at the end of the first "
            "epoch whose test accuracy reached the final test accuracy of the naive model of "
            "the same architecture (the naive TextCNN's for the peers, whose whole fit counts "
            "when their final accuracy reaches it). A naive row shows its time to its own "
            "final accuracy. Target 2 counts as met only when the ratio holds both with and "
            "without the naive model's waits for first batches (those of its epochs 2 "
            "onward, up to the one that reached the accuracy).",
            f"- **predict docs/s**: in-process bulk prediction of raw strings to labels on "
            f"{settings['predict_docs']:,} test documents (the test split repeated as "
            "needed), after one warm-up batch, model loading excluded. textclf: the run "
            "directory's Keras engine (`textclf.inference.predictor`) called in batches of "
            "256 in input order, as `textclf predict` does (output writing excluded); naive: "
            "the end-to-end model's `predict` at Keras' default batch of 32; peers: their "
            "`predict` on the whole list.",
            "- **FLOPs** are counted, not sampled: convolutions 2·K·E·F per window per "
            "branch, recurrent layers 2·g·U·(D+U) per step (g = 4 LSTM, 3 GRU), the dense "
            "head; embedding lookups and element-wise work are left out; training = 3x "
            "forward, except for textclf's TextCNN with `model.pool_gradient: argmax`, whose "
            "backward reads only each example's winning windows: forward + 4·K·E·F per "
            "example and branch + 2x the head (a dense-equivalent count would credit it "
            "with work it does not do). *Executed* uses each batch's padded width (from textclf's own batch "
            "plan for each epoch; 400 for the naive models), *useful* the real token counts. "
            "Prediction GFLOP/s include tokenisation time in the denominator.",
            "- **Matmul peak**: best of several float32 `tf.linalg.matmul` (2048 x 2048 "
            "on a CPU, 8192 x 8192 on a GPU, where TensorFlow runs float32 as TF32) "
            "inside a `tf.function`, in the benchmark's own process at the start and the "
            "end; the larger is used.",
            "- **Peak RSS**: `ru_maxrss` of each fresh child process, read by a small "
            "wrapper process it is forked from (`getrusage(RUSAGE_CHILDREN)`; forked "
            "directly from the benchmark, a child would inherit its high-water mark): for "
            "the contenders, the worker that trains, evaluates and bulk-predicts with the "
            "main engine; for the commands, the command itself.",
            "- fastText runs with `thread` = the usable cores; its defaults (lr 0.1, 5 "
            "epochs) do not converge on BBC News, hence the second row with lr 1.0 and 25 "
            "epochs. Model size: fastText's `.bin`; TF-IDF + SVM: weights, idf and terms as "
            "`.npz` + text (no pickle); textclf: `model.keras` (the run directory also holds "
            "`weights.npz` for the NumPy engine); naive: the end-to-end `.keras`.",
            ""]


# --------------------------------------------------------------------------


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    lines = ["", "== bench summary =="]
    for r in (Result.from_dict(x) for x in report["results"]):
        if r.error:
            lines.append(f"{r.dataset:5} {r.contender:32} {r.error[:80]}")
            continue
        lines.append(f"{r.dataset:5} {r.contender:32} acc {_pct(r.test_accuracy):>6}  "
                     f"train {_f(r.train_seconds, '{:.1f}'):>6} s  "
                     f"{_f(r.steady_ex_per_s):>6} ex/s  predict {_f(r.predict_docs_per_s):>7} "
                     f"docs/s  RSS {_mb(r.peak_rss_bytes):>7} MB")
    lines.append("targets:")
    for t in report["targets"]:
        met = {True: "MET", False: "NOT MET", None: "-"}[t["met"]]
        lines.append(f"  [{met:7}] {t['number']} {t['target']}: {t['measured']}")
    return "\n".join(lines)
