"""A trial under `bigmodel tune` against the same config under `bigmodel train`.

python bench/tune.py [--repetitions 3] [--trials 3]

Both sides train configs/tune_digits_mlp.yaml's base config (20 epochs of the digits
MLP): the search is given a space of one value (the config's own learning rate) and no
pruner, so each of its trials is exactly the run `bigmodel train` makes. Each
repetition runs one `bigmodel train` process and one `bigmodel tune` process of
`--trials` trials, in alternating order (A B, B A, ...).

Compared, per repetition, then the median over repetitions:
- a trial's seconds, as tune.json records them (its config, the training, clearing the
  session and collecting its garbage; not the tell, HParams summary and report that
  follow, a few hundredths of a second), against
  `bigmodel train`'s wall_seconds (summary.json: from the config to the last file,
  TensorFlow's import excluded); the target is at most 1.10x;
- the first trial alone (it pays the process's first device set-up, as train does);
- whole processes: the tune process's seconds per trial against a train process;
- what a trial adds around its own training (its seconds minus its summary.json's
  wall_seconds), which other load on the machine hardly moves.
Writes bench/tune_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine  # noqa: E402
from bench.stats import alternating, median  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "tune_results.json"
BIGMODEL = str(Path(sys.executable).parent / "bigmodel")
CONFIG = ROOT / "configs" / "tune_digits_mlp.yaml"
TARGET = 1.10
# One value, the config's own: every trial trains the config exactly as train does.
SAME_AS_TRAIN = [
    'tune.space={"optimizer.learning_rate": {choice: [1.0e-3]}}',
    "tune.pruner=none",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_json(command: list[str]) -> tuple[dict, float]:
    """Run `command`; its stdout is one JSON object. Returns it and the process seconds."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bench: {' '.join(command)} failed with exit code {done.returncode}")
    return json.loads(done.stdout), seconds


def train_side(scratch: Path) -> dict:
    run = Path(tempfile.mkdtemp(dir=scratch)) / "run"
    summary, seconds = run_json([BIGMODEL, "train", str(CONFIG), "--run-dir", str(run), "--json"])
    return {"wall_seconds": summary["wall_seconds"], "process_seconds": seconds}


def tune_side(scratch: Path, trials: int) -> dict:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    overrides = [*SAME_AS_TRAIN, f"tune.trials={trials}", f"output.dir={folder}"]
    command = [BIGMODEL, "tune", str(CONFIG), "--json"]
    for override in overrides:
        command += ["--set", override]
    report, seconds = run_json(command)
    tune_dir = Path(report["tune_dir"])
    own = [
        json.loads((tune_dir / t["run_dir"] / "summary.json").read_text())["wall_seconds"]
        for t in report["trials"]
    ]
    return {
        "trial_seconds": [t["seconds"] for t in report["trials"]],
        "trial_wall_seconds": own,  # each trial's own summary.json
        "process_seconds": seconds,
    }


def measure(repetitions: int, trials: int) -> list[dict]:
    scratch = Path(tempfile.mkdtemp(prefix="bigmodel-bench-tune-"))
    reps = []
    for rep, order in enumerate(alternating(["train", "tune"], repetitions)):
        result = {}
        for side in order:
            log(f"repetition {rep + 1}/{repetitions}: {side}")
            result[side] = train_side(scratch) if side == "train" else tune_side(scratch, trials)
        reps.append(result)
    return reps


def summarize(reps: list[dict], trials: int) -> dict:
    trial = [median(r["tune"]["trial_seconds"]) / r["train"]["wall_seconds"] for r in reps]
    first = [r["tune"]["trial_seconds"][0] / r["train"]["wall_seconds"] for r in reps]
    process = [r["tune"]["process_seconds"] / trials / r["train"]["process_seconds"] for r in reps]
    ratio = median(trial)
    tunes = [r["tune"] for r in reps]
    overhead = [
        whole - own
        for t in tunes
        for whole, own in zip(t["trial_seconds"], t["trial_wall_seconds"], strict=True)
    ]
    return {
        "train_wall_seconds": median([r["train"]["wall_seconds"] for r in reps]),
        "trial_seconds": median([s for r in reps for s in r["tune"]["trial_seconds"]]),
        "trial_over_train": round(ratio, 3),
        "first_trial_over_train": round(median(first), 3),
        "process_per_trial_over_train_process": round(median(process), 3),
        # What a trial adds around its training (its config, clearing the session, the
        # garbage collection):
        # measured inside one process, so other load on the machine hardly moves it.
        "trial_overhead_seconds": round(median(overhead), 3),
        "target": TARGET,
        "met": ratio <= TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    meter = machine.LoadMeter()
    reps = measure(args.repetitions, args.trials)
    summary = summarize(reps, args.trials)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(CONFIG.relative_to(ROOT)),
        "trials_per_search": args.trials,
        "summary": summary,
        "repetitions": reps,
        "machine": machine.describe(meter.finish()),
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    log(
        f"a trial under tune: {summary['trial_seconds']:.2f} s; bigmodel train: "
        f"{summary['train_wall_seconds']:.2f} s; ratio {summary['trial_over_train']:.3f} "
        f"(target <= {TARGET}: {'met' if summary['met'] else 'NOT met'}); first trial "
        f"{summary['first_trial_over_train']:.3f}; whole processes, per trial "
        f"{summary['process_per_trial_over_train_process']:.3f}; a trial adds "
        f"{summary['trial_overhead_seconds']:.3f} s to its training. Written: {RESULTS}"
    )


if __name__ == "__main__":
    main()
