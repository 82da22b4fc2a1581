"""bigmodel runs, compare and plot: statuses from a run directory's own files, config
differences and metrics side by side, learning curves and confusion matrices as PNG; and
none of them crashes on a run that is half-written or still training.

The fast tests write run directories by hand (every status and kind of damage); the slow
ones use real runs: trained, NaN-failed, stopped by SIGTERM, and one training meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from bigmodel_cli import console
from bigmodel_cli.cli import app
from tests.helpers import REPO, forkserver, no_traceback

COLUMNS = "epoch,accuracy,loss,val_accuracy,val_loss,lr,seconds,examples_per_second,mfu"
CONFIG = {
    "name": "digits",
    "data": {"source": "digits", "batch_size": 32},
    "model": {"type": "mlp", "dense": [16]},
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "train": {"epochs": 3},
}


def make_run(
    root: Path,
    name: str,
    epochs: int = 3,
    *,
    summary: str | dict | None = "completed",
    config: dict | None = None,
    evaluation: bool = False,
    shift: float = 0.0,
) -> Path:
    """A run directory as bigmodel writes one, with `epochs` rows of plausible metrics
    (`shift` moves every curve, so overlaid runs do not hide each other)."""
    run = root / "digits" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config or CONFIG))
    rows = [COLUMNS] + [
        f"{e},{0.5 + e / 10 - shift},{1.5 - e / 5 + shift},{0.45 + e / 10 - shift},"
        f"{1.6 - e / 5 + shift},0.001,0.1,1000,0.01"
        for e in range(1, epochs + 1)
    ]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    if isinstance(summary, str):
        summary = {
            "status": summary,
            "best": {"monitor": "val_loss", "value": 1.6 - epochs / 5},
            "test": {"loss": 0.9, "accuracy": 0.81},
            "data": {"task": "classification"},
        }
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if evaluation:
        matrix = [[9, 1, 0], [2, 7, 1], [0, 0, 10]]
        (run / "eval.json").write_text(json.dumps({"split": "test", "confusion_matrix": matrix,
                                                   "class_names": ["a", "b", "c"]}))  # fmt: skip
    return run


def backup_manifest(run: Path) -> None:
    folder = run / "checkpoints" / "backup" / "chief"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": 2, "position": {"epoch": 1}}))


def invoke(runner, *args: str):
    """The command, its tables 200 columns wide so each row is one line. Through wide
    consoles, not COLUMNS: rich reads COLUMNS once, when the console is made at import
    (pytest-xdist's workers start with COLUMNS=80)."""
    saved = (console.out, console.err)
    console.use_consoles(
        Console(width=200, soft_wrap=True), Console(stderr=True, width=200, soft_wrap=True)
    )
    try:
        result = runner.invoke(app, list(args))
    finally:
        console.use_consoles(*saved)
    assert no_traceback(result.output), result.output
    return result


def listed(runner, folder: Path) -> dict[str, dict]:
    result = invoke(runner, "runs", str(folder), "--json")
    assert result.exit_code == 0, result.output
    return {run["name"]: run for run in json.loads(result.stdout)["runs"]}


# === runs: every status, from the files ======================================


def test_each_status_comes_from_the_run_directory(runner, tmp_path):
    make_run(tmp_path, "done")
    make_run(tmp_path, "nan", summary={"status": "failed", "error": "the loss became NaN"})
    backup_manifest(make_run(tmp_path, "stopped", summary=None))
    make_run(tmp_path, "never-started", epochs=0, summary=None)
    live = make_run(tmp_path, "live", epochs=1, summary=None)
    (live / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    stale = make_run(tmp_path, "stale-lock", summary=None)
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process
    (stale / ".lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    runs = listed(runner, tmp_path)
    status = {name.split("/")[-1]: run["status"] for name, run in runs.items()}
    assert status == {
        "done": "completed", "nan": "failed", "stopped": "interrupted",
        "never-started": "interrupted", "live": "running", "stale-lock": "interrupted",
    }  # fmt: skip
    done = runs["digits/done"]
    assert done["epochs"] == 3 and done["epochs_requested"] == 3
    assert done["monitor"] == "val_loss" and done["best"] == pytest.approx(1.0)
    assert done["test"] == {"loss": 0.9, "accuracy": 0.81}
    assert runs["digits/stopped"]["best"] == pytest.approx(1.0)  # from metrics.csv
    table = invoke(runner, "runs", str(tmp_path)).stdout
    assert "accuracy 0.8100" in table and "val_loss 1.0000" in table


def test_half_written_files_are_listed_not_fatal(runner, tmp_path):
    cut = make_run(tmp_path, "cut-metrics", summary=None)
    text = (cut / "metrics.csv").read_text()
    (cut / "metrics.csv").write_text(text[: text.rindex("\n", 0, -1) + 5])  # a row cut short
    torn = make_run(tmp_path, "torn-summary", summary=None)
    (torn / "summary.json").write_text('{"status": "compl')
    (make_run(tmp_path, "torn-config", summary=None) / "config.yaml").write_text("train: [\n")
    (make_run(tmp_path, "binary", summary=None) / "metrics.csv").write_bytes(b"\xff\xfe\x00")
    runs = listed(runner, tmp_path)
    assert {run["status"] for run in runs.values()} == {"interrupted"}
    assert runs["digits/cut-metrics"]["epochs"] == 3  # two whole rows and the cut one's epoch
    assert runs["digits/torn-config"]["epochs_requested"] is None
    assert runs["digits/binary"]["epochs"] == 0


def test_a_pruned_tune_trial_is_listed_as_pruned(runner, tmp_path):
    trial = make_run(tmp_path, "tune-20260101-000000/trial-000", summary=None)
    (trial.parent / "tune.json").write_text(
        json.dumps({"trials": [{"run_dir": "trial-000", "status": "pruned"}]})
    )
    assert listed(runner, tmp_path)["digits/tune-20260101-000000/trial-000"]["status"] == "pruned"


def test_runs_of_a_missing_folder_exits_2(runner, tmp_path):
    result = invoke(runner, "runs", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "no such folder" in result.stderr


def test_runs_compare_and_plot_load_no_tensorflow(tmp_path):
    """`runs` and `compare` read files only; `plot` needs matplotlib, never TensorFlow."""
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    script = f"""
import sys
from typer.testing import CliRunner
from bigmodel_cli.cli import app
for args in (["runs", {str(tmp_path)!r}], ["compare", {str(a)!r}, {str(b)!r}]):
    assert CliRunner().invoke(app, args).exit_code == 0
    assert not {{"tensorflow", "optuna", "matplotlib"}} & set(sys.modules), args
out = {str(tmp_path / "p.png")!r}
assert CliRunner().invoke(app, ["plot", {str(a)!r}, "--out", out]).exit_code == 0
assert "matplotlib" in sys.modules and not {{"tensorflow", "optuna"}} & set(sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


# === compare ==================================================================


def test_compare_shows_only_the_keys_that_differ_and_the_metrics(runner, tmp_path):
    other = {**CONFIG, "optimizer": {"name": "adam", "learning_rate": 0.01}, "seed": 7}
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", epochs=2, config=other, summary=None)
    result = invoke(runner, "compare", str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    assert compared["names"] == ["a", "b"]
    assert compared["config"] == {"optimizer.learning_rate": [0.001, 0.01], "seed": ["-", 7]}
    metrics = compared["metrics"]
    assert metrics["status"] == ["completed", "interrupted"] and metrics["epochs"] == [3, 2]
    assert metrics["final val_accuracy"] == pytest.approx([0.75, 0.65])
    assert metrics["test accuracy"] == [0.81, "-"]
    table = invoke(runner, "compare", str(a), str(b)).stdout
    assert "optimizer.learning_rate" in table and "model.dense" not in table


def test_compare_needs_two_run_directories(runner, tmp_path):
    a = make_run(tmp_path, "a")
    assert "at least two" in invoke(runner, "compare", str(a)).stderr
    result = invoke(runner, "compare", str(a), str(tmp_path))
    assert result.exit_code == 2 and f"{tmp_path}: not a run directory" in result.stderr


# === plot =====================================================================

C0, C1, DARKEST_BLUE = "#1f77b4", "#ff7f0e", "#08306b"  # run 1, run 2, the matrix's peak


def pixels_of(image: np.ndarray, colour: str, tolerance: float = 0.03) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < tolerance).sum())


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_plot_overlays_runs_in_their_colours_and_draws_the_confusion_matrix(runner, tmp_path):
    a = make_run(tmp_path, "a", evaluation=True)
    b = make_run(tmp_path, "b", epochs=5, shift=0.2)
    out = tmp_path / "both.png"
    result = invoke(runner, "plot", str(a), str(b), "--out", str(out))
    assert result.exit_code == 0, result.output
    image = read_png(out)
    # loss and accuracy panels, then a's confusion matrix: 3 panels of 480 x 360 pixels
    assert image.shape[:2] == (360, 1440)
    assert pixels_of(image, C0) > 200 and pixels_of(image, C1) > 200
    assert pixels_of(image, DARKEST_BLUE) > 500  # the matrix's diagonal
    assert f"bigmodel evaluate {b}" in result.stderr  # how to get b's matrix

    only = tmp_path / "one.png"
    assert invoke(runner, "plot", str(b), "--out", str(only), "--metric", "val_loss").exit_code == 0
    image = read_png(only)
    assert image.shape[:2] == (360, 480)  # one panel: the loss
    assert pixels_of(image, C0) > 200 and pixels_of(image, C1) == 0


def test_plot_draws_no_matrix_from_a_damaged_eval_json(runner, tmp_path):
    torn, ragged = make_run(tmp_path, "torn"), make_run(tmp_path, "ragged")
    (torn / "eval.json").write_text('{"confusion_matrix": [[1, 2], [3')
    (ragged / "eval.json").write_text(json.dumps({"confusion_matrix": [[1, 2], [3]]}))
    out = tmp_path / "damaged.png"
    assert invoke(runner, "plot", str(torn), str(ragged), "--out", str(out)).exit_code == 0
    image = read_png(out)
    assert image.shape[:2] == (360, 960) and pixels_of(image, DARKEST_BLUE) == 0


def test_plot_refuses_what_it_cannot_draw(runner, tmp_path):
    a = make_run(tmp_path, "a")
    empty = make_run(tmp_path, "empty", epochs=0, summary=None)
    result = invoke(runner, "plot", str(a), str(empty), str(tmp_path / "x"))
    assert result.exit_code == 2
    assert f"{empty}: no metrics yet" in result.stderr and "not a run directory" in result.stderr
    result = invoke(runner, "plot", str(a), "--metric", "f1")
    assert result.exit_code == 2 and "expected one of: loss, accuracy" in result.stderr
    result = invoke(runner, "plot", str(a), "--out", str(tmp_path / "a.jpg"))
    assert result.exit_code == 2 and "PNG" in result.stderr
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))


# === real run directories =====================================================


def train(runner, folder: Path, name: str, *overrides: str):
    config = folder / f"{name}.yaml"
    document = {
        **CONFIG,
        "name": name,
        "data": {**CONFIG["data"], "limit": 400},
        "train": {"epochs": 3, "steps_per_epoch": 4},
        "output": {"dir": str(folder)},
    }
    config.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["train", str(config), *overrides, "--json"])
    assert no_traceback(result.output), result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished runs that differ in their learning rate; the first evaluated."""
    from typer.testing import CliRunner

    runner, folder = CliRunner(), tmp_path_factory.mktemp("runs")
    paths = []
    for rate in ("0.003", "0.01"):
        result = train(runner, folder, "digits", "--set", f"optimizer.learning_rate={rate}")
        assert result.exit_code == 0, result.output
        paths.append(Path(json.loads(result.stdout)["run_dir"]))
    assert runner.invoke(app, ["evaluate", str(paths[0])]).exit_code == 0
    return folder, paths


@pytest.mark.slow
def test_real_runs_are_listed_compared_and_plotted(runner, trained, tmp_path):
    folder, (a, b) = trained
    runs = listed(runner, folder)
    summary = json.loads((a / "summary.json").read_text())
    first = runs[str(a.relative_to(folder))]
    assert first["status"] == "completed" and first["epochs"] == 3
    assert first["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    compared = json.loads(invoke(runner, "compare", str(a), str(b), "--json").stdout)
    assert compared["config"] == {"optimizer.learning_rate": [0.003, 0.01]}
    assert compared["metrics"]["final val_loss"][0] == pytest.approx(summary["final"]["val_loss"])
    out = tmp_path / "real.png"
    assert invoke(runner, "plot", str(a), str(b), "--out", str(out)).exit_code == 0
    image = read_png(out)
    assert image.shape[:2] == (360, 1440)  # loss, accuracy, a's 10-class confusion matrix
    assert pixels_of(image, C0) > 200 and pixels_of(image, C1) > 200
    assert pixels_of(image, DARKEST_BLUE) > 200


@pytest.mark.slow
def test_a_nan_run_is_failed_and_still_resumes(runner, tmp_path):
    nan = ["data={source: diabetes, normalize: false}", "optimizer={name: sgd, learning_rate: 100}"]
    result = train(runner, tmp_path, "nan", "--set", nan[0], "--set", nan[1])
    assert result.exit_code == 1 and "NaN" in result.stderr
    run = next((tmp_path / "nan").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "NaN" in summary["error"]
    assert listed(runner, tmp_path)[f"nan/{run.name}"]["status"] == "failed"
    resumed = invoke(runner, "train", "--resume", str(run))
    assert resumed.exit_code == 1 and "already finished" not in resumed.stderr


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_run_being_trained_and_a_half_written_one_crash_nothing(runner, trained, tmp_path):
    folder, (done, _) = trained
    config = tmp_path / "long.yaml"
    document = {
        **CONFIG,
        "name": "long",
        "train": {"epochs": 10000, "steps_per_epoch": 2},
        "output": {"dir": str(folder)},
    }
    config.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if k != "BIGMODEL_KILL_AT"}
    process = forkserver.start("train", str(config), env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(folder.glob("long/*/metrics.csv")) and time.monotonic() < deadline:
            time.sleep(0.5)
        live = next(folder.glob("long/*"))
        half = folder / "digits" / "half"
        half.mkdir()  # a run killed as its first files were written
        (half / "config.yaml").write_text((done / "config.yaml").read_text())
        (half / "metrics.csv").write_text(COLUMNS + "\n1,0.5,1.2,0.4")
        runs = listed(runner, folder)
        assert runs[f"long/{live.name}"]["status"] == "running"
        assert runs["digits/half"]["status"] == "interrupted"
        compared = invoke(runner, "compare", str(done), str(live), str(half), "--json")
        assert compared.exit_code == 0, compared.output
        out = tmp_path / "live.png"
        result = invoke(runner, "plot", str(done), str(live), str(half), "--out", str(out))
        assert result.exit_code == 0, result.output
        assert read_png(out).shape[:2] == (360, 1440)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
    assert listed(runner, folder)[f"long/{live.name}"]["status"] == "interrupted"
