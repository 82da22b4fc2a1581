"""The `bigmodel` command: parse, call the library, print, exit code. Nothing else.

Exit codes: 0 success; 1 training failed; 2 the user's input is wrong (every problem
listed, no traceback); 130 interrupted. Heavy imports (TensorFlow) happen inside the
commands that need them, so `--help`, `schema` and `validate --no-build` stay instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bigmodel_cli import console
from bigmodel_cli.errors import Interrupted, TrainingFailed, UserError

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="bigmodel",
    help="Train Keras models from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here on Python 3.10
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a config key (dotted; value parsed as YAML). Repeatable.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (logs go to stderr).")
]


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show TensorFlow's own log messages.")
    ] = False,
) -> None:
    from bigmodel_cli.tfenv import set_verbose

    set_verbose(verbose)


def _fail(err: UserError) -> typer.Exit:
    console.problems(err.problems)
    return typer.Exit(EXIT_USER_ERROR)


@app.command()
def train(
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="The config file (omit with --resume).", show_default=False),
    ] = None,
    set_: SetOption = None,
    run_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--run-dir", help="Use this new or empty folder as the run directory."),
    ] = None,
    resume: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--resume", metavar="RUN_DIR", help="Continue an interrupted run."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Validate, build, train and save; prints the run directory."""
    from bigmodel_cli.config import load as config_load
    from bigmodel_cli.training import TrainOptions
    from bigmodel_cli.training import train as run_training

    try:
        if resume is not None and (config is not None or set_ or run_dir is not None):
            raise UserError(
                "--resume RUN_DIR continues a run with its own config.yaml; "
                "give no CONFIG, --set or --run-dir with it"
            )
        if resume is None and config is None:
            raise UserError("missing CONFIG: bigmodel train CONFIG (or --resume RUN_DIR)")
        cfg = config_load.load_config(config, set_ or []) if config is not None else None
        options = TrainOptions(
            config_path=config, overrides=set_ or [], run_dir=run_dir, resume=resume
        )
        summary = run_training(cfg, options)
    except UserError as err:
        raise _fail(err) from None
    except TrainingFailed as err:
        console.problems([str(err)], title="training failed")
        raise typer.Exit(EXIT_FAILED) from None
    except Interrupted as err:
        console.note(str(err))
        raise typer.Exit(128 + err.signal_number) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_:
        console.print_json(summary)
        return
    if summary.get("run_dir") is None:  # a multi_worker worker other than the chief
        console.note("this worker is done; the chief wrote the run directory")
        return
    test = summary.get("test")
    rows = (
        sorted((k, v) for k, v in test.items() if isinstance(v, float))
        if isinstance(test, dict)
        else []
    )
    if rows:
        console.table("test", ["metric", "value"], rows)
    console.out.print(summary["run_dir"], highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by bigmodel train.")],
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    data: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--data", metavar="CONFIG", help="Score on this config's data section."),
    ] = None,
    steps: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            help="Score the split's first N batches (default: train.validation_steps, "
            "else all of it)."
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Load the run's best model, score it on a split, write eval.json."""
    from bigmodel_cli.inference.evaluate import evaluate_run
    from bigmodel_cli.inference.evaluate import tables as evaluate_tables

    try:
        result = evaluate_run(run_dir, split, data, steps)
    except UserError as err:
        raise _fail(err) from None
    if json_:
        console.print_json(result)
        return
    for title, columns, rows in evaluate_tables(result):
        console.table(title, columns, rows)


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A text language model's run directory.")],
    prompt: Annotated[str, typer.Option(help="Text to continue (empty: a new document).")] = "",
    max_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 200,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature; 0 is greedy (always the best token).")
    ] = 1.0,
    top_k: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Sample among the K most likely tokens only."),
    ] = None,
    top_p: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Sample among the most likely tokens holding probability P (nucleus)."),
    ] = None,
    seed: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Seed of the sampling: the same seed gives the same text."),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Rerun the whole context for every token (slow)."),
    ] = False,
) -> None:
    """Continue --prompt with a trained text language model; the prompt and the new text
    stream to stdout as tokens are chosen."""
    from bigmodel_cli.inference.generate import generate as generate_text

    try:
        pieces = generate_text(
            run_dir, prompt, max_tokens, temperature, top_k, top_p, seed, not no_cache
        )
        last = prompt
        sys.stdout.write(prompt)
        for last in pieces:
            sys.stdout.write(last)
            sys.stdout.flush()
    except UserError as err:
        raise _fail(err) from None
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not last.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by bigmodel train.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Images, .txt files, .csv (one example per row) or .npz (x)."),
    ],
) -> None:
    """Run the trained model on new examples; one JSON line per example."""
    import json

    from bigmodel_cli.inference.predict import predict_run

    try:
        for result in predict_run(run_dir, inputs):
            sys.stdout.write(json.dumps(result) + "\n")
    except UserError as err:
        raise _fail(err) from None


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    format_: Annotated[
        str, typer.Option("--format", help="savedmodel or tflite.", show_default=False)
    ],
    quantize: Annotated[
        str, typer.Option(help="tflite only: none, dynamic, float16 or int8.")
    ] = "none",
    calibration_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="int8: training examples to calibrate on (seeded sample; 200)."),
    ] = None,
    max_metric_drop: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Exit 1 if the file scores worse than the Keras model by more."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Write a deployable file under RUN_DIR/export/ (normalization inside), re-score it on
    the test split against the trained model, record both in export/export.json."""
    from bigmodel_cli.export import ExportRequest, export_run, report

    request = ExportRequest(run_dir, format_, quantize, calibration_examples, max_metric_drop)
    try:
        result = export_run(request)
    except UserError as err:
        raise _fail(err) from None
    if result["note"]:
        console.note(result["note"])
    if json_:
        console.print_json(result)
    else:
        for title, columns, rows in report.tables(result):
            console.table(title, columns, rows)
        console.out.print(result["path"], highlight=False, soft_wrap=True)
    if not result["passed"]:
        console.problems([report.failure(result)], title="export failed")
        raise typer.Exit(EXIT_FAILED)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="The config file.")],
    set_: SetOption = None,
    json_: JsonOption = False,
    no_build: Annotated[
        bool, typer.Option("--no-build", help="Check the config only; do not build the model.")
    ] = False,
) -> None:
    """Check the config; unless --no-build, build the model and show its size."""
    from bigmodel_cli.config import load as config_load
    from bigmodel_cli.models import memory, summary

    try:
        cfg = config_load.load_config(config, set_ or [])
        if no_build:
            result = {"valid": True, "name": cfg.name, "model_type": cfg.model.type}
        else:
            result = {"valid": True, **summary.summarize(cfg, config.parent)}
    except UserError as err:
        raise _fail(err) from None
    if json_:
        console.print_json(result)
        return
    if no_build:
        console.out.print(f"{config}: valid ({cfg.model.type})", highlight=False)
        return
    console.table(*summary.layer_table(result))
    console.out.print(summary.size_line(result), highlight=False)
    console.out.print(memory.summary_line(result["memory"]), highlight=False, markup=False)


@app.command()
def smoke(
    paths: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Argument(help="Config files or folders (default: configs/)."),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Configs run at once, each in a process.")
    ] = 2,
) -> None:
    """Run every config briefly (tiny data, a few steps); one line each."""
    from bigmodel_cli.training.smoke import run_smoke

    failures = total = 0
    try:
        for result in run_smoke(paths or [Path("configs")], jobs):
            total += 1
            failures += not result.ok
            status = "ok  " if result.ok else "FAIL"
            console.out.print(
                f"{status} {result.path}  {result.seconds:.1f}s  {result.detail}",
                highlight=False,
                markup=False,
            )
    except UserError as err:
        raise _fail(err) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.out.print(f"{total - failures} passed, {failures} failed", highlight=False)
    if failures:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def tune(
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="Config with a tune: section (or, with --resume, its own).", show_default=False
        ),  # fmt: skip
    ] = None,
    set_: SetOption = None,
    trials: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Trials in all (replaces tune.trials; a total across resumes)."),
    ] = None,
    resume: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--resume", metavar="TUNE_DIR", help="Continue an interrupted search."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Search hyperparameters over the config's tune: section; every trial is a run directory."""
    from bigmodel_cli.experiments import report, search

    try:
        result = search.tune(search.Request(config, set_ or [], trials, resume))
    except UserError as err:
        raise _fail(err) from None
    except Interrupted as err:
        console.note(str(err))
        raise typer.Exit(128 + err.signal_number) from None
    if json_:
        console.print_json(result)
    else:
        console.table(*report.table(result))
        if result["best"]:
            console.note(report.best_line(result))
        console.out.print(result["tune_dir"], highlight=False, soft_wrap=True)
    if not result["counts"]["completed"]:
        console.problems(["no trial completed; see each trial's error in tune.json"],
                         title="tuning failed")  # fmt: skip
        raise typer.Exit(EXIT_FAILED)


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Folder of run directories.")] = Path("runs"),
    json_: JsonOption = False,
) -> None:
    """One line per run directory under FOLDER: status, epochs, metric, test score, date."""
    from bigmodel_cli.experiments import runs as runs_lib

    try:
        found = runs_lib.list_runs(folder)
    except UserError as err:
        raise _fail(err) from None
    if json_:
        console.print_json({"runs": [run.as_json() for run in found]})
        return
    console.table(None, runs_lib.COLUMNS, runs_lib.table_rows(found))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    json_: JsonOption = False,
) -> None:
    """The config keys that differ between runs, and their metrics side by side."""
    from bigmodel_cli.experiments import compare as compare_lib

    try:
        result = compare_lib.compare(run_dirs)
    except UserError as err:
        raise _fail(err) from None
    if json_:
        console.print_json(result)
        return
    for title, columns, rows in compare_lib.tables(result):
        console.table(title, columns, rows)


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories, overlaid.")],
    out: Annotated[Path, typer.Option("--out", help="The PNG file to write.")] = Path("plot.png"),
    metric: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Only this metric's curves (e.g. accuracy or val_loss)."),
    ] = None,
) -> None:
    """Learning curves (train and validation, per epoch) and confusion matrices, as a PNG."""
    from bigmodel_cli.experiments.plot import plot as draw

    try:
        result = draw(run_dirs, out, metric)
    except UserError as err:
        raise _fail(err) from None
    for line in result["notes"]:
        console.note(line)
    console.out.print(result["out"], highlight=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the config's JSON Schema (for editors)."""
    from bigmodel_cli.config.load import json_schema

    console.print_json(json_schema())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
