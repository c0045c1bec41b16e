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
@click.pass_context
def train(ctx, config_path, overrides, output, force, resume):
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
        return
    click.echo(f"run written to {target}", err=True)
    click.echo(str(target))


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
        writer = make_writer(fmt, stream, include_id=id_column is not None)
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
    probabilities). A model trained with mixed precision computes in 16-bit
    floats and is expected to fail that tolerance.
    """
    from .artifact import open_run
    from .inference import evaluation_data, require_run_dir

    import numpy as np

    run = open_run(require_run_dir(run_dir))
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
def config_show(config_path, overrides):
    """Print the fully resolved config, every default filled in."""
    from .config import dump_config, load_config

    click.echo(dump_config(load_config(config_path, overrides)), nl=False)


@config.command("validate")
@click.argument("config_path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def config_validate(config_path, overrides):
    """Check a config; exit 0 and print 'ok' when valid."""
    from .config import load_config

    load_config(config_path, overrides)
    click.echo(f"{config_path}: ok")


def main() -> None:
    cli(prog_name="textclf")


if __name__ == "__main__":  # pragma: no cover
    main()
