"""text_corpus streams from token files (issue 12): the corpus is tokenized once, in
chunks, into a uint16 file per split that a second run, --resume and evaluate reuse;
training reads sequence windows from it, so memory does not grow with the corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from bigmodel_cli.data import load_data
from bigmodel_cli.data import text as text_tokens
from bigmodel_cli.data.sources import text_corpus
from bigmodel_cli.data.tokenize import pack
from tests.helpers import forkserver, no_traceback
from tests.helpers.data import make_cfg
from tests.helpers.peak_rss import run_measured
from tests.helpers.text import write_documents


def corpus_cfg(paths, **data):
    data = {"source": "text_corpus", "paths": paths, "sequence_length": 32, **data}
    return make_cfg(data, "lm")


def reference_splits(bundle, tmp_path: Path, cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each portion encoded whole in memory, as bigmodel did before token files."""
    vocabulary = text_tokens.vocabulary_from_json(bundle.vocabulary)
    files = text_corpus.expand_paths(cfg.data.paths, tmp_path)
    documents = text_corpus.list_documents(files, cfg.data.max_bytes)
    dealt = text_corpus.deal_documents(
        documents, cfg.data.validation_split, cfg.data.test_split, cfg.seed
    )
    eod = [vocabulary.end_of_document]
    out = {}
    for name, docs in dealt.items():
        ids = np.concatenate(
            [np.concatenate([vocabulary.encode_bytes(text_corpus.read_document(d), strict=False),
                             eod]) for d in docs]
        ) if docs else np.zeros(0, np.int64)  # fmt: skip
        out[name] = pack(ids, cfg.data.sequence_length)
    return out


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
@pytest.mark.parametrize("documents", [20, 1], ids=["dealt", "one document cut"])
def test_token_files_hold_what_encoding_each_portion_whole_gives(
    tmp_path, monkeypatch, tokenizer, documents
):
    """Read in 7-byte chunks, so chunk boundaries fall everywhere."""
    write_documents(tmp_path / "docs", count=documents)
    monkeypatch.setattr(text_corpus, "READ_CHUNK", 7)
    cfg = corpus_cfg(["docs/*.txt"], tokenizer=tokenizer, sequence_length=8,
                     **({"vocab_size": 300} if tokenizer == "bpe" else {}))  # fmt: skip
    bundle = load_data(cfg, tmp_path)
    expected = reference_splits(bundle, tmp_path, cfg)
    for name in ("train", "validation", "test"):
        part = bundle.split(name)
        assert part.windows is not None and part.x.dtype == np.uint16
        np.testing.assert_array_equal(part.x, expected[name][0], err_msg=name)
        np.testing.assert_array_equal(part.y, expected[name][1], err_msg=name)
        rows = np.array([0, len(part) - 1, len(part) // 2])
        x, y = part.windows.read(rows)  # what a training batch reads
        np.testing.assert_array_equal(x, expected[name][0][rows])
        np.testing.assert_array_equal(y, expected[name][1][rows])


def test_token_files_are_made_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("BIGMODEL_CACHE_DIR", str(tmp_path / "cache"))
    write_documents(tmp_path / "docs")
    first = load_data(corpus_cfg(["docs/*.txt"]), tmp_path)
    again = load_data(corpus_cfg(["docs/*.txt"]), tmp_path)
    made, reused = (
        next(n for n in b.notes if n.startswith("token files:")) for b in (first, again)
    )
    assert not made.endswith("(reused)") and reused == made + " (reused)"
    folder = Path(made.removeprefix("token files: "))
    assert folder.parent == tmp_path / "cache" / "tokens"
    assert sorted(p.name for p in folder.iterdir()) == [
        "meta.json", "test.bin", "train.bin", "validation.bin"
    ]  # fmt: skip
    np.testing.assert_array_equal(first.test.x, again.test.x)
    # --resume and evaluate pass the run's vocabulary: the same files serve them.
    scored = load_data(corpus_cfg(["docs/*.txt"]), tmp_path, vocabulary=first.vocabulary)
    assert reused in scored.notes
    # Other settings, other ids: a folder of their own.
    other = load_data(corpus_cfg(["docs/*.txt"], validation_split=0.2), tmp_path)
    assert all(folder.name not in note for note in other.notes)
    # A damaged cache (a file cut short) is made again, not read.
    trained_on = np.array(first.train.x)  # a copy: the views would see the cut
    with open(folder / "train.bin", "r+b") as handle:
        handle.truncate(10)
    rebuilt = load_data(corpus_cfg(["docs/*.txt"]), tmp_path)
    assert f"token files: {folder}" in rebuilt.notes
    np.testing.assert_array_equal(rebuilt.train.x, trained_on)


def write_corpus(folder: Path, megabytes: float) -> None:
    """Documents of about 100 KB of a regular language, `megabytes` in all."""
    folder.mkdir(parents=True)
    words = np.array(b"the cat sat on a mat and ran to the red hat of my dog".split())
    rng = np.random.default_rng(0)
    for i in range(max(1, round(megabytes * 10))):
        text = b" ".join(words[rng.integers(0, len(words), 20_000)])
        (folder / f"doc{i:04d}.txt").write_bytes(text[:100_000] + b"\n")


def lm_config(folder: Path, corpus: Path, **train) -> Path:
    config = {
        "name": "stream",
        "seed": 5,
        "data": {"source": "text_corpus", "paths": [f"{corpus}/*.txt"], "sequence_length": 64,
                 "batch_size": 16, "validation_split": 0.02, "test_split": 0.02},
        "model": {"type": "transformer", "task": "language_model", "d_model": 16,
                  "num_heads": 2, "num_layers": 1},
        "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
        "train": {"epochs": 1, "steps_per_epoch": 5, "steps_per_execution": 1, **train},
        "output": {"dir": str(folder / "runs")},
    }  # fmt: skip
    folder.mkdir(exist_ok=True)
    path = folder / f"{corpus.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_memory_does_not_grow_with_the_corpus(tmp_path):
    """The same short run on a 2 MB and a 20 MB corpus: held in memory as before, the
    larger one's token arrays alone would add ~600 MB (int64 inputs and labels, their
    int32 copies and TensorFlow's; measured: 280 MB more)."""
    peaks = {}
    # First a run that measures this machine's peak FLOP/s into the session's cache, as
    # any machine's first run does once: the runs compared then measure only themselves.
    for name, megabytes in (("warm-up", 0.2), ("small", 2), ("large", 20)):
        write_corpus(tmp_path / name, megabytes)
        config = lm_config(tmp_path, tmp_path / name)
        run = run_measured("train", str(config), "--json", fork=True)
        assert run.returncode == 0, run.stderr[-3000:]
        peaks[name] = run.peak_rss
    grown = peaks["large"] - peaks["small"]
    assert grown < 100e6, f"{peaks}: grew {grown / 1e6:.0f} MB for 18 MB more text"


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    write_corpus(tmp_path / "corpus", 0.5)
    train = {"epochs": 3, "steps_per_epoch": 6, "checkpoint": {"every_steps": 4},
             "deterministic": True}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "BIGMODEL_KILL_AT"}
    corpus = tmp_path / "corpus"
    whole = forkserver.run("train", str(lm_config(tmp_path / "whole", corpus, **train)),
                           "--json", env=env)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = json.loads(whole.stdout)
    config = lm_config(tmp_path / "killed", corpus, **train)
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
    assert summary["resumed_at"]["epoch"] >= 1 or summary["resumed_at"]["batch"] > 0
    for key, value in expected["final"].items():
        assert summary["final"][key] == pytest.approx(value, abs=1e-5), key
    for key, value in expected["test"].items():
        assert summary["test"][key] == pytest.approx(value, abs=1e-5), key
