"""Images stream (issue 12): tfrecord image records and image_dir files stay encoded on
disk and are decoded a batch at a time, so memory does not grow with the data, the
seeded splits hold, and a run killed mid-epoch resumes to the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from bigmodel_cli.data import load_data
from bigmodel_cli.data.decode import NORMALIZATION_SAMPLE, decoded_array, sample_normalization
from bigmodel_cli.data.normalize import fit_normalization
from bigmodel_cli.data.record_files import record_spans
from bigmodel_cli.errors import DataError
from tests.data.test_tfrecord import write_records
from tests.helpers import forkserver, no_traceback
from tests.helpers.data import make_cfg, problems
from tests.helpers.peak_rss import run_measured

SHAPE = (16, 16, 3)
SPEC = {"png": {"dtype": "image", "shape": list(SHAPE)}, "label": {"dtype": "int64"}}


def labelled_images(count: int, shape=SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise (incompressible, so the files are as large as the images) with a bright
    square whose corner is the class: a CNN learns it in a few steps."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (count, *shape), dtype=np.uint8)
    labels = np.arange(count) % 4
    half = shape[0] // 2
    for i, label in enumerate(labels):
        top, left = (label // 2) * half, (label % 2) * half
        images[i, top : top + half, left : left + half] = 255
    return images, labels


def write_shards(folder: Path, count: int, shards: int = 3, shape=SHAPE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = labelled_images(count, shape)
    rows = [{"png": tf.io.encode_png(image).numpy(), "label": int(label)}
            for image, label in zip(images, labels, strict=True)]  # fmt: skip
    return [write_records(folder / f"part-{i}.tfrecord", rows[i::shards]) for i in range(shards)]


def shard_cfg(folder: Path, seed: int = 42, **data):
    data = {"source": "tfrecord", "paths": [f"{folder}/*.tfrecord"], "feature_spec": SPEC,
            "target": "label", **data}  # fmt: skip
    return make_cfg(data, "cnn", seed=seed)


def test_record_spans_find_every_record_and_refuse_a_cut_file(tmp_path):
    (path,) = write_shards(tmp_path, 10, shards=1)
    offsets, lengths = record_spans(path)
    assert len(offsets) == 10
    with open(path, "rb") as handle:
        for offset, length in zip(offsets, lengths, strict=True):
            handle.seek(offset)
            tf.train.Example.FromString(handle.read(length))  # each span is one record
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError) as excinfo:
        record_spans(path)
    assert "truncated" in problems(excinfo) and str(path) in problems(excinfo)


def test_streamed_records_decode_to_the_written_images_in_seeded_stratified_splits(tmp_path):
    write_shards(tmp_path / "shards", 120)
    cfg = shard_cfg(tmp_path / "shards", normalize=False)
    bundle = load_data(cfg, tmp_path)
    assert bundle.train.x is None and bundle.train.encoded is not None
    images, labels = labelled_images(120)
    # Every split's examples decode to the images written, each with its own label.
    seen = []
    for part in (bundle.train, bundle.validation, bundle.test):
        decoded = decoded_array(part.encoded)
        for image, label in zip(decoded, part.y, strict=True):
            (match,) = np.flatnonzero((images == image).all(axis=(1, 2, 3)))
            assert labels[match] == label
            seen.append(match)
    assert sorted(seen) == list(range(120))
    # Stratified: each class keeps its share in every split (30 of each class).
    assert np.bincount(bundle.test.y).tolist() == [3, 3, 3, 3]
    again = load_data(cfg, tmp_path)
    assert np.array_equal(again.train.encoded.offsets, bundle.train.encoded.offsets)
    assert np.array_equal(again.train.encoded.file_ids, bundle.train.encoded.file_ids)
    other = load_data(shard_cfg(tmp_path / "shards", normalize=False, seed=7), tmp_path)
    assert not np.array_equal(other.test.encoded.offsets, bundle.test.encoded.offsets)


def test_streamed_statistics_are_the_split_s_or_a_seeded_sample_s(tmp_path, monkeypatch):
    write_shards(tmp_path / "shards", 80)
    bundle = load_data(shard_cfg(tmp_path / "shards"), tmp_path)
    whole = fit_normalization(decoded_array(bundle.train.encoded), "image")
    assert np.allclose(bundle.normalization["mean"], whole.mean, atol=1e-6)
    assert np.allclose(bundle.normalization["std"], whole.std, atol=1e-6)
    # Past NORMALIZATION_SAMPLE training images, a seeded sample of them is measured.
    from bigmodel_cli.data import decode

    monkeypatch.setattr(decode, "NORMALIZATION_SAMPLE", 10)
    sampled, measured = sample_normalization(bundle.train.encoded, seed=3)
    assert measured == 10 < len(bundle.train) and NORMALIZATION_SAMPLE > 10
    assert sampled == sample_normalization(bundle.train.encoded, seed=3)[0]
    assert sampled.mean != whole.mean


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_streamed_batches_are_standardized_as_in_memory_arrays_are(tmp_path, model):
    """The graph standardizes a whole row at a time (the per-channel statistics tiled):
    each channel still gets its own mean and std, to the bit of numpy's, in the model's
    layout (an MLP reads the images flat)."""
    from bigmodel_cli.data import make_dataset
    from bigmodel_cli.data.normalize import bundle_normalization

    write_shards(tmp_path / "shards", 60)
    data = {"source": "tfrecord", "paths": [f"{tmp_path}/shards/*.tfrecord"],
            "feature_spec": SPEC, "target": "label"}  # fmt: skip
    cfg = make_cfg(data, model, seed=42)
    bundle = load_data(cfg, tmp_path)
    stats = bundle_normalization(bundle)
    assert len(set(stats.mean)) == 3  # three channels with different statistics
    expected = stats.apply(decoded_array(bundle.train.encoded))
    batches = make_dataset(bundle.train, cfg, bundle.spec, training=False)
    streamed = np.concatenate([x.numpy() for x, _ in batches])
    assert streamed.shape == (len(expected), *bundle.spec.input_shape)
    assert np.array_equal(streamed, expected.reshape(streamed.shape))


def test_a_record_that_is_not_an_image_is_refused_before_training(tmp_path):
    (tmp_path / "shards").mkdir()
    rows = [{"png": tf.io.encode_png(np.zeros(SHAPE, np.uint8)).numpy(), "label": i % 2}
            for i in range(6)]  # fmt: skip
    rows[4]["png"] = b"not an image at all"
    write_records(tmp_path / "shards" / "bad.tfrecord", rows)
    with pytest.raises(DataError) as excinfo:
        load_data(shard_cfg(tmp_path / "shards"), tmp_path)
    assert "bad.tfrecord record 4" in problems(excinfo)
    assert "not a readable image" in problems(excinfo)


def shard_config(folder: Path, shards: Path, **train) -> Path:
    config = {
        "name": "images",
        "seed": 3,
        "data": {"source": "tfrecord", "paths": [f"{shards}/*.tfrecord"], "feature_spec": SPEC,
                 "target": "label", "batch_size": 16},
        "model": {"type": "cnn", "conv": [{"filters": 4, "kernel_size": 3, "pool": 2}],
                  "dense": [16]},
        "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
        "train": {"epochs": 1, "steps_per_epoch": 5, "validation_steps": 2,
                  "steps_per_execution": 1, **train},
        "output": {"dir": str(folder / "runs")},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shards.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """The same short run on 400 and 4,000 records of 64x64 RGB. Held in memory, the
    larger set's images would add ~300 MB (uint8, the float32 splits, TensorFlow's copy)."""
    peaks = {}
    for name, count in (("warm-up", 40), ("small", 400), ("large", 4000)):
        write_shards(tmp_path / name, count, shape=(64, 64, 3))
        config = shard_config(tmp_path, tmp_path / name)
        data = yaml.safe_load(config.read_text())
        data["data"]["feature_spec"]["png"]["shape"] = [64, 64, 3]
        config.write_text(yaml.safe_dump(data))
        run = run_measured("train", str(config), "--json", fork=True)
        assert run.returncode == 0, run.stderr[-3000:]
        peaks[name] = run.peak_rss
    grown = peaks["large"] - peaks["small"]
    assert grown < 100e6, f"{peaks}: grew {grown / 1e6:.0f} MB for 3,600 more images"


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    write_shards(tmp_path / "shards", 240)
    train = {"epochs": 3, "steps_per_epoch": 6, "checkpoint": {"every_steps": 4},
             "deterministic": True}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "BIGMODEL_KILL_AT"}
    shards = tmp_path / "shards"
    whole = forkserver.run("train", str(shard_config(tmp_path / "whole", shards, **train)),
                           "--json", env=env)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = json.loads(whole.stdout)
    assert expected["test"]["accuracy"] > 0.5, expected["test"]  # chance is 0.25
    config = shard_config(tmp_path / "killed", shards, **train)
    # SIGKILL as the third backup (step 4 of epoch 2) is committed.
    killed = forkserver.run(
        "train", str(config), env={**env, "BIGMODEL_KILL_AT": "backup_committed:3"}
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = next((tmp_path / "killed" / "runs").glob("*/*"))
    resumed = forkserver.run("train", "--resume", str(run), "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert no_traceback(resumed.stderr)
    summary = json.loads(resumed.stdout)
    assert summary["resumed_at"] == {"epoch": 1, "batch": 4}
    for key, value in expected["final"].items():
        assert summary["final"][key] == pytest.approx(value, abs=1e-5), key
    for key, value in expected["test"].items():
        assert summary["test"][key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.slow
def test_sigterm_in_a_long_streamed_epoch_stops_at_a_step_with_a_backup(tmp_path):
    """An epoch of 100,000 steps: the run stops at its next step, without finishing the
    epoch or running validation (no row in metrics.csv), and says how to resume."""
    write_shards(tmp_path / "shards", 120)
    config = shard_config(tmp_path, tmp_path / "shards", epochs=2, steps_per_epoch=100_000,
                          checkpoint={"every_steps": 10})  # fmt: skip
    process = forkserver.start("train", str(config))
    deadline = time.monotonic() + 300
    runs = tmp_path / "runs"
    while time.monotonic() < deadline and process.poll() is None:
        found = list(runs.glob("*/*/checkpoints/backup/chief/ckpt-*.index"))
        if found:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-3000:]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    run = next(runs.glob("*/*"))
    assert "stopped at epoch 1, step" in err and f"--resume {run}" in err and no_traceback(err)
    metrics = run / "metrics.csv"
    assert not metrics.exists() or len(metrics.read_text().splitlines()) <= 1


def test_an_image_that_fails_to_decode_mid_run_exits_2_naming_it(tmp_path):
    """Its header parses (so it is not decoded before training), its pixels do not."""
    from tests.data.test_image_data import stripes_folder

    folder = stripes_folder(tmp_path / "images", per_class=8)
    victim = sorted((folder / "vertical").glob("*.png"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:40] + b"\0" * (len(data) - 40))  # IHDR intact, IDAT garbage
    config = tmp_path / "images.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": "image_dir", "path": str(folder), "image_size": [8, 8],
                 "batch_size": 4},
        "model": {"type": "cnn", "conv": [{"filters": 2, "kernel_size": 3}]},
        "train": {"epochs": 2, "steps_per_execution": 1},
        "output": {"dir": str(tmp_path / "runs")},
    }))  # fmt: skip
    result = forkserver.run("train", str(config))
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(victim) in result.stderr and "cannot be decoded" in result.stderr
    assert "--resume" in result.stderr and no_traceback(result.stderr)


def test_disk_cache_decodes_once_and_gives_the_same_batches(tmp_path, monkeypatch):
    from bigmodel_cli.data import decoded_cache, make_dataset

    monkeypatch.setenv("BIGMODEL_CACHE_DIR", str(tmp_path / "cache"))
    write_shards(tmp_path / "shards", 60)
    plain = load_data(shard_cfg(tmp_path / "shards"), tmp_path)
    assert any("data.cache: disk would decode them once" in note for note in plain.notes)
    cfg = shard_cfg(tmp_path / "shards", cache="disk")
    cached = load_data(cfg, tmp_path)
    assert any("decoded now" in note for note in cached.notes)
    files = sorted((tmp_path / "cache" / "images").glob("*.u8"))
    assert len(files) == 3 and sum(f.stat().st_size for f in files) == 60 * 16 * 16 * 3
    assert cached.normalization == plain.normalization
    for split in ("train", "validation", "test"):
        ours = make_dataset(cached.split(split), cfg, cached.spec, training=False)
        theirs = make_dataset(plain.split(split), cfg, plain.spec, training=False)
        for (x1, y1), (x2, y2) in zip(ours, theirs, strict=True):
            assert np.array_equal(x1.numpy(), x2.numpy()) and np.array_equal(y1, y2)
    # A second load reads the files; it does not decode again.
    monkeypatch.setattr(decoded_cache, "pixel_batches", None)  # would fail if called
    again = load_data(cfg, tmp_path)
    assert any("reused" in note for note in again.notes)
