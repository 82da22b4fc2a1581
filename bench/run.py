"""`make bench`: bigmodel against plain and hand-tuned Keras, the Transformer LM in
float32 and bfloat16, and CLI start-up; writes bench/results.json and the README table.

python bench/run.py [--repetitions 3] [--only mlp,cnn,lm,startup] [--no-readme]

Every training run is its own process (`bigmodel train ... --json`, or one of the Keras
scripts beside this file), so no side inherits another's TensorFlow state.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import judge, machine, report  # noqa: E402
from bench.stats import alternating, median  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
BIGMODEL = str(BIN / "bigmodel")
KERAS_CONFIGS = {"mlp": "dense_sgd_100_features.yaml", "cnn": "cnn_28x28.yaml"}
LM_CONFIG = BENCH / "configs" / "transformer_lm.yaml"
PRECISIONS = ("float32", "mixed_bfloat16")
STARTUP_COMMANDS = {
    "help": [BIGMODEL, "--help"],
    "validate": [BIGMODEL, "validate", "--no-build", "configs/digits_cnn.yaml"],
}
STARTUP_REPETITIONS = 7  # cheap, and a process start is noisier than a training epoch


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_json(command: list[str]) -> dict:
    """Run a command from the repository root; its last stdout line is a JSON object."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bench: {' '.join(command)} failed with exit code {done.returncode}")
    return json.loads(done.stdout)


def epoch_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def bigmodel_train(config: Path, scratch: Path, overrides: list[str] = ()) -> dict:
    """`bigmodel train --json`: its summary, plus each epoch's seconds and MFU."""
    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    command = [BIGMODEL, "train", str(config), "--run-dir", str(run_dir), "--json"]
    for override in overrides:
        command += ["--set", override]
    summary = run_json(command)
    rows = epoch_rows(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    rate = summary.get("tokens_per_second", summary.get("examples_per_second"))
    return {
        "rate": rate,  # examples/s, or tokens/s for a language model
        "train_seconds": summary["train_seconds"],
        "wall_seconds": summary["wall_seconds"],
        "epoch_seconds": [float(r["seconds"]) for r in rows],
        "epoch_mfu": [float(r["mfu"]) for r in rows],
        "epoch_rate": [float(r["examples_per_second"]) for r in rows],
        **{
            key: summary[key]
            for key in (
                "mfu",
                "peak_flops",
                "flops_per_example",
                "params",
                "steps_per_execution",
                "precision",
            )
        },
        "train_examples": summary["data"]["examples"]["train"],
        "validation_examples": summary["data"]["examples"]["validation"],
    }


def keras_script(script: str, config: Path, extra: list[str] = ()) -> dict:
    result = run_json([sys.executable, str(BENCH / script), str(config), *extra])
    return {**result, "rate": result["examples_per_second"]}


def bench_vs_keras(name: str, repetitions: int, scratch: Path) -> dict:
    """bigmodel, the plain recipe and the tuned script on one config, alternated."""
    config = BENCH / "configs" / KERAS_CONFIGS[name]
    runs: dict[str, list[dict]] = {"bigmodel": [], "plain": [], "tuned": []}
    steps_per_execution = None
    for rep, order in enumerate(alternating(["bigmodel", "plain", "tuned"], repetitions)):
        for side in order:
            started = time.perf_counter()
            if side == "bigmodel":
                result = bigmodel_train(config, scratch)
                steps_per_execution = result["steps_per_execution"]
            elif side == "plain":
                result = keras_script("plain_keras.py", config)
            else:  # first run is bigmodel's, so its choice is known here
                result = keras_script(
                    "tuned_keras.py", config, ["--steps-per-execution", str(steps_per_execution)]
                )
            runs[side].append(result)
            log(
                f"  {name} rep {rep + 1}: {side:8s} {result['rate']:>10,.0f} ex/s "
                f"({time.perf_counter() - started:.1f} s)"
            )
    params = {side: {r["params"] for r in rs} for side, rs in runs.items()}
    if len(set().union(*params.values())) != 1:
        raise SystemExit(f"bench: {name}: the three sides built different models: {params}")
    return {"config": str(config.relative_to(ROOT)), "runs": runs}


def bench_lm(repetitions: int, scratch: Path) -> dict:
    runs: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
    for rep, order in enumerate(alternating(PRECISIONS, repetitions)):
        for precision in order:
            started = time.perf_counter()
            result = bigmodel_train(LM_CONFIG, scratch, [f"train.mixed_precision={precision}"])
            runs[precision].append(result)
            log(
                f"  lm rep {rep + 1}: {precision:14s} {result['epoch_rate'][-1]:>8,.0f} tokens/s "
                f"steady ({time.perf_counter() - started:.1f} s)"
            )
    from bigmodel_cli.config.load import load_config  # no TensorFlow import

    cfg = load_config(LM_CONFIG)
    shape = {
        "epochs": cfg.train.epochs,
        "steps_per_epoch": cfg.train.steps_per_epoch,
        "batch_size": cfg.data.batch_size,
        "sequence_length": cfg.data.sequence_length,
    }
    return {"config": str(LM_CONFIG.relative_to(ROOT)), **shape, "runs": runs}


def bench_startup(repetitions: int) -> dict:
    """Wall time of whole `bigmodel` processes, the two commands alternated."""
    seconds: dict[str, list[float]] = {name: [] for name in STARTUP_COMMANDS}
    for order in alternating(list(STARTUP_COMMANDS), repetitions):
        for name in order:
            started = time.perf_counter()
            subprocess.run(
                STARTUP_COMMANDS[name],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            seconds[name].append(time.perf_counter() - started)
    log("  start-up: " + ", ".join(f"{k} {median(v):.3f} s" for k, v in seconds.items()))
    return {
        "commands": {
            k: " ".join(v).replace(str(BIN) + "/", "") for k, v in STARTUP_COMMANDS.items()
        },
        "seconds": seconds,
    }


def rerender(path: Path, readme: bool) -> None:
    """Judge saved raw figures again (e.g. after a wording change) without measuring."""
    results = json.loads(path.read_text(encoding="utf-8"))
    results["benchmarks"] = judge.benchmarks(results["raw"])
    results["notes"] = judge.notes(results["raw"], results["machine"])
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    body = report.render(results)
    if readme:
        report.rewrite_readme(ROOT / "README.md", body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--only", default="mlp,cnn,lm,startup")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS", help="only re-judge and re-render a results.json"
    )
    args = parser.parse_args()
    if args.render:
        rerender(args.render, readme=not args.no_readme)
        return
    if args.repetitions < 3:
        log("bench: fewer than 3 repetitions; figures are only indicative")
    parts = args.only.split(",")

    started = time.perf_counter()
    load = machine.LoadMeter()
    raw: dict[str, dict] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bigmodel-bench-"))
    try:
        if "startup" in parts:
            log("start-up (bigmodel --help, validate --no-build) ...")
            raw["startup"] = bench_startup(STARTUP_REPETITIONS)
        for name in ("mlp", "cnn"):
            if name in parts:
                log(f"{name}: bigmodel vs plain Keras vs hand-tuned Keras ...")
                raw[name] = bench_vs_keras(name, args.repetitions, scratch)
        if "lm" in parts:
            log("transformer language model: float32 vs mixed_bfloat16 ...")
            raw["lm"] = bench_lm(args.repetitions, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    total = time.perf_counter() - started
    load_info = load.finish()
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repetitions": args.repetitions,
        "total_seconds": round(total, 1),
        "machine": machine.describe(load_info),
        "benchmarks": judge.benchmarks(raw),
        "notes": judge.notes(raw, load_info),
        "raw": raw,
    }
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    body = report.render(results)
    if not args.no_readme:
        report.rewrite_readme(ROOT / "README.md", body)
    print(body)
    log(f"bench: {total:.0f} s; wrote {args.output}" + ("" if args.no_readme else " and README.md"))


if __name__ == "__main__":
    main()
