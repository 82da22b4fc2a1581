"""A run's model.keras outside bigmodel: the README's recipe ("Using a run's model outside
bigmodel") run as written, in fresh processes that never import bigmodel_cli themselves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.helpers import REPO, run_dir_of, train

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

# A fresh process where bigmodel is not installed: every bigmodel_cli import fails.
WITHOUT_BIGMODEL = """
import sys

class NoBigmodel:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "bigmodel_cli":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoBigmodel())
"""


def readme_recipe() -> str:
    """The python block of the README's section, reading its run and x from argv."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Using a run's model outside bigmodel", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code, runs = re.subn(r'^run = ".*"', "run = sys.argv[1]", code, flags=re.M)
    assert runs == 1, "the recipe names its run directory in one `run = ...` line"
    inputs = "import sys\nimport numpy as np\nx = np.load(sys.argv[2])['x']\n"
    return inputs + code + "np.save(sys.argv[3], probabilities)\n"


def run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Not the repo as the working directory: `python -c` would import bigmodel_cli from it.
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def trained_run(tmp: Path, data: dict, model: dict) -> Path:
    config = {
        "name": "model-file",
        "seed": 1,
        "data": {**data, "batch_size": 32},
        "model": model,
        "train": {"epochs": 1},
        "output": {"dir": str(tmp / "runs")},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_dir_of(train(CliRunner(), path))


def bigmodel_probabilities(run: Path, inputs: Path) -> np.ndarray:
    from bigmodel_cli.inference.predict import predict_run

    # Each row maps class names to probabilities (rounded to 6 places), in class order.
    return np.array([list(row["probabilities"].values()) for row in predict_run(run, [inputs])])


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mlp")
    return trained_run(tmp, {"source": "digits", "limit": 300}, {"type": "mlp", "dense": [8]})


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("transformer")
    data = {"source": "synthetic", "task": "sequence", "examples": 96, "sequence_length": 8}
    data.update(vocab_size=12, classes=3)
    model = {"type": "transformer", "d_model": 8, "num_heads": 2, "num_layers": 1}
    return trained_run(tmp, data, {**model, "positional": "learned"})


def test_mlp_file_predicts_like_bigmodel_without_bigmodel(mlp_run, tmp_path):
    from sklearn.datasets import load_digits

    raw = load_digits().data[:7].reshape(7, 8, 8, 1)  # native shape, values 0..16
    np.savez(tmp_path / "x.npz", x=raw)
    result = run_python(
        WITHOUT_BIGMODEL + readme_recipe(),
        str(mlp_run),
        str(tmp_path / "x.npz"),
        str(tmp_path / "p.npy"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = bigmodel_probabilities(mlp_run, tmp_path / "x.npz")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)


def test_transformer_file_without_bigmodel_names_the_module(transformer_run, tmp_path):
    code = WITHOUT_BIGMODEL + (
        "import tf_keras as keras\n"
        f"keras.models.load_model({str(transformer_run / 'model.keras')!r})\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "its parent module bigmodel_cli.layers cannot be imported" in last_line
    assert "'str' object is not callable" not in result.stderr


@pytest.mark.parametrize("first", ["", "import bigmodel_cli.layers\n"], ids=["plain", "imported"])
def test_transformer_file_loads_and_predicts_like_the_run(transformer_run, tmp_path, first):
    tokens = np.random.default_rng(0).integers(0, 12, size=(5, 8))
    np.savez(tmp_path / "x.npz", x=tokens)
    # Plain: the script imports no bigmodel module; tf_keras imports the one the file names.
    check = "" if first else "assert 'bigmodel_cli' not in sys.modules\n"
    recipe = readme_recipe().replace("model = keras.models", check + "model = keras.models", 1)
    result = run_python(
        first + recipe,
        str(transformer_run),
        str(tmp_path / "x.npz"),
        str(tmp_path / "p.npy"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = bigmodel_probabilities(transformer_run, tmp_path / "x.npz")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)


def test_transformer_file_saved_as_plain_functional_loads_after_importing_the_layers(
    transformer_run, tmp_path
):
    """Files of earlier versions hold a plain Functional model: import the layers first."""
    import tf_keras as keras

    from bigmodel_cli.registry import custom_objects

    run = tmp_path / "old-run"
    run.mkdir()
    (run / "summary.json").write_bytes((transformer_run / "summary.json").read_bytes())
    model = keras.models.load_model(transformer_run / "model.keras", custom_objects())
    keras.Model(model.inputs, model.outputs, name=model.name).save(run / "model.keras")
    tokens = np.random.default_rng(1).integers(0, 12, size=(4, 8))
    np.savez(tmp_path / "x.npz", x=tokens)
    result = run_python(
        "import bigmodel_cli.layers\n" + readme_recipe(),
        str(run),
        str(tmp_path / "x.npz"),
        str(tmp_path / "p.npy"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = model.predict(tokens, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)
