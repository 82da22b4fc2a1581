"""`bigmodel smoke`: what a smoke run trains, what it skips, and what it leaves out of a run.

`smoke_one` writes its run under the folder it is given (`run_smoke` removes that folder),
so these tests read the run directory a smoke run really wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.training import smoke
from tests.helpers.text import write_documents

MLP = {"type": "mlp", "dense": [8]}
LM = {"type": "transformer", "task": "language_model", "d_model": 16, "num_heads": 2}


def smoke_run(config: Path, output: Path) -> tuple[Path, dict]:
    """Smoke one config into `output`; its run directory and summary.json."""
    result = smoke.smoke_one(config, output)
    assert result.ok, result.detail
    (summary,) = output.rglob("summary.json")
    return summary.parent, json.loads(summary.read_text())


def test_a_smoke_run_traces_one_step_per_call_and_skips_test_scoring_and_checkpoints(
    write_config, tmp_path
):
    config = write_config({"name": "iris", "data": {"source": "iris"}, "model": MLP})
    run, summary = smoke_run(config, tmp_path / "smoke")
    assert summary["steps_per_execution"] == 1  # `auto` would bundle both steps in one call
    assert summary["epochs_run"] == 1
    # iris has a test split; smoke leaves it unscored (a model load and a traced test step).
    assert summary["data"]["examples"]["test"] > 0 and summary["test"] is None
    assert not (run / "checkpoints" / "best.keras").exists()
    assert not (run / "checkpoints" / "last.keras").exists()
    assert (run / "model.keras").is_file() and (run / "metrics.csv").is_file()


def test_smoke_keeps_a_steps_per_execution_the_config_sets(write_config, tmp_path):
    train = {"steps_per_execution": 2}
    config = write_config({"name": "spe", "data": {"source": "iris"}, "model": MLP, "train": train})
    _, summary = smoke_run(config, tmp_path / "smoke")
    assert summary["steps_per_execution"] == 2


def test_a_small_held_out_split_still_gets_examples(write_config, tmp_path):
    # 0.2% of smoke's usual 64 examples rounds to none, which `train` refuses.
    data = {"source": "synthetic", "examples": 2000, "validation_split": 0.002}
    config = write_config({"name": "small-split", "data": data, "model": MLP})
    _, summary = smoke_run(config, tmp_path / "smoke")
    assert summary["data"]["examples"]["validation"] >= 1


def test_a_bpe_corpus_is_read_only_up_to_the_smoke_cap(write_config, tmp_path, monkeypatch):
    write_documents(tmp_path / "docs")  # ~20 documents of ~900 bytes
    monkeypatch.setattr(smoke, "SMOKE_BPE_BYTES", 4000, raising=False)
    data = {"paths": ["docs/*.txt"], "sequence_length": 16, "tokenizer": "bpe", "vocab_size": 300}
    config = write_config({"name": "bpe", "data": {"source": "text_corpus", **data}, "model": LM})
    _, summary = smoke_run(config, tmp_path / "smoke")
    assert ", 4,000 bytes, bpe tokens" in summary["data"]["source"]  # of ~18,000


def write_texts(folder: Path, count: int) -> None:
    """Documents that each bring words (and one byte) of their own to the vocabulary."""
    folder.mkdir(parents=True)
    for i in range(count):
        own = f"word{i} " * 20 + chr(0xC0 + i % 60)
        (folder / f"doc{i:03d}.txt").write_text(f"the cat sat on the mat {own}\n" * 3)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["text_corpus", "text_dir"])
def test_text_whose_vocabulary_sizes_the_model_builds_the_runs_model(
    runner, write_config, tmp_path, source
):
    # A byte vocabulary holds the bytes seen, a text folder's the training split's words:
    # a subset of the documents would build a smaller embedding than the config's run.
    if source == "text_corpus":
        write_texts(tmp_path / "docs", 200)
        data, model = {"paths": ["docs/*.txt"], "sequence_length": 16}, LM
    else:
        for label in ("a", "b"):
            write_texts(tmp_path / "texts" / label, 100)
        data, model = {"path": "texts", "sequence_length": 16}, LM | {"task": "classify"}
    config = write_config({"name": "text", "data": {"source": source, **data}, "model": model})
    _, summary = smoke_run(config, tmp_path / "smoke")
    built = runner.invoke(app, ["validate", str(config), "--json"])
    assert built.exit_code == 0, built.output
    assert summary["params"] == json.loads(built.stdout)["params"]
