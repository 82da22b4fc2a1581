"""Memory is checked before it is allocated (issue 10, item 5): oversized configs exit 2
naming the key responsible, in processes that stay small, and `validate`'s estimate is
within a factor of 2 of what a short training run of each shipped config measures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError
from bigmodel_cli.models import memory
from tests.helpers import CONFIGS, SHIPPED_CONFIGS, no_traceback
from tests.helpers.peak_rss import run_measured, status_field

PEAK_LIMIT = 2e9  # the bound for every refused config


# === Oversized configs: exit 2, the key named, a small process ================

SEQUENTIAL = str(CONFIGS / "examples" / "sequential_cnn.yaml")
HEAD = "{type: Flatten}, {type: Dense, units: 10, activation: softmax}"
# (id, config, overrides, the key the message names, also run through `train`)
OVERSIZED = [
    ("dense-1e8", "digits_mlp.yaml", ["model.dense=[100000000]"], "model.dense.0", True),
    ("dense-3x1e6", "digits_mlp.yaml", ["model.dense=[1000000, 1000000, 1000000]"],
     "model.dense.1", False),
    ("cnn-filters", "digits_cnn.yaml",
     ["model.conv=[{filters: 5000000, kernel_size: 3, padding: same}]"], "model.conv.0", False),
    ("rnn-units", "rnn_sequences.yaml", ["model.units=[10000000]"], "model.units.0", False),
    ("d_model", "transformer_classifier.yaml", ["model.d_model=1000000"], "model.d_model",
     False),
    ("vocab_size", "transformer_classifier.yaml", ["model.vocab_size=100000000"],
     "model.vocab_size", False),
    ("max_length", "transformer_lm.yaml", ["model.max_length=10000000"], "model.max_length",
     True),
    ("examples", "examples/dense_sgd_100_features.yaml",
     ["data.examples=10000000", "data.features=1000"], "data.examples", True),
    ("image_shape", "examples/cnn_28x28.yaml", ["data.image_shape=[100000, 100000, 1]"],
     "data.image_shape", False),
    ("sequence_length", "rnn_sequences.yaml",
     ["data.examples=1000000", "data.sequence_length=100000"], "data.sequence_length", False),
    # The data fits (6 GB); attention over 100,000 tokens does not: refused before generating.
    ("attention", "transformer_classifier.yaml", ["data.sequence_length=100000"],
     "data.sequence_length", True),
    ("UpSampling2D", SEQUENTIAL, [f"model.layers=[{{type: UpSampling2D, size: 100000}}, {HEAD}]"],
     "model.layers.0", True),
    ("Resizing", SEQUENTIAL,
     [f"model.layers=[{{type: Resizing, height: 100000, width: 100000}}, {HEAD}]"],
     "model.layers.0", False),
    ("ZeroPadding2D", SEQUENTIAL,
     [f"model.layers=[{{type: ZeroPadding2D, padding: 10000000}}, {HEAD}]"], "model.layers.0",
     False),
    ("RepeatVector", SEQUENTIAL,
     [f"model.layers=[{{type: Flatten}}, {{type: RepeatVector, n: 1000000000}}, {HEAD}]"],
     "model.layers.1", False),
    # Keras's own errors building a layer, and a value the schema refuses.
    ("Softmax-axis", SEQUENTIAL, [f"model.layers=[{{type: Softmax, axis: 99}}, {HEAD}]"],
     "model.layers.0", True),
    ("units-1.5", SEQUENTIAL,
     ["model.layers=[{type: Flatten}, {type: Dense, units: 1.5}, {type: Dense, units: 10}]"],
     "model.layers.1", False),
    ("stddev-inf", SEQUENTIAL,
     [f"model.layers=[{{type: GaussianNoise, stddev: .inf}}, {HEAD}]"], "model.layers.0",
     False),
]  # fmt: skip
RUNS = [
    (case[0], command) for case in OVERSIZED for command in ("validate", "train")[: 1 + case[4]]
]


@pytest.fixture(scope="module")
def oversized_runs(tmp_path_factory) -> dict:
    """Every (case, command) of the table, two processes at a time."""
    cases = {case[0]: case for case in OVERSIZED}
    out = tmp_path_factory.mktemp("oversized")

    def run(item):
        name, command = item
        _, config, overrides, _, _ = cases[name]
        path = config if Path(config).is_absolute() else str(CONFIGS / config)
        extra = ["--set", f"output.dir={out / name}"] if command == "train" else []
        sets = [arg for value in overrides for arg in ("--set", value)]
        return item, run_measured(command, path, *sets, *extra, fork=True)

    with ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(run, RUNS))
    return {"results": results, "out": out}


@pytest.mark.multiprocess
@pytest.mark.parametrize(("name", "command"), RUNS, ids=[f"{n}-{c}" for n, c in RUNS])
def test_oversized_config_exits_2_naming_the_key(oversized_runs, name, command):
    key = next(case[3] for case in OVERSIZED if case[0] == name)
    run = oversized_runs["results"][(name, command)]
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"error: {key}:" in run.stderr, run.stderr[-3000:]
    assert no_traceback(run.stderr), run.stderr[-3000:]
    assert run.peak_rss < PEAK_LIMIT, f"peak RSS {run.peak_rss / 1e9:.2f} GB"
    assert not (oversized_runs["out"] / name).exists()  # no run directory


@pytest.mark.parametrize(
    ("layers", "key", "fragment"),
    [
        (f"[{{type: Softmax, axis: 99}}, {HEAD}]", "model.layers.0", "Softmax: `dim` must be"),
        ("[{type: Flatten}, {type: Dense, units: 1.5}, {type: Dense, units: 10}]",
         "model.layers.1", "units: 1.5 is not a whole number (Keras would use 1)"),
        (f"[{{type: GaussianNoise, stddev: .inf}}, {HEAD}]", "model.layers.0",
         "GaussianNoise.stddev: inf is not a finite number"),
        (f"[{{type: Flatten}}, {{type: Dropout, rate: [.nan]}}, {HEAD}]", "model.layers.1",
         "not a finite number"),
    ],
)  # fmt: skip
def test_sequential_layer_errors_name_the_layer(runner, layers, key, fragment):
    from bigmodel_cli.cli import app

    result = runner.invoke(app, ["validate", SEQUENTIAL, "--set", f"model.layers={layers}"])
    assert result.exit_code == 2, result.output
    assert f"error: {key}: " in result.output and fragment in result.output, result.output
    assert no_traceback(result.output)


def test_whole_floats_are_fine_for_integer_arguments(runner):
    from bigmodel_cli.cli import app

    layers = "[{type: Flatten}, {type: Dense, units: 10.0, activation: softmax}]"
    result = runner.invoke(app, ["validate", SEQUENTIAL, "--set", f"model.layers={layers}"])
    assert result.exit_code == 0, result.output


# === In-process: the estimate itself ===========================================


def config(overrides: list[str], name: str = "digits_mlp.yaml"):
    return config_load.load_config(CONFIGS / name, overrides)


def test_symbolic_model_allocates_nothing_for_a_huge_dense():
    from bigmodel_cli.models import memory_layers
    from bigmodel_cli.spec import DataSpec

    cfg = config(["model.dense=[100000000]"])
    spec = DataSpec(task="classification", input_shape=(64,), num_classes=10)
    before = status_field(os.getpid(), "VmRSS")
    with memory_layers.symbolic_model(cfg, spec) as model:
        params = model.count_params()
        costs = memory_layers.layer_costs(model, cfg, spec)
    assert params == 64 * 10**8 + 10**8 + 10**9 + 10  # the real model's exact count
    assert status_field(os.getpid(), "VmRSS") - before < 200e6  # its weights would be 30 GB
    assert {c.key for c in costs if c.kind == "weight"} == {"model.dense.0"}


def test_layers_made_before_a_symbolic_build_still_work():
    """Graph mode rebases Keras's classes in place; the build must undo it."""
    import numpy as np
    import tf_keras as keras

    from bigmodel_cli.models import memory_layers
    from bigmodel_cli.spec import DataSpec

    layer = keras.layers.Conv2D(2, 3)
    spec = DataSpec(task="classification", input_shape=(8, 8, 1), num_classes=3)
    with memory_layers.symbolic_model(config([], "digits_cnn.yaml"), spec):
        pass
    assert layer(np.zeros((1, 8, 8, 1), np.float32)).shape == (1, 6, 6, 2)


def _specs():
    from bigmodel_cli.spec import DataSpec

    return {
        "image": DataSpec(task="classification", input_shape=(8, 8, 2), num_classes=3),
        "sequence": DataSpec(task="classification", input_shape=(6, 4), num_classes=3),
        "volume": DataSpec(task="classification", input_shape=(4, 4, 4, 1), num_classes=3),
        "tokens": DataSpec(task="classification", input_shape=(6,), input_dtype="int32",
                           num_classes=3, vocab_size=10),
    }  # fmt: skip


# Every allow-listed layer, with arguments and an input it accepts.
LAYER_SAMPLES = {
    "Dense": ("sequence", {"units": 3}), "Activation": ("sequence", {"activation": "relu"}),
    "Embedding": ("tokens", {"input_dim": 10, "output_dim": 4}), "Flatten": ("image", {}),
    "Reshape": ("sequence", {"target_shape": [24]}), "Permute": ("sequence", {"dims": [2, 1]}),
    "RepeatVector": ("image", {"n": 3}), "Conv1D": ("sequence", {"filters": 2, "kernel_size": 2}),
    "Conv2D": ("image", {"filters": 2, "kernel_size": 2}),
    "Conv3D": ("volume", {"filters": 2, "kernel_size": 2}),
    "Conv1DTranspose": ("sequence", {"filters": 2, "kernel_size": 2}),
    "Conv2DTranspose": ("image", {"filters": 2, "kernel_size": 2}),
    "Conv3DTranspose": ("volume", {"filters": 2, "kernel_size": 2}),
    "SeparableConv1D": ("sequence", {"filters": 2, "kernel_size": 2}),
    "SeparableConv2D": ("image", {"filters": 2, "kernel_size": 2}),
    "DepthwiseConv2D": ("image", {"kernel_size": 2}), "MaxPooling1D": ("sequence", {}),
    "MaxPooling2D": ("image", {}), "MaxPooling3D": ("volume", {}),
    "AveragePooling1D": ("sequence", {}), "AveragePooling2D": ("image", {}),
    "AveragePooling3D": ("volume", {}), "GlobalMaxPooling1D": ("sequence", {}),
    "GlobalMaxPooling2D": ("image", {}), "GlobalAveragePooling1D": ("sequence", {}),
    "GlobalAveragePooling2D": ("image", {}), "UpSampling1D": ("sequence", {}),
    "UpSampling2D": ("image", {}), "ZeroPadding1D": ("sequence", {}),
    "ZeroPadding2D": ("image", {}), "Cropping1D": ("sequence", {}), "Cropping2D": ("image", {}),
    "LSTM": ("sequence", {"units": 3, "dropout": 0.1}),
    "GRU": ("sequence", {"units": 3, "recurrent_dropout": 0.1}),
    "SimpleRNN": ("sequence", {"units": 3}), "BatchNormalization": ("image", {}),
    "LayerNormalization": ("sequence", {}), "Dropout": ("sequence", {"rate": 0.5}),
    "SpatialDropout1D": ("sequence", {"rate": 0.5}), "SpatialDropout2D": ("image", {"rate": 0.5}),
    "GaussianNoise": ("sequence", {"stddev": 0.1}), "GaussianDropout": ("sequence", {"rate": 0.1}),
    "AlphaDropout": ("sequence", {"rate": 0.1}),
    "ActivityRegularization": ("sequence", {"l1": 0.01}),
    "ReLU": ("sequence", {}), "LeakyReLU": ("sequence", {}), "PReLU": ("sequence", {}),
    "ELU": ("sequence", {}), "Softmax": ("sequence", {}), "ThresholdedReLU": ("sequence", {}),
    "Rescaling": ("image", {"scale": 0.5}),
    "Normalization": ("sequence", {"mean": 0.0, "variance": 1.0}),
    "CenterCrop": ("image", {"height": 4, "width": 4}),
    "Resizing": ("image", {"height": 4, "width": 4}),
}  # fmt: skip


def test_every_allowed_layer_builds_symbolically_as_keras_builds_it():
    """The estimate's model is the real one: every allow-listed layer builds in a
    scratch graph, under op determinism (which wants a seed per graph), with the eager
    model's parameter count."""
    import tf_keras as keras
    from tensorflow.python.framework import config as tf_config

    from bigmodel_cli.config.allowlist import ALLOWED_LAYERS
    from bigmodel_cli.models import build_model, memory_layers

    assert set(LAYER_SAMPLES) == ALLOWED_LAYERS
    specs = _specs()
    tf_config.enable_op_determinism()  # as train.deterministic does
    try:
        for kind, (input_kind, args) in sorted(LAYER_SAMPLES.items()):
            spec = specs[input_kind]
            before = [{"type": "Flatten"}] if kind == "RepeatVector" else []
            layers = [*before, {"type": kind, **args}, {"type": "Flatten"},
                      {"type": "Dense", "units": 3, "activation": "softmax"}]  # fmt: skip
            cfg = config_load.config_from_mapping(
                {
                    "model": {
                        "type": "sequential",
                        "input_shape": list(spec.input_shape),
                        "layers": layers,
                    }
                }  # fmt: skip
            )
            with memory_layers.symbolic_model(cfg, spec) as model:
                symbolic = model.count_params()
                assert memory_layers.layer_costs(model, cfg, spec), kind
            keras.backend.clear_session()
            assert symbolic == build_model(cfg, spec).count_params(), kind
    finally:
        tf_config.disable_op_determinism()  # only there, not in tf.config


@pytest.mark.parametrize(
    ("overrides", "copies"),
    [
        (["optimizer={name: sgd}"], 1),
        (["optimizer={name: sgd, momentum: 0.9}"], 2),
        (["optimizer={name: adam}"], 3),
        (["optimizer={name: adam, amsgrad: true}"], 4),
        (["optimizer={name: rmsprop}"], 2),
        (["optimizer={name: rmsprop, momentum: 0.9, centered: true}"], 4),
        (["optimizer={name: adagrad}"], 2),
        (["optimizer={name: adadelta}"], 3),
        (["optimizer={name: nadam}"], 3),
    ],
)
def test_optimizer_copies_are_slots_plus_the_gradient(overrides, copies):
    assert memory.optimizer_copies(config(overrides)) == copies


def test_refusal_names_the_largest_contributor_with_the_estimate():
    from bigmodel_cli import data as data_lib

    cfg = config(["model.dense=[4096, 4096]"])
    bundle = data_lib.load_data(cfg, CONFIGS)
    with memory.measured_model(cfg, bundle.spec, bundle) as (_, est):
        pass
    small = memory.Available(est.total // 2, "this test")
    lines = memory.refusal(est, small)
    assert lines[0].startswith("model.dense.1: 4,096 units need ~"), lines
    assert f"the whole config needs ~{memory.format_bytes(est.total)}" in lines[0]
    assert "this test has" in lines[0]
    assert memory.refusal(est, memory.Available(est.total * 2, "this test")) == []


def test_on_gpus_the_model_is_held_per_device_and_the_data_by_the_host():
    est = memory.Estimate(1 * 10**9, 2 * 10**9, 4 * 10**9, 10**9, 10**8, 32)
    est.parts_of = {"model.dense.0": {"weights": 3 * 10**9, "activations": 4 * 10**9}}
    host = memory.Available(2 * 10**9, "this machine")
    # Two GPUs: each holds weights + optimizer (3 GB) and half the batch (2 GB).
    assert memory.refusal(est, host, memory.Available(5 * 10**9, "GPU:0", 2)) == []
    lines = memory.refusal(est, host, memory.Available(4 * 10**9, "GPU:0", 2))
    assert lines[0].startswith("model.dense.0: ") and "GPU:0 has 4.0 GB available" in lines[0]
    small_host = memory.Available(10**9, "this machine")  # data and runtime: 1.1 GB
    lines = memory.refusal(est, small_host, memory.Available(5 * 10**9, "GPU:0", 2))
    assert "this machine has 1.0 GB available" in lines[0]


def test_synthetic_spec_is_the_one_load_data_gives():
    from bigmodel_cli import data as data_lib
    from bigmodel_cli.models import memory_data

    for name, overrides in [
        ("transformer_lm.yaml", []),
        ("transformer_classifier.yaml", []),
        ("rnn_sequences.yaml", []),
        ("examples/cnn_28x28.yaml", []),
        ("examples/dense_sgd_100_features.yaml", []),
        ("examples/sequential_cnn.yaml", []),
        ("digits_mlp.yaml", ["data={source: synthetic, task: regression}", "loss=mse",
                             "metrics=[mae]"]),
    ]:  # fmt: skip
        cfg = config(overrides, name)
        assert memory_data.synthetic_spec(cfg) == data_lib.load_data(cfg, CONFIGS).spec, name


def test_memory_limit_from_the_environment(monkeypatch):
    assert memory.parse_size("64GB") == 64 * 10**9
    assert memory.parse_size("1.5 mb") == 1_500_000
    assert memory.parse_size("lots") is None
    monkeypatch.setenv("BIGMODEL_MEMORY_LIMIT", "1GB")
    memory.host_available.cache_clear()
    try:
        assert memory.host_available() == memory.Available(10**9, "BIGMODEL_MEMORY_LIMIT")
        monkeypatch.setenv("BIGMODEL_MEMORY_LIMIT", "lots")
        memory.host_available.cache_clear()
        with pytest.raises(UserError, match="BIGMODEL_MEMORY_LIMIT: 'lots' is not a size"):
            memory.host_available()
    finally:
        monkeypatch.delenv("BIGMODEL_MEMORY_LIMIT")
        memory.host_available.cache_clear()


def test_validate_prints_the_estimate_and_train_records_it(runner, tmp_path):
    from bigmodel_cli.cli import app

    path = str(CONFIGS / "examples" / "dense_sgd_100_features.yaml")
    shown = runner.invoke(app, ["validate", path])
    assert shown.exit_code == 0, shown.output
    assert "memory: ~" in shown.output and "per batch of 32" in shown.output
    estimate = json.loads(runner.invoke(app, ["validate", path, "--json"]).stdout)
    assert estimate["memory_estimate_bytes"] == sum(
        estimate["memory"][part]
        for part in ("weights", "optimizer", "activations", "data", "runtime")
    )
    trained = runner.invoke(
        app, ["train", path, "--json", "--set", "train.epochs=1", "--set",
              f"output.dir={tmp_path}"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["memory_estimate_bytes"] == estimate["memory_estimate_bytes"]
    assert summary["peak_rss_bytes"] > 100e6  # this process has TensorFlow loaded


# === The estimate against measured peaks ========================================

BASELINE_REPORT = """
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM")))
"""


@pytest.fixture(scope="module")
def tensorflow_baseline(tmp_path_factory) -> int:
    """Peak RSS of a process that only imports what `bigmodel train` does. First, one
    run measures this machine's peak FLOP/s into the (per test session) cache, as any
    machine's first run does once: the runs compared then measure only themselves."""
    warm_up = run_measured(
        "train", str(CONFIGS / "examples" / "linear_regression_y_2x.yaml"), "--set",
        "train.epochs=1", "--set", f"output.dir={tmp_path_factory.mktemp('warm-up')}",
    )  # fmt: skip
    assert warm_up.returncode == 0, warm_up.stderr[-3000:]
    code = (
        "import bigmodel_cli.cli, bigmodel_cli.training\n"
        "from bigmodel_cli.tfenv import import_tensorflow\nimport_tensorflow()\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code + BASELINE_REPORT], capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    return int(process.stdout.split()[-1]) * 1024


@pytest.mark.slow
@pytest.mark.multiprocess
def test_estimates_are_within_2x_of_measured_peaks(runner, tensorflow_baseline, tmp_path):
    """For each shipped config: validate's estimate vs. the peak RSS of one short training
    run above the TensorFlow baseline (the estimate counts what the config adds)."""
    from bigmodel_cli.cli import app

    estimates = {}
    for path in SHIPPED_CONFIGS:  # in this process: validate allocates no model
        shown = runner.invoke(app, ["validate", str(path), "--json"])
        assert shown.exit_code == 0, shown.output
        estimates[path] = json.loads(shown.stdout)["memory_estimate_bytes"]

    def measure(path: Path) -> int:
        trained = run_measured(
            "train", str(path), "--json", "--set", "train.epochs=1", "--set",
            "train.steps_per_epoch=3", "--set", f"output.dir={tmp_path / path.stem}",
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
        summary = json.loads(trained.stdout)
        assert summary["memory_estimate_bytes"] == estimates[path]  # train checks the same
        assert summary["peak_rss_bytes"] <= trained.peak_rss
        return trained.peak_rss - tensorflow_baseline

    with ThreadPoolExecutor(2) as pool:
        added = dict(zip(SHIPPED_CONFIGS, pool.map(measure, SHIPPED_CONFIGS), strict=True))
    report = "\n".join(
        f"{path.relative_to(CONFIGS)}: estimate {estimates[path] / 1e6:.0f} MB, "
        f"measured {added[path] / 1e6:.0f} MB"
        for path in SHIPPED_CONFIGS
    )
    for path in SHIPPED_CONFIGS:
        assert added[path] / 2 <= estimates[path] <= added[path] * 2, report
