"""Training on TFRecord image shards larger than memory would allow in arrays (issue 12).

python bench/image_stream.py [--gigabytes 1.4] [--rounds 3] [--only-throughput]

1. Writes `--gigabytes` of TFRecord shards of 64x64 RGB PNGs (noise with a class square,
   about 10 KB each, so ~4.6x as large decoded to float32) into a temporary folder and
   trains a small CNN on them with `bigmodel train` (100 steps, 10 validation batches),
   in a process of its own: its peak RSS (the VmHWM summary.json records). Target:
   under 2.5 GB for 1.4 GB of shards.
2. The same model on 8,192 of the images, streamed from the shards (decoded every
   epoch), streamed from the `data.cache: disk` file of decoded pixels (made once
   beforehand), and held in memory (an npz of the decoded images): examples/s side by
   side, in `--rounds` rounds of the three in turn (the machine's drift hits all three
   alike), each run's rate taken over its epochs after the first (which traces the
   graph), quoted as medians with the median of the per-round ratios. Target:
   streaming at least 0.95x in memory. `--only-throughput` runs just this part and
   keeps the other parts' last figures. Also each input pipeline alone (batches read,
   no model): examples/s it could feed the training step.
3. Prompt stop on an epoch of 10 million steps (days): SIGTERM once training runs, the
   seconds to exit (target: under 20 s); and `train.time_limit_minutes: 0.5`, the
   seconds of training it took to stop (target: within 60 s).
Writes bench/image_results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pipeline_alone, stats  # noqa: E402

RESULTS = ROOT / "bench" / "image_results.json"
SHAPE = (64, 64, 3)
PER_SHARD = 4096
CLI = [sys.executable, "-m", "bigmodel_cli.cli"]


def images(count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 120, (count, *SHAPE), dtype=np.uint8)
    y = rng.integers(0, 4, count)
    half = SHAPE[0] // 2
    for i, label in enumerate(y):
        top, left = (label // 2) * half, (label % 2) * half
        x[i, top : top + half, left : left + half] = 255
    return x, y


def write_shards(folder: Path, size: int) -> tuple[int, int]:
    """Shards of PER_SHARD records until `size` bytes are written: (records, bytes)."""
    import tensorflow as tf

    folder.mkdir(parents=True)
    rng, written, records, shard = np.random.default_rng(0), 0, 0, 0
    while written < size:
        x, y = images(PER_SHARD, rng)
        encoded = tf.map_fn(tf.io.encode_png, tf.constant(x), fn_output_signature=tf.string)
        path = folder / f"part-{shard:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for data, label in zip(encoded.numpy(), y, strict=True):
                feature = {
                    "png": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
        written += path.stat().st_size
        records += PER_SHARD
        shard += 1
    return records, written


def config(work: Path, name: str, data: dict, **train) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "data": {"batch_size": 64, **data},
        "model": {"type": "cnn", "conv": [{"filters": 16, "kernel_size": 3, "pool": 2},
                                          {"filters": 32, "kernel_size": 3, "pool": 2}],
                  "dense": [64]},
        "train": {"epochs": 1, "validation_steps": 10, **train},
        "output": {"dir": str(work / "runs")},
    }))  # fmt: skip
    return path


def shards_data(folder: Path) -> dict:
    spec = {"png": {"dtype": "image", "shape": list(SHAPE)}, "label": {"dtype": "int64"}}
    return {"source": "tfrecord", "paths": [f"{folder}/*.tfrecord"], "feature_spec": spec,
            "target": "label"}  # fmt: skip


def train(path: Path, env: dict) -> dict:
    started = time.perf_counter()
    process = subprocess.run([*CLI, "train", str(path), "--json"], capture_output=True,
                             text=True, env=env, cwd=ROOT)  # fmt: skip
    if process.returncode != 0:
        raise SystemExit(f"bigmodel train failed:\n{process.stderr[-3000:]}")
    summary = json.loads(process.stdout)
    with open(Path(summary["run_dir"]) / "metrics.csv", newline="") as handle:
        rates = [float(row["examples_per_second"]) for row in csv.DictReader(handle)]
    return {"seconds": round(time.perf_counter() - started, 1),
            "train_seconds": round(summary["train_seconds"], 1),
            "peak_rss_bytes": summary["peak_rss_bytes"],
            "examples_per_second": round(summary["examples_per_second"]),
            "steady_examples_per_second": round(stats.steady_rate(rates)),
            "test": summary["test"], "stop_reason": summary["stop_reason"]}  # fmt: skip


SOURCES = ("streamed", "cached", "in_memory")


def throughput(work: Path, env: dict, shards: Path, rounds: int) -> dict:
    """Examples/s of the same model on 8,192 images streamed (decoded every epoch),
    read from the decoded disk cache, and held in memory, in rounds of the three."""
    import tensorflow as tf

    small = work / "small"
    small.mkdir()
    for part in sorted(shards.glob("*.tfrecord"))[:2]:
        shutil.copy(part, small / part.name)
    spec = {"png": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}  # fmt: skip
    rows = tf.data.TFRecordDataset(sorted(map(str, small.glob("*.tfrecord"))))
    rows = rows.map(lambda r: tf.io.parse_single_example(r, spec))
    xs, ys = [], []
    for row in rows.as_numpy_iterator():
        xs.append(tf.io.decode_png(row["png"]).numpy())
        ys.append(row["label"])
    np.savez(work / "small.npz", x=np.stack(xs), y=np.asarray(ys))
    steps = {"epochs": 3, "steps_per_epoch": 100}
    configs = {
        "streamed": config(work, "streamed", shards_data(small), **steps),
        "cached": config(work, "cached", {**shards_data(small), "cache": "disk"}, **steps),
        "in_memory": config(work, "in_memory", {"source": "npz", "path": str(work / "small.npz")},
                            **steps),
    }  # fmt: skip
    train(configs["cached"], env)  # decodes into the cache, once
    alone = {name: pipeline_alone.examples_per_second(configs[name], env) for name in SOURCES}
    runs = [{name: train(configs[name], env) for name in SOURCES} for _ in range(rounds)]
    rate = {name: [r[name]["steady_examples_per_second"] for r in runs] for name in SOURCES}
    return {
        "rounds": rate,
        "median_examples_per_second": {name: statistics.median(v) for name, v in rate.items()},
        "ratio_to_in_memory": {
            name: round(stats.median_ratio(rate[name], rate["in_memory"]), 3)
            for name in ("streamed", "cached")
        },
        "peak_rss_bytes": {name: runs[-1][name]["peak_rss_bytes"] for name in SOURCES},
        "pipeline_alone_examples_per_second": alone,
    }


def sigterm_seconds(path: Path, env: dict, work: Path) -> dict:
    """Start a run, SIGTERM it once its first backup is written, time its exit."""
    process = subprocess.Popen([*CLI, "train", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)  # fmt: skip
    while process.poll() is None:
        if list((work / "runs").glob("long/*/checkpoints/backup/chief/ckpt-*.index")):
            break
        time.sleep(0.2)
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=600)
    seconds = round(time.perf_counter() - sent, 1)
    return {"exit_code": process.returncode, "seconds_to_exit": seconds,
            "message": err.strip().splitlines()[-1] if err.strip() else ""}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only-throughput", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bigmodel-image-bench-"))
    env = {**os.environ, "BIGMODEL_CACHE_DIR": str(work / "cache")}
    results = json.loads(RESULTS.read_text()) if args.only_throughput else {}
    try:
        if args.only_throughput:  # two shards are enough
            write_shards(work / "shards", 2 * PER_SHARD * 9_000)
        else:
            records, size = write_shards(work / "shards", int(args.gigabytes * 1e9))
            large = config(work, "large", shards_data(work / "shards"), steps_per_epoch=100)
            results["shards"] = {
                "records": records,
                "bytes": size,
                "float32_bytes": records * int(np.prod(SHAPE)) * 4,
            }
            results["large_run"] = large = train(large, env)
            results["meets_peak_target"] = large["peak_rss_bytes"] < 2.5e9 * args.gigabytes / 1.4
        results["throughput"] = throughput(work, env, work / "shards", args.rounds)
        if not args.only_throughput:
            long = config(work, "long", shards_data(work / "shards"),
                          steps_per_epoch=10_000_000, checkpoint={"every_steps": 50})  # fmt: skip
            results["sigterm_on_a_10_million_step_epoch"] = sigterm_seconds(long, env, work)
            limited = config(work, "limited", shards_data(work / "shards"),
                             steps_per_epoch=10_000_000, time_limit_minutes=0.5)  # fmt: skip
            results["time_limit_30_s"] = train(limited, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
