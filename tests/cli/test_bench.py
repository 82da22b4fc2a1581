"""The bench harness (bench/), without timing anything: helpers, rendering, configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bigmodel_cli.config.load import load_config
from tests.helpers import REPO  # noqa: E402

sys.path.insert(0, str(REPO))

from bench import judge, report, stats, workload  # noqa: E402

BENCH_CONFIGS = sorted((REPO / "bench" / "configs").glob("*.yaml"))


# === stats ===================================================================


def test_median_and_paired_ratios():
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert stats.paired_ratios([2.0, 9.0], [1.0, 3.0]) == [2.0, 3.0]
    # The median of per-pair ratios, not the ratio of medians.
    assert stats.median_ratio([2.0, 9.0, 8.0], [1.0, 3.0, 2.0]) == 3.0
    with pytest.raises(ValueError):
        stats.paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        stats.median([])


def test_steady_rate_leaves_out_the_first_epoch_that_traces_the_graph():
    assert stats.steady_rate([100.0, 300.0, 500.0]) == 400.0
    assert stats.steady_rate([100.0]) == 100.0  # one epoch: its own rate


def test_alternating_order_reverses_every_other_repetition():
    assert stats.alternating(["a", "b"], 3) == [["a", "b"], ["b", "a"], ["a", "b"]]


def test_meets_in_both_directions():
    assert stats.meets(2.5, 2.5) and not stats.meets(2.4, 2.5)
    assert stats.meets(0.29, 0.3, higher_is_better=False)
    assert not stats.meets(0.31, 0.3, higher_is_better=False)


# === judge and report ========================================================


def _run(rate: float, epochs: list[float], **extra) -> dict:
    return {"rate": rate, "epoch_seconds": epochs, "params": 10, **extra}


def _keras_raw(big: float, plain: float, tuned: float) -> dict:
    common = {
        "steps_per_execution": 5,
        "peak_flops": 1e11,
        "flops_per_example": 5e6,
        "train_examples": 2400,
    }
    return {
        "config": "bench/configs/cnn_28x28.yaml",
        "runs": {
            "bigmodel": [_run(big, [2.0, 1.0, 1.0], **common)] * 3,
            "plain": [_run(plain, [1.5, 1.2, 1.2])] * 3,
            "tuned": [_run(tuned, [2.0, 1.0, 1.0])] * 3,
        },
    }


def test_keras_rows_judge_targets_and_explain_misses():
    rows = judge.keras_rows("cnn", _keras_raw(big=2000.0, plain=1800.0, tuned=2000.0))
    vs_plain, vs_tuned = rows
    assert vs_plain["ratio"] == pytest.approx(2000 / 1800, rel=1e-3)
    assert not vs_plain["met"] and "short" in vs_plain["why"]
    assert "MFU" in vs_plain["why"]  # plain runs at 3*5e6*2400/1.2/1e11 = 30% MFU
    assert vs_tuned["met"] and "why" not in vs_tuned


def test_startup_rows_use_medians():
    raw = {
        "commands": {"help": "bigmodel --help", "validate": "bigmodel validate"},
        "seconds": {"help": [0.2, 0.25, 0.9], "validate": [0.6, 0.7, 0.4]},
    }
    help_row, validate_row = judge.startup_rows(raw)
    assert help_row["met"] and help_row["value"] == "0.250 s"
    assert not validate_row["met"] and "fastest run met it" in validate_row["why"]


def test_render_table_and_rewrite_only_the_marked_region(tmp_path: Path):
    rows = judge.keras_rows("mlp", _keras_raw(big=3000.0, plain=1000.0, tuned=3000.0))
    results = {
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "tensorflow": "2.21.0",
            "precision_note": "AVX2 only",
        },
        "repetitions": 3,
        "total_seconds": 300.0,
        "benchmarks": rows,
        "notes": ["a note"],
    }
    body = report.render(results)
    assert "| benchmark | target |" in body
    rows_met = [line for line in body.splitlines() if line.endswith("| 1.00x | met |")]
    assert len(rows_met) == 1 and "**not met**" not in body
    assert "3.00x" in body and "- a note" in body

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{report.START}old table{report.END}\nafter\n")
    report.rewrite_readme(readme, body)
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith("\nafter\n")
    assert "old table" not in text and body in text
    report.rewrite_readme(readme, body)  # idempotent
    assert readme.read_text() == text


# === configs and the hand-written models =====================================


@pytest.mark.parametrize("path", BENCH_CONFIGS, ids=lambda p: p.name)
def test_bench_configs_validate(path: Path):
    cfg = load_config(path)
    assert cfg.data.batch_size in (16, 32)
    assert path.read_text().startswith(f"# bigmodel train bench/configs/{path.name}")


@pytest.mark.parametrize("name", ["dense_sgd_100_features.yaml", "cnn_28x28.yaml"])
def test_hand_written_model_matches_bigmodel(name: str):
    """'The same model' on both sides: plain Keras layers with bigmodel's parameter count."""
    from bigmodel_cli.data import load_data
    from bigmodel_cli.models import build_model

    path = REPO / "bench" / "configs" / name
    work = workload.load_workload(path, ["data.examples=200"])
    cfg = load_config(path, ["data.examples=200"])
    ours = build_model(cfg, load_data(cfg, path.parent).spec)
    assert workload.build_model(work).count_params() == ours.count_params()
    assert work.batch_size == 32 and work.x_val is not None
