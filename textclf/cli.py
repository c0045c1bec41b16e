"""The ``textclf`` command: parse, call the library, report. Nothing else.

TensorFlow is imported inside the commands that need it (through
``runtime.import_tensorflow``), so ``textclf --help`` answers at once.
Library errors (``TextclfError``) become one-line messages with exit code 2
(usage, config, data) or 1 (run time); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from . import __version__
from .errors import TextclfError


@dataclass
class Options:
    debug: bool = False
    verbose: bool = False


class _ReportedError(click.ClickException):
    """A TextclfError on its way out: click prints ``Error: <message>``."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class TextclfGroup(click.Group):
    """Turns library errors into one-line messages unless ``--debug``."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except TextclfError as exc:
            if _debug(ctx):
                raise
            raise _ReportedError(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            raise _ReportedError("interrupted", 130) from None
        except Exception as exc:
            if _debug(ctx):
                raise
            text = str(exc).strip().splitlines()
            raise _ReportedError(
                f"internal error: {type(exc).__name__}: {text[0] if text else ''} "
                f"(run with --debug for the traceback)", 1) from None


def _debug(ctx) -> bool:
    return bool(ctx.obj and ctx.obj.debug)


def _tensorflow(ctx) -> None:
    from .runtime import import_tensorflow

    import_tensorflow(verbose=ctx.obj.verbose)


@click.group(cls=TextclfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="textclf")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log.")
@click.pass_context
def cli(ctx, debug, verbose):
    """Text classification from YAML recipes: TextCNN, recurrent and tree nets."""
    ctx.obj = Options(debug=debug, verbose=verbose)


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------

SET_HELP = "Override a config value, e.g. --set train.epochs=3 (repeatable)."


@cli.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML recipe (see configs/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Run directory to write [default: runs/<config name>].")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue an interrupted run.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary on stdout (for jq) instead of the path.")
@click.pass_context
def train(ctx, config_path, overrides, output, force, resume, as_json):
    """Train a model from a config; write a run directory."""
    if bool(config_path) == bool(resume):
        raise click.UsageError("give either -c CONFIG or --resume RUN_DIR")
    if resume and (overrides or output):
        raise click.UsageError("--resume continues with the run's own config and directory; "
                               "--set and --output do not apply")
    _tensorflow(ctx)
    from .training import train as run_train

    target = run_train(config_path, overrides, output, force, resume)
    if target is None:  # a non-chief worker of a multi-worker run
        click.echo("worker finished; the chief writes the run directory", err=True)
        if as_json:
            click.echo(json.dumps({"run_dir": None, "chief": False}))
        return
    click.echo(f"run written to {target}", err=True)
    _echo(_run_summary(target) if as_json else {}, str(target), as_json)


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("data", nargs=-1, type=click.Path())
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True,
              help="The run's own split to use when DATA is not given.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--engine", type=click.Choice(["keras", "numpy"]), default="keras",
              show_default=True, help="numpy: the TensorFlow-free reference engine.")
@click.pass_context
def evaluate(ctx, run_dir, data, split, fmt, output, force, engine):
    """Accuracy, P/R/F1 (macro, micro, weighted, per class) and the confusion matrix."""
    from .artifact import open_run
    from .atomic import atomic_output
    from .evaluation import format_report_text
    from .inference import evaluate as evaluate_run
    from .inference import evaluation_data, predictor, require_run_dir

    run = open_run(require_run_dir(run_dir))
    examples = evaluation_data(run, data, split)
    if engine == "keras":
        _tensorflow(ctx)
    report = evaluate_run(run, examples, predictor(run, engine),
                          source=", ".join(data) if data else f"{run_dir} ({split} split)")
    text = (json.dumps(report, indent=2, ensure_ascii=False) + "\n" if fmt == "json"
            else format_report_text(report))
    if fmt == "text" and run.config.model.type == "treenet":  # adds all-nodes accuracy
        from .tree_runs import format_tree_report

        text = format_tree_report(report)
    with atomic_output(output, force) as stream:
        stream.write(text)


# --------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "tsv"]), default="jsonl",
              show_default=True, help="Output format.")
@click.option("--input-format", type=click.Choice(["auto", "lines", "tsv", "csv", "jsonl"]),
              default="auto", show_default=True,
              help="lines = one document per line; auto = by extension, else lines.")
@click.option("--text-column", help="Column (name or 0-based index) holding the text.")
@click.option("--id-column", help="Column passed through to the output as 'id'.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--engine", type=click.Choice(["keras", "numpy"]), default="keras",
              show_default=True, help="numpy: no TensorFlow import (fast start).")
@click.pass_context
def predict(ctx, run_dir, inputs, fmt, input_format, text_column, id_column, top_k, batch_size,
            encoding, output, force, engine):
    """Predict one label per input document; INPUT '-' reads stdin.

    Output line i answers input document i (empty lines included), streamed in
    batches: memory stays flat however long the input.
    """
    from .artifact import open_run
    from .atomic import atomic_output
    from .data import iter_texts
    from .inference import predictor, require_run_dir
    from .prediction import Progress, make_writer, predict_stream

    run = open_run(require_run_dir(run_dir))
    with atomic_output(output, force) as stream:  # checks --force before the slow part
        if engine == "keras":
            _tensorflow(ctx)
        predict_proba = predictor(run, engine)
        writer = make_writer(fmt, stream, include_id=id_column is not None,
                             include_input=len(inputs) > 1)
        for path in inputs:
            items = iter_texts(path, input_format, _column(text_column), encoding,
                               _column(id_column))
            records = predict_stream(items, predict_proba, run.labels, batch_size, top_k,
                                     progress=Progress())
            if len(inputs) > 1:
                records = ({"input": path, **record} for record in records)
            writer.write_all(records)


def _column(value: str | None):
    """A --text-column/--id-column value: an index if it is all digits."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


# --------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("data", nargs=-1, type=click.Path())
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True,
              help="The run's own split to draw examples from when DATA is not given.")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True,
              help="Examples to compare (the first N).")
@click.option("--gradients", is_flag=True,
              help="Also compare every weight's loss gradient with tf.GradientTape.")
@click.pass_context
def check(ctx, run_dir, data, split, count, gradients):
    """Compare the Keras model with its NumPy re-implementation, layer by layer.

    Exits 1 when a difference exceeds the float32 tolerance (1e-5 absolute on
    probabilities). A model trained with mixed precision is compared computing
    in float32 (same weights); how far its 16-bit self is from the reference is
    printed beside it.
    """
    from .artifact import open_run
    from .inference import evaluation_data, require_run_dir

    import numpy as np

    run = open_run(require_run_dir(run_dir))
    if run.config.model.type == "treenet":  # trees against textclf.reference.treenet
        _tensorflow(ctx)
        from .tree_runs import check_tree_run

        table, ok = check_tree_run(run, data, split, count, gradients)
        click.echo(table)
        if not ok:
            raise _ReportedError("the NumPy reference and the Keras model disagree beyond "
                                 "tolerance (see above)", 1)
        return
    examples = evaluation_data(run, data, split)
    texts = examples.texts[:count]
    index = {label: i for i, label in enumerate(run.labels)}
    labels = np.array([index.get(label, 0) for label in examples.labels[:count]])
    _tensorflow(ctx)
    from .reference.check import check_texts, format_check

    report = check_texts(run.model, texts, labels, run_dir=run.path, gradients=gradients)
    click.echo(format_check(report))
    if not report.ok:
        raise _ReportedError("the NumPy reference and the Keras model disagree beyond "
                             "tolerance (see above)", 1)


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------


@cli.group()
def config():
    """Show or validate a config."""


@config.command("show")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
def config_show(config_path, overrides, fmt):
    """Print the fully resolved config, every default filled in."""
    from .config import config_to_dict, dump_config, load_config

    resolved = load_config(config_path, overrides)
    if fmt == "json":
        click.echo(json.dumps(config_to_dict(resolved), indent=2, ensure_ascii=False))
    else:
        click.echo(dump_config(resolved), nl=False)


@config.command("validate")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {\"config\": ..., \"ok\": true}.")
def config_validate(config_path, overrides, as_json):
    """Check a config; exit 0 and print 'ok' when valid."""
    from .config import load_config

    load_config(config_path, overrides)
    if as_json:
        click.echo(json.dumps({"config": config_path, "ok": True}))
    else:
        click.echo(f"{config_path}: ok")


# --------------------------------------------------------------------------
# export, report, tune (docs/SCALE_AND_SERVE.md)
# --------------------------------------------------------------------------

JSON_HELP = "Print a JSON summary on stdout (for jq) instead of the path."


def _echo(summary: dict, path: str, as_json: bool) -> None:
    """stdout gets the written path, or with --json the whole summary."""
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        click.echo(path)


def _run_summary(run_dir) -> dict:
    """``train --json``: where the run is, and its headline numbers."""
    from pathlib import Path

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {"run_dir": str(run_dir), "chief": True, "model_type": info.get("model_type"),
            "examples": info.get("examples"), "train_seconds": info.get("train_seconds"),
            "metrics": {split: {"accuracy": r.get("accuracy"),
                                "macro_f1": (r.get("macro") or {}).get("f1")}
                        for split, r in metrics.items() if isinstance(r, dict)}}


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["saved_model"]), default="saved_model",
              show_default=True, help="saved_model: TensorFlow SavedModel for TF Serving.")
@click.option("--force", is_flag=True, help="Replace an existing OUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def export_command(ctx, run_dir, out_dir, fmt, force, as_json):
    """Export a run's model; the signature maps raw strings to labels and probabilities."""
    from .artifact import open_run
    from .inference import require_run_dir

    run = open_run(require_run_dir(run_dir))
    if run.config.model.type == "treenet":  # its model reads tree arrays, not strings
        raise click.UsageError("export takes cnn and rnn runs; a treenet run's model reads "
                               "parsed trees (use textclf predict)")
    _tensorflow(ctx)
    from .export import export_saved_model

    summary = export_saved_model(run, out_dir, force)
    click.echo(f"{fmt} written to {out_dir}", err=True)
    _echo(summary, str(out_dir), as_json)


@cli.command("report")
@click.argument("run_dir", type=click.Path())
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Folder for the report [default: RUN_DIR/report].")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test",
              show_default=True, help="Split whose confusion matrix is drawn.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def report_command(run_dir, output, split, as_json):
    """Learning curves and a confusion matrix (PNG) and a Markdown summary of a run."""
    from .artifact import open_run
    from .inference import require_run_dir
    from .report import write_report

    run = open_run(require_run_dir(run_dir))
    summary = write_report(run, output, split)
    click.echo(f"report written to {summary['markdown']}", err=True)
    _echo(summary, summary["markdown"], as_json)


@cli.command("tune")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="YAML recipe with a tune section.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--trials", type=click.IntRange(min=1), help="Trials to run [default: tune.trials].")
@click.option("--algorithm", type=click.Choice(["random", "bayesian"]),
              help="Search algorithm [default: tune.algorithm].")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Folder for the results [default: runs/<config name>-tune].")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def tune_command(ctx, config_path, overrides, trials, algorithm, output, force, as_json):
    """Search hyperparameters (KerasTuner) over the config's tune.space."""
    _tensorflow(ctx)
    from .tune import tune as run_tune

    summary = run_tune(config_path, overrides, trials, algorithm, output, force)
    click.echo(f"best config written to {summary['best_config']}", err=True)
    _echo(summary, summary["best_config"], as_json)


def main() -> None:
    cli(prog_name="textclf")


if __name__ == "__main__":  # pragma: no cover
    main()
