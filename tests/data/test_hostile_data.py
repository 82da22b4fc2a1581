"""Hostile data files (issue 10, items 6 and 9), each written here (tests/helpers/hostile_files.py)
and fed to `train`, `predict` or `evaluate --data`: every one ends in exit 2 with a message
naming the file (and row and column, or array index), no traceback, no run directory. The
files that expand when decoded also run in a child process whose peak memory is checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from bigmodel_cli.config import Config
from bigmodel_cli.data import limits as data_limits
from bigmodel_cli.data import load_data
from bigmodel_cli.data.sources.csv_file import read_csv_source
from bigmodel_cli.errors import DataError
from tests.helpers import REPO, no_traceback
from tests.helpers.hostile_files import (
    animated_webp,
    gif_frames,
    lying_npz,
    npy_bytes,
    npz,
    png_one_bit,
    regression_table,
    table,
    write_csv,
)
from tests.helpers.peak_rss import run_measured

MLP = {"type": "mlp", "dense": [4]}
RNN = {"type": "rnn", "units": [4], "embedding_dim": 4}
TRANSFORMER = {"type": "transformer", "d_model": 8, "num_heads": 2, "vocab_size": 20}
CNN = {"type": "cnn", "conv": [{"filters": 2}]}
BOMB_SIDE = 12_000  # 144 megapixels: over the 100 bound, 2.4 GB as RGB float32


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def small_images(folder: Path, per_class: int = 3) -> Path:
    """Two class folders of tiny PNGs (written with TensorFlow)."""
    import tensorflow as tf

    for name, level in (("dark", 40), ("light", 200)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.full((6, 6, 3), level, np.uint8)
            (folder / name / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    return folder


def images_with(folder: Path, writer, name: str) -> dict:
    """An image_dir data section whose `light` class holds one hostile file among images
    that would train (without it, the run would start)."""
    small_images(folder, per_class=6)
    writer(folder / "light" / name)
    return {"source": "image_dir", "path": str(folder), "image_size": [6, 6], "batch_size": 4}


def tfrecord_with(path: Path, encoded: bytes) -> dict:
    """Ten records of small PNGs, the first one replaced by `encoded`."""
    import tensorflow as tf

    small = tf.io.encode_png(np.full((6, 6, 3), 90, np.uint8)).numpy()

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, image in enumerate([encoded] + [small] * 9):
            features = {"png": feature(image), "label": feature(i % 2)}
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())
    spec = {"png": {"dtype": "image", "shape": [6, 6, 3]}, "label": {"dtype": "int64"}}
    return {"source": "tfrecord", "paths": [str(path)], "feature_spec": spec, "target": "label",
            "batch_size": 4}  # fmt: skip


def csv_data(path: Path, **data) -> dict:
    return {"source": "csv", "path": str(path), "target": "y", **data}


def npz_data(path: Path) -> dict:
    return {"source": "npz", "path": str(path)}


# === The table ===============================================================


@dataclass
class Case:
    """A hostile data file: `make(tmp)` writes it and returns the data section."""

    name: str
    make: Callable[[Path], dict]
    expected: list[str]  # fragments of the message; "{tmp}" is the test's folder
    model: dict = field(default_factory=lambda: MLP)
    extra: dict = field(default_factory=dict)  # more top-level config (loss, ...)
    child_only: bool = False  # run only in a child process: a regression would abort pytest


def x_with(value, shape=(40, 3), at=(5, 1)) -> np.ndarray:
    x = rng().normal(size=shape)
    x[at] = value
    return x


def y01(n: int = 40) -> np.ndarray:
    return np.arange(n) % 2


def tokens_with(value, at=(4, 2)) -> np.ndarray:
    x = rng().integers(0, 10, (40, 8))
    x[at] = value
    return x


CASES = [
    # --- values a float32 model cannot hold (item 9)
    Case("csv feature 1e300", lambda t: csv_data(table(t / "d.csv", cell="1e300")),
         ["{tmp}/d.csv line 9, column 'a'", "beyond float32"]),
    Case("csv feature inf", lambda t: csv_data(table(t / "d.csv", cell="inf")),
         ["{tmp}/d.csv line 9, column 'a'", "not a finite number"]),
    Case("csv feature nan", lambda t: csv_data(table(t / "d.csv", cell="nan")),
         ["{tmp}/d.csv line 9, column 'a'", "not a finite number"]),
    Case("npz x 1e300", lambda t: npz_data(npz(t / "d.npz", x=x_with(1e300), y=y01())),
         ["{tmp}/d.npz: x[5, 1]", "beyond float32"]),
    Case("npz x nan", lambda t: npz_data(npz(t / "d.npz", x=x_with(np.nan), y=y01())),
         ["{tmp}/d.npz: x[5, 1]: NaN"]),
    Case("npz x_train -inf",
         lambda t: npz_data(npz(t / "d.npz", x_train=x_with(-np.inf), y_train=y01(),
                                x_test=x_with(0.0), y_test=y01())),
         ["{tmp}/d.npz: x_train[5, 1]", "infinite"]),
    Case("csv regression target nan", lambda t: csv_data(regression_table(t / "d.csv", "nan")),
         ["{tmp}/d.csv line 9, column 'y'", "'nan' is missing"]),
    Case("csv regression target NA", lambda t: csv_data(regression_table(t / "d.csv", "NA")),
         ["{tmp}/d.csv line 9, column 'y'", "'NA' is missing"]),
    Case("csv class target nan", lambda t: csv_data(table(t / "d.csv", target="nan")),
         ["{tmp}/d.csv line 9, column 'y'", "'nan' is missing"]),
    Case("csv regression target 1e300",
         lambda t: csv_data(regression_table(t / "d.csv", "1e300")),
         ["{tmp}/d.csv line 9, column 'y'", "beyond float32"], extra={"loss": "mse"}),
    Case("csv label 10**30", lambda t: csv_data(table(t / "d.csv", target=10**30)),
         ["{tmp}/d.csv line 9, column 'y'", "2**53"]),
    Case("npz regression target nan",
         lambda t: npz_data(npz(t / "d.npz", x=x_with(0.0), y=x_with(np.nan, (40,), 3))),
         ["{tmp}/d.npz: y[3]", "missing"]),
    Case("npz 2-d target inf",
         lambda t: npz_data(npz(t / "d.npz", x=x_with(0.0), y=x_with(np.inf, (40, 2), (2, 1)))),
         ["{tmp}/d.npz: y[2, 1]", "infinite"]),
    Case("npz with no examples",
         lambda t: npz_data(npz(t / "d.npz", x=np.zeros((0, 3)), y=np.zeros(0))),
         ["{tmp}/d.npz: x and y hold no examples"]),
    Case("npz with no arrays", lambda t: npz_data(npz(t / "d.npz")),
         ["{tmp}/d.npz holds arrays (none)"]),
    Case("npz token id 10**12", lambda t: npz_data(npz(t / "d.npz", x=tokens_with(10**12),
                                                       y=y01())),
         ["{tmp}/d.npz: x[4, 2]: token id 1,000,000,000,000", "embedding"], RNN),
    Case("npz token id -1", lambda t: npz_data(npz(t / "d.npz", x=tokens_with(-1), y=y01())),
         ["{tmp}/d.npz: x[4, 2]", "negative"], RNN),
    Case("npz token id past model.vocab_size",
         lambda t: npz_data(npz(t / "d.npz", x=tokens_with(25), y=y01())),
         ["{tmp}/d.npz: x[4, 2]: token id 25", "model.vocab_size is 20"], TRANSFORMER),
    # --- files that expand, or lie about their size (item 6)
    Case("npz header declaring 4 TB",
         lambda t: npz_data(lying_npz(t / "d.npz", (2**40, 1))),
         ["{tmp}/d.npz: array 'x' declares shape (1099511627776, 1)", "header was edited"]),
    Case("npz header declaring fewer rows", lambda t: npz_data(lying_npz(t / "d.npz", (10, 3))),
         ["{tmp}/d.npz: array 'x'", "240 bytes"]),
    Case("npz member that is not .npy",
         lambda t: npz_data(npz(t / "d.npz", x=b"not an array", y=npy_bytes(y01()))),
         ["{tmp}/d.npz: 'x' is not a NumPy array"]),
    Case("npz of Python objects",
         lambda t: npz_data(npz(t / "d.npz", x=npy_bytes(np.array([[1, 2]], object)[:, :1]),
                                y=npy_bytes(y01(1)))),
         ["{tmp}/d.npz: array 'x' holds Python objects"]),
    Case("image_dir PNG of 144 megapixels",
         lambda t: images_with(t / "img", lambda p: png_one_bit(p, BOMB_SIDE, BOMB_SIDE), "b.png"),
         ["{tmp}/img/light/b.png: 12,000x12,000 pixels", "100 megapixels"], CNN),
    Case("image_dir GIF of 160 megapixels in frames",
         lambda t: images_with(t / "img", lambda p: gif_frames(p, 4000, 4000, 10), "g.gif"),
         ["{tmp}/img/light/g.gif: 4,000x4,000 pixels x 10 frames", "100 megapixels"], CNN),
    Case("image_dir animated WebP named .png",
         lambda t: images_with(t / "img", animated_webp, "w.png"),
         ["{tmp}/img/light/w.png: an animated WebP"], CNN, child_only=True),
    Case("image_dir JPEG XL",
         lambda t: images_with(t / "img", lambda p: p.write_bytes(b"\xff\x0a" + bytes(64)),
                               "j.jpg"),
         ["{tmp}/img/light/j.jpg: a JPEG XL file"], CNN),
    Case("tfrecord PNG of 144 megapixels",
         lambda t: tfrecord_with(t / "d.tfrecord",
                                 png_one_bit(t / "b.png", BOMB_SIDE, BOMB_SIDE).read_bytes()),
         ["{tmp}/d.tfrecord record 0: 12,000x12,000 pixels", "100 megapixels"], CNN),
]  # fmt: skip


def write_config(tmp: Path, case: Case) -> Path:
    config = {
        "name": "hostile",
        "seed": 0,
        "data": {"batch_size": 8, **case.make(tmp)},
        "model": case.model,
        "train": {"epochs": 1},
        "output": {"dir": str(tmp / "runs")},
        **case.extra,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def assert_refused(result, expected: list[str], tmp: Path) -> None:
    assert result.exit_code == 2, result.output
    assert no_traceback(result.output), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.output.split())  # the console wraps long lines
    for fragment in expected:
        assert fragment.format(tmp=tmp) in text, result.output
    assert not (tmp / "runs").exists()


IN_PROCESS = [case for case in CASES if not case.child_only]


@pytest.mark.parametrize("case", IN_PROCESS, ids=[case.name for case in IN_PROCESS])
def test_hostile_training_data_exits_2_naming_the_file(case, tmp_path):
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path, case))])
    assert_refused(result, case.expected, tmp_path)


def test_an_npz_over_the_memory_available_is_refused_before_loading(tmp_path, monkeypatch):
    """An honest 4.8 MB file (1.2M float32 values): with 10 MB available, the arrays and
    the float32 copies training makes of them would not fit."""
    path = npz(tmp_path / "d.npz", x=np.zeros((400_000, 3), np.float32), y=np.arange(400_000) % 2)
    monkeypatch.setattr(data_limits, "available_memory", lambda: 10 * 2**20)
    case = Case("npz over memory", lambda t: npz_data(path), [])
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path, case))])
    assert_refused(result, ["{tmp}/d.npz: the arrays (x (400000, 3) float32", "10.0 MiB"], tmp_path)


# === predict and evaluate --data ============================================


def train_run(tmp: Path, data: dict, model: dict = MLP) -> Path:
    config = tmp / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "trained",
                "seed": 0,
                "data": {"batch_size": 8, **data},
                "model": model,
                "train": {"epochs": 1},
                "output": {"dir": str(tmp / "runs")},
            }
        )
    )
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """A classifier trained on columns a, b of a csv."""
    tmp = tmp_path_factory.mktemp("csv-run")
    return train_run(tmp, csv_data(table(tmp / "train.csv")))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("image-run")
    folder = small_images(tmp / "images", per_class=6)
    return train_run(tmp, {"source": "image_dir", "path": str(folder), "image_size": [6, 6]}, CNN)


PREDICT_CASES = [
    ("csv cell 1e300", lambda t: write_csv(t / "p.csv", ["a", "b"], [(1, 2), ("1e300", 2)]),
     ["{tmp}/p.csv line 3, column 'a'", "beyond float32"]),
    ("csv cell nan", lambda t: write_csv(t / "p.csv", ["a", "b"], [(1, "nan")]),
     ["{tmp}/p.csv line 2, column 'b'", "not a finite number"]),
    ("npz x nan", lambda t: npz(t / "p.npz", x=x_with(np.nan, (4, 2), (1, 0))),
     ["{tmp}/p.npz: x[1, 0]: NaN"]),
    ("npz x 1e300", lambda t: npz(t / "p.npz", x=x_with(1e300, (4, 2), (3, 1))),
     ["{tmp}/p.npz: x[3, 1]", "beyond float32"]),
    ("npz header declaring 4 TB", lambda t: lying_npz(t / "p.npz", (2**40, 1)),
     ["{tmp}/p.npz: array 'x' declares shape (1099511627776, 1)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "expected"),
    [case[1:] for case in PREDICT_CASES],
    ids=[case[0] for case in PREDICT_CASES],
)
def test_hostile_predict_inputs_exit_2_naming_the_file(csv_run, tmp_path, make, expected):
    result = CliRunner().invoke(app, ["predict", str(csv_run), str(make(tmp_path))])
    assert_refused(result, expected, tmp_path)


@pytest.mark.parametrize(
    ("writer", "expected"),
    [
        (lambda p: png_one_bit(p, BOMB_SIDE, BOMB_SIDE), "12,000x12,000 pixels"),
        (lambda p: gif_frames(p, 4000, 4000, 10), "x 10 frames"),
    ],
    ids=["png", "gif"],
)
def test_predict_refuses_images_that_expand_before_decoding(image_run, tmp_path, writer, expected):
    path = writer(tmp_path / "big.png")
    result = CliRunner().invoke(app, ["predict", str(image_run), str(path)])
    assert_refused(result, [f"{path}: ", expected, "100 megapixels"], tmp_path)


def test_evaluate_on_other_data_checks_its_values(csv_run, tmp_path):
    case = Case("eval", lambda t: csv_data(table(t / "d.csv", cell="-1e39")), [])
    config = write_config(tmp_path, case)
    result = CliRunner().invoke(app, ["evaluate", str(csv_run), "--data", str(config)])
    assert_refused(result, ["{tmp}/d.csv line 9, column 'a'", "beyond float32"], tmp_path)
    assert not (csv_run / "eval.json").exists()


# === Memory: the expanding files in a process of their own ===================


def peak_rss_of(args: list[str]) -> tuple[int, int, str]:
    """(exit code, peak resident memory in bytes, output) of `bigmodel ARGS` in a child."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = run_measured(*args, env=env, fork=True)
    return run.returncode, run.peak_rss, run.stdout + run.stderr


IN_A_CHILD = ["image_dir PNG of 144 megapixels", "tfrecord PNG of 144 megapixels",
              "npz header declaring 4 TB", "image_dir animated WebP named .png"]  # fmt: skip


@pytest.mark.parametrize("name", IN_A_CHILD)
def test_files_that_expand_are_refused_in_bounded_memory(name, tmp_path):
    """Before decoding: the child's peak memory stays under 2 GiB (TensorFlow itself takes
    ~0.8), where decoding the 144-megapixel PNG alone takes 2.4 GB."""
    (case,) = [case for case in CASES if case.name == name]
    code, peak, output = peak_rss_of(["train", str(write_config(tmp_path, case))])
    assert code == 2, output
    assert "Traceback" not in output
    text = " ".join(output.split())
    assert all(fragment.format(tmp=tmp_path) in text for fragment in case.expected), output
    assert peak < 2 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"
    assert not (tmp_path / "runs").exists()


# === Loading is linear in the file size ======================================


def wide_csv(path: Path, columns: int, rows: int = 8) -> Path:
    header = [f"f{i}" for i in range(columns)] + ["y"]
    return write_csv(path, header, [[0.5] * columns + [r % 2] for r in range(rows)])


def load_seconds(path: Path) -> float:
    cfg = Config.model_validate({"data": csv_data(path), "model": MLP})
    best = float("inf")
    for _ in range(3):  # the fastest of three: the least disturbed by other processes
        start = time.perf_counter()
        read_csv_source(path, cfg)
        best = min(best, time.perf_counter() - start)
    return best


def test_a_csv_of_40000_columns_loads_in_time_linear_in_its_width(tmp_path):
    """A header of 40,000 columns took 69 s (list scans per column: quadratic). With 40x
    the columns of a 1,000-column file, linear loading takes ~40x the time, quadratic
    ~1600x: the bound of 100x is a complexity test, not a timing assert."""
    narrow = load_seconds(wide_csv(tmp_path / "narrow.csv", 1_000))
    wide = load_seconds(wide_csv(tmp_path / "wide.csv", 40_000))
    assert wide < 100 * narrow, f"{wide:.3f} s against {narrow:.4f} s"


@pytest.mark.slow
def test_a_csv_of_a_million_columns_is_read(tmp_path):
    path = wide_csv(tmp_path / "million.csv", 1_000_000, rows=2)
    cfg = Config.model_validate({"data": csv_data(path), "model": MLP})
    raw = read_csv_source(path, cfg)
    assert raw.x.shape == (2, 1_000_000)


def test_a_missing_column_of_a_wide_csv_lists_a_few_names(tmp_path):
    path = wide_csv(tmp_path / "wide.csv", 40_000)
    cfg = Config.model_validate({"data": csv_data(path, target="label"), "model": MLP})
    with pytest.raises(DataError) as excinfo:
        load_data(cfg, tmp_path)
    (message,) = excinfo.value.problems
    assert "f0, f1, f2" in message and "(40,001 columns)" in message and len(message) < 600
