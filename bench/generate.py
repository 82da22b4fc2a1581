"""Generation speed with and without the key/value cache, on a model the size of
configs/lm_python.yaml (d_model 256, 4 layers, 4 heads, a 128-token window).

python bench/generate.py [--run RUN_DIR] [--tokens 256] [--repetitions 5]

Without --run, the model is trained for two steps first (`bigmodel train` in its own
process, into a temporary folder): speed does not depend on the weights, and the
tokens of the two decoders are compared on whatever the weights are. Each repetition
generates `--tokens` tokens greedily from the same prompt with both decoders (in
alternating order), after one untimed warm-up each (tracing). The generation goes past
the window, so the cached side's times include its slides (one prefill every 64
tokens). Writes bench/generate_results.json; the target is a speed-up of at least 3x.
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
from bench.stats import alternating, median, paired_ratios  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "generate_results.json"
BIGMODEL = str(Path(sys.executable).parent / "bigmodel")
CONFIG = ROOT / "configs" / "lm_python.yaml"
BRIEF_TRAINING = ["train.steps_per_epoch=2", "train.epochs=1", "data.max_bytes=300000"]
PROMPT = "def "
TARGET_SPEEDUP = 3.0
SIDES = ("cached", "full")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_briefly(folder: Path) -> Path:
    run = folder / "run"
    overrides = [arg for item in BRIEF_TRAINING for arg in ("--set", item)]
    command = [BIGMODEL, "train", str(CONFIG), *overrides, "--run-dir", str(run), "--json"]
    log(f"training {CONFIG.name} for two steps: {' '.join(command[1:])}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bench: training failed with exit code {done.returncode}")
    return run


def timed(lm, prompt_ids: list[int], tokens: int, use_cache: bool) -> tuple[float, list[int]]:
    start = time.perf_counter()
    ids = list(lm.token_ids(prompt_ids, tokens, use_cache=use_cache))
    return time.perf_counter() - start, ids


def measure(run: Path, tokens: int, repetitions: int, trained_here: bool) -> dict:
    from bigmodel_cli.inference.generate import load_language_model
    from bigmodel_cli.tfenv import import_tensorflow

    import_tensorflow()
    lm = load_language_model(run)
    prompt_ids = lm.encode_prompt(PROMPT)
    for side in SIDES:  # trace both graphs outside the timings
        timed(lm, prompt_ids, 2 * lm.context + 2, side == "cached")
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    outputs: dict[str, list[list[int]]] = {side: [] for side in SIDES}
    for order in alternating(SIDES, repetitions):
        for side in order:
            elapsed, ids = timed(lm, prompt_ids, tokens, side == "cached")
            seconds[side].append(elapsed)
            outputs[side].append(ids)
            log(f"{side:6}  {tokens} tokens in {elapsed:.2f}s  {tokens / elapsed:,.1f} tokens/s")
    reference = outputs["full"][0]
    identical = all(ids == reference for side in SIDES for ids in outputs[side])
    speedups = paired_ratios(seconds["full"], seconds["cached"])
    return {
        "model": {
            "params": int(lm.model.count_params()),
            "context": lm.context,
            "vocabulary": int(lm.vocabulary.size),
            "weights": "configs/lm_python.yaml trained for 2 steps by this bench"
            if trained_here
            else str(lm.source),
        },
        "tokens_per_second": {side: round(tokens / median(seconds[side]), 1) for side in SIDES},
        "seconds": {side: [round(s, 3) for s in seconds[side]] for side in SIDES},
        "speedup": round(median(speedups), 2),
        "speedups": [round(r, 2) for r in speedups],
        "identical_tokens": identical,
        "distinct_tokens": len(set(reference)),  # not one token repeated: a real comparison
        "text": lm.vocabulary.decode_bytes(reference).decode("utf-8", "replace"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="A trained lm_python-sized run directory.")
    parser.add_argument("--tokens", type=int, default=256, help="New tokens per generation.")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    load = machine.LoadMeter()
    with tempfile.TemporaryDirectory(prefix="bigmodel-bench-generate-") as folder:
        run = args.run or train_briefly(Path(folder))
        result = measure(run, args.tokens, args.repetitions, trained_here=args.run is None)
    result = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "benchmark": f"greedy generation of {args.tokens} tokens after {PROMPT!r}, "
        f"median of {args.repetitions}: key/value cache against the full model per token",
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": result["speedup"] >= TARGET_SPEEDUP and result["identical_tokens"],
        **result,
        "machine": machine.describe(load.finish()),
    }
    args.output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    rates = result["tokens_per_second"]
    print(
        f"cached {rates['cached']:,.1f} tokens/s, full model {rates['full']:,.1f} tokens/s: "
        f"{result['speedup']:.2f}x (target {TARGET_SPEEDUP:.0f}x); tokens identical: "
        f"{result['identical_tokens']}; written to {args.output}"
    )
    if not result["identical_tokens"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
