"""Training on a text corpus larger than memory would allow in arrays (issue 12).

python bench/corpus_stream.py [--gigabytes 2] [--steps 50]

Writes a corpus of `--gigabytes` of Python source (this Python's standard library,
copied until the size is reached, each copy a document of its own) into a temporary
folder, then trains a small byte-level Transformer on it twice with `bigmodel train`, in
processes of their own: the first tokenizes the corpus into its token files, the
second reuses them. Each reports the peak RSS its summary.json records (VmHWM) and its
wall time; tokenization speed is the corpus size over the first run's extra time.
Epochs are `--steps` steps and each validation pass and the test score read 20 batches
(`train.validation_steps`), as a large corpus needs. Writes bench/corpus_results.json.
Targets: a 2 GB corpus under 3 GB of peak RSS (the arrays of 0.2 held 34x the corpus:
6.5 GB for 191 MB).

Then throughput: the same model on a 20 MB corpus, its sequences read from the token
file (the streamed path) and the same sequences held in memory (an npz of the token
file's windows), in `--rounds` rounds of the two in turn, each run's rate taken over its
epochs after the first (which traces the graph). Target: streaming at least 0.95x in
memory. `--only-throughput` runs just this part and keeps the other figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pipeline_alone, stats  # noqa: E402

RESULTS = ROOT / "bench" / "corpus_results.json"
TARGET_PEAK_BYTES = 3e9


def write_corpus(folder: Path, size: int) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(stdlib.rglob("*.py"))
    folder.mkdir(parents=True)
    written = copy = 0
    while written < size:
        for source in sources:
            text = source.read_bytes()
            if not text:
                continue
            target = folder / f"{copy:05d}" / str(source.relative_to(stdlib)).replace("/", "__")
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(f"# copy {copy}\n".encode() + text)
            written += len(text)
            if written >= size:
                break
        copy += 1
    return written


def train(config: Path, env: dict) -> dict:
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "bigmodel_cli.cli", "train", str(config), "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"bigmodel train failed:\n{process.stderr[-3000:]}")
    summary = json.loads(process.stdout)
    with open(Path(summary["run_dir"]) / "metrics.csv", newline="") as handle:
        rates = [float(row["examples_per_second"]) for row in csv.DictReader(handle)]  # tokens/s
    # The run's own measurement (VmHWM, read as summary.json is written).
    return {"seconds": round(seconds, 1), "peak_rss_bytes": summary["peak_rss_bytes"],
            "tokens_per_second": summary.get("tokens_per_second"),
            "steady_tokens_per_second": round(stats.steady_rate(rates)),
            "test": summary["test"]}  # fmt: skip


def corpus_config(path: Path, work: Path, data: dict, **train) -> Path:
    path.write_text(yaml.safe_dump({
        "name": path.stem,
        "data": {"batch_size": 32, **data},
        "model": {"type": "transformer", "task": "language_model", "d_model": 64,
                  "num_heads": 4, "num_layers": 2},
        "train": {"epochs": 1, "validation_steps": 20, **train},
        "output": {"dir": str(work / "runs")},
    }))  # fmt: skip
    return path


def corpus_data(folder: Path) -> dict:
    return {"source": "text_corpus", "paths": [str(folder / "*" / "*.py")], "sequence_length": 128}


def token_windows_npz(cache: Path, out: Path, length: int = 128) -> None:
    """The streamed run's training and test sequences as arrays: x the windows of its
    token files, y the same shifted by one token (what the token file's reader gives)."""
    (folder,) = (cache / "tokens").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {}
    for split in ("train", "test"):
        ids = np.fromfile(folder / f"{split}.bin", dtype=meta["dtype"])
        count = (len(ids) - 1) // length
        arrays[f"x_{split}"] = ids[: count * length].reshape(count, length)
        arrays[f"y_{split}"] = ids[1 : count * length + 1].reshape(count, length)
    np.savez(out, **arrays)


def throughput(work: Path, rounds: int) -> dict:
    """Sequences/s of one model on a 20 MB corpus read from its token file and held in
    memory, in rounds of the two."""
    write_corpus(work / "small", 20_000_000)
    env = {**os.environ, "BIGMODEL_CACHE_DIR": str(work / "small-cache")}
    steps = {"epochs": 3, "steps_per_epoch": 100, "validation_steps": 5}
    streamed = corpus_config(work / "streamed.yaml", work, corpus_data(work / "small"), **steps)
    train(streamed, env)  # tokenizes the corpus into the cache, once
    token_windows_npz(work / "small-cache", work / "windows.npz")
    in_memory = corpus_config(
        work / "in_memory.yaml", work, {"source": "npz", "path": str(work / "windows.npz")}, **steps
    )
    configs = {"streamed": streamed, "in_memory": in_memory}
    alone = {
        name: pipeline_alone.examples_per_second(path, env) * 128 for name, path in configs.items()
    }
    rate = {name: [] for name in configs}
    for _ in range(rounds):
        for name, path in configs.items():
            rate[name].append(train(path, env)["steady_tokens_per_second"])
    return {
        "tokens_per_second": rate,
        "median_tokens_per_second": {name: statistics.median(v) for name, v in rate.items()},
        "ratio_to_in_memory": round(stats.median_ratio(rate["streamed"], rate["in_memory"]), 3),
        "target_ratio": 0.95,
        "pipeline_alone_tokens_per_second": alone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only-throughput", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bigmodel-corpus-bench-"))
    if args.only_throughput:
        try:
            results = json.loads(RESULTS.read_text())
            results["throughput"] = throughput(work, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["throughput"], indent=2))
        return
    try:
        size = write_corpus(work / "corpus", int(args.gigabytes * 1e9))
        data = corpus_data(work / "corpus")
        config = corpus_config(work / "corpus-bench.yaml", work, data, steps_per_epoch=args.steps)
        env = {**os.environ, "BIGMODEL_CACHE_DIR": str(work / "cache")}
        first, second = train(config, env), train(config, env)
        shutil.rmtree(work / "cache")  # 4 GB of token files
        shutil.rmtree(work / "corpus")
        rates = throughput(work, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tokenize_seconds = max(first["seconds"] - second["seconds"], 1e-9)
    results = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus_bytes": size,
        "first_run": first,
        "second_run_reusing_the_token_files": second,
        "tokenize_mb_per_second": round(size / 1e6 / tokenize_seconds, 1),
        "target_peak_rss_bytes": TARGET_PEAK_BYTES,
        "meets_target": max(first["peak_rss_bytes"], second["peak_rss_bytes"])
        < TARGET_PEAK_BYTES * args.gigabytes / 2,
        "throughput": rates,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
