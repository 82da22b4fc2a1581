"""The `compress.prune` section: every bad value exits 2 naming its key, without TensorFlow."""

from __future__ import annotations

import pytest

from bigmodel_cli.cli import app
from bigmodel_cli.config.load import ConfigError, load_config
from tests.helpers import CONFIGS

BASE = {"name": "t", "model": {"type": "mlp", "dense": [8]}, "train": {"epochs": 5}}

BAD = [
    # (what is wrong, compress.prune, the key that must be named, a phrase that must appear)
    ("sparsity 0", {"sparsity": 0}, "compress.prune.sparsity", "greater than 0"),
    ("sparsity 1", {"sparsity": 1.0}, "compress.prune.sparsity", "less than 1"),
    ("sparsity a string", {"sparsity": "half"}, "compress.prune.sparsity", "number"),
    ("negative begin", {"begin_epoch": -1}, "compress.prune.begin_epoch", "greater than"),
    ("end before begin", {"begin_epoch": 3, "end_epoch": 3}, "compress.prune.end_epoch",
     "greater than begin_epoch (3)"),
    ("end past training", {"end_epoch": 6}, "compress.prune.end_epoch",
     "at most train.epochs (5)"),
    ("begin at the last epoch", {"begin_epoch": 5}, "compress.prune.begin_epoch",
     "below train.epochs (5)"),
    ("empty layers", {"layers": []}, "compress.prune.layers", "at least 1"),
    ("empty glob", {"layers": [""]}, "compress.prune.layers.0", "at least 1"),
    ("unknown key", {"sparsty": 0.5}, "compress.prune.sparsty", "did you mean 'sparsity'"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_each_bad_value_names_its_key(write_config, case):
    _, prune, key, phrase = case
    with pytest.raises(ConfigError) as caught:
        load_config(write_config({**BASE, "compress": {"prune": prune}}))
    found = caught.value.problems
    assert any(p.startswith(f"{key}:") and phrase.lower() in p.lower() for p in found), found


def test_bad_values_exit_2_from_the_cli(runner, write_config):
    path = write_config({**BASE, "compress": {"prune": {"sparsity": 1.5, "end_epoch": 9}}})
    result = runner.invoke(app, ["validate", str(path), "--no-build"])
    assert result.exit_code == 2, result.output
    assert "compress.prune.sparsity:" in result.output


def test_defaults_and_the_shipped_config(write_config):
    cfg = load_config(write_config({**BASE, "compress": {"prune": {}}}))
    prune = cfg.compress.prune
    assert (prune.sparsity, prune.begin_epoch, prune.end_epoch, prune.layers) == (
        0.5, 0, None, None,
    )  # fmt: skip
    shipped = load_config(CONFIGS / "digits_prune.yaml").compress.prune
    assert shipped.sparsity == 0.8 and shipped.end_epoch <= 60
