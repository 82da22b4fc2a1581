"""`model.tie_embeddings` (issue 13): a Transformer language model's output projection is
its token embedding, transposed, as GPT-2's is; `validate` counts the parameters saved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bigmodel_cli.cli import app
from tests.helpers import CONFIGS, no_traceback, run_dir_of
from tests.helpers import train_into as train

LM = str(CONFIGS / "transformer_lm.yaml")  # vocab_size 64, d_model 128


def params(runner, *overrides: str) -> dict:
    args = ["validate", LM, "--json"] + [f"--set={o}" for o in overrides]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_validate_counts_one_vocabulary_matrix_fewer(runner):
    untied, tied = params(runner), params(runner, "model.tie_embeddings=true")
    vocab, width = 64, 128
    assert untied["params"] - tied["params"] == vocab * width + vocab  # kernel and bias
    names = [layer["name"] for layer in tied["layers"]]
    assert "predictions" in names  # the output keeps its name (generate, export read it)
    # The reversed embedding is counted: the multiply-adds of the Dense it replaces.
    assert tied["flops_per_example"] == untied["flops_per_example"]


@pytest.mark.parametrize(
    "override,key",
    [("model.task=classify", "model.tie_embeddings"), ("model.outputs=10", "model.outputs")],
)
def test_tying_what_cannot_be_tied_exits_2_naming_the_key(runner, override, key):
    result = runner.invoke(app, ["validate", LM, "--set=model.tie_embeddings=true",
                                 f"--set={override}"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert key in result.output and no_traceback(result.output)


@pytest.mark.slow
def test_a_tied_model_trains_saves_and_loads_with_one_shared_table(runner, tmp_path):
    import tf_keras as keras

    import bigmodel_cli.layers  # noqa: F401 - registers the custom layers

    run = run_dir_of(
        train(
            runner,
            CONFIGS / "transformer_lm.yaml",
            tmp_path,
            "--set=model.tie_embeddings=true",
            "--set=train.epochs=2",
            "--set=train.steps_per_epoch=20",
        )  # fmt: skip
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 2 / 64, summary["test"]  # chance is 1/64
    model = keras.models.load_model(run / "model.keras")
    tables = [w for w in model.weights if 64 in w.shape]
    assert len(tables) == 1 and tables[0].shape == (64, 128)  # the embedding, and only it
    tokens = np.random.default_rng(0).integers(0, 64, (2, 64))
    embedding = model.get_layer("embedding").token_embedding.embeddings.numpy()
    hidden = keras.Model(model.input, model.get_layer("final_norm").output)(tokens).numpy()
    logits = model(tokens).numpy()
    # Within the rounding of the compute dtype (the hidden states are bfloat16 here).
    np.testing.assert_allclose(logits, hidden @ embedding.T, atol=0.02)
