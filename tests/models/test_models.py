"""Model builders: every preset has exactly the parameters of the same layers written by
hand, dispatches by input rank and task, saves and reloads with safe_mode=True."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tf_keras as keras  # noqa: E402

from bigmodel_cli import registry  # noqa: E402
from bigmodel_cli.config import Config  # noqa: E402
from bigmodel_cli.config.load import config_from_mapping, load_config  # noqa: E402
from bigmodel_cli.errors import ConfigError  # noqa: E402
from bigmodel_cli.layers import PositionEncoding, TokenAndPositionEmbedding  # noqa: E402
from bigmodel_cli.models import BUILDERS, build_model  # noqa: E402
from bigmodel_cli.spec import DataSpec  # noqa: E402
from tests.helpers import CONFIGS  # noqa: E402

FEATURES = DataSpec(task="classification", input_shape=(100,), num_classes=10)
DIGITS = DataSpec(task="classification", input_shape=(8, 8, 1), num_classes=10)
TOKENS = DataSpec(
    task="classification", input_shape=(6,), input_dtype="int32", vocab_size=20, num_classes=3
)
SERIES = DataSpec(task="classification", input_shape=(6, 3), num_classes=3)
CORPUS = DataSpec(
    task="language_model",
    input_shape=(6,),
    input_dtype="int32",
    vocab_size=11,
    num_classes=11,
    sequence_length=6,
)
REGRESSION = DataSpec(task="regression", input_shape=(5,), target_size=2)


def config(model: dict, **sections) -> Config:
    return Config.model_validate({"name": "test-model", "model": model, **sections})


def build(model: dict, spec: DataSpec, **sections) -> keras.Model:
    return build_model(config(model, **sections), spec)


def problems(excinfo) -> str:
    return "\n".join(excinfo.value.problems)


# === Parameter counts equal the same layers by hand ===========================


def layer_table(model: keras.Model) -> list[tuple[str, tuple, int]]:
    """(class, output shape, parameters) of every layer but the input, in order."""
    return [
        (type(layer).__name__, layer.output_shape, layer.count_params())
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def shipped(name: str, spec: DataSpec) -> keras.Model:
    return build_model(load_config(CONFIGS / "examples" / name), spec)


def test_mlp_recipe_is_exactly_three_dense_layers():
    model = shipped("dense_sgd_100_features.yaml", FEATURES)
    by_hand = keras.Sequential(
        [
            keras.Input((100,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    assert layer_table(model) == layer_table(by_hand)
    assert model.count_params() == by_hand.count_params() == 21_834
    assert model.layers[-1].name == "predictions"
    assert model.layers[-1].dtype == "float32"


def test_mlp_flattens_only_inputs_of_rank_above_one():
    model = build({"type": "mlp", "dense": [4]}, DIGITS)
    assert [type(layer).__name__ for layer in model.layers][1] == "Flatten"
    assert model.count_params() == (64 * 4 + 4) + (4 * 10 + 10)


def test_mlp_batch_norm_and_dropout_blocks_in_order():
    model = build({"type": "mlp", "dense": [4], "batch_norm": True, "dropout": 0.5}, FEATURES)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Dense", "BatchNormalization", "Activation", "Dropout", "Dense"]
    assert model.layers[1].activation.__name__ == "linear"  # activation follows the norm


def keras_cnn(shape, filters, dense, dropout=0.0, pool_padding="valid") -> keras.Model:
    """The classic Keras CNN: 3x3 valid Conv + MaxPooling(2) blocks, Flatten, Dense, softmax."""
    layers = [keras.Input(shape)]
    for width in filters:
        layers.append(keras.layers.Conv2D(width, 3, activation="relu"))
        layers.append(keras.layers.MaxPooling2D(2, padding=pool_padding))
        layers += [keras.layers.Dropout(dropout)] if dropout else []
    layers.append(keras.layers.Flatten())
    for units in dense:
        layers.append(keras.layers.Dense(units, activation="relu"))
        layers += [keras.layers.Dropout(dropout)] if dropout else []
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


@pytest.mark.parametrize(
    ("config_name", "shape", "filters", "dense", "dropout", "params"),
    [
        ("cnn_28x28.yaml", (28, 28, 1), [32, 64], [128], 0.0, 225_034),
        ("cnn_224x224.yaml", (224, 224, 3), [32, 64, 128], [512], 0.5, 44_401_226),
    ],
    ids=["28x28x1", "224x224x3"],
)
def test_classic_cnn_recipes_are_the_keras_layers(
    config_name, shape, filters, dense, dropout, params
):
    spec = DataSpec(task="classification", input_shape=shape, num_classes=10)
    model = shipped(config_name, spec)
    by_hand = keras_cnn(shape, filters, dense, dropout)
    assert layer_table(model) == layer_table(by_hand)
    assert model.count_params() == by_hand.count_params() == params


def test_contract_digits_cnn_needs_pool_padding_same_on_8x8():
    conv = [{"filters": 32, "kernel_size": 3, "pool": 2}, {"filters": 64, "pool": 2}]
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "cnn", "conv": conv, "dense": [128]}, DIGITS)
    assert problems(excinfo).startswith("model.conv.1.pool:")
    assert "(1x1)" in problems(excinfo) and "pool_padding: same" in problems(excinfo)

    conv[1] = {**conv[1], "pool_padding": "same"}
    model = build({"type": "cnn", "conv": conv, "dense": [128]}, DIGITS)
    by_hand = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    assert layer_table(model) == layer_table(by_hand)
    assert model.count_params() == by_hand.count_params() == 28_426


def test_pool_padding_needs_a_pool():
    with pytest.raises(ConfigError) as excinfo:
        block = {"filters": 2, "pool_padding": "same"}
        config_from_mapping({"name": "t", "model": {"type": "cnn", "conv": [block]}})
    assert problems(excinfo).startswith("model.conv.0.pool_padding:")


def test_rnn_matches_hand_built_keras():
    model = build({"type": "rnn", "cell": "gru", "units": [4, 3], "dense": [5]}, SERIES)
    by_hand = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.GRU(4, return_sequences=True),
            keras.layers.GRU(3),
            keras.layers.Dense(5, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    assert model.count_params() == by_hand.count_params()


def test_transformer_matches_hand_built_keras():
    model = build(
        {"type": "transformer", "d_model": 8, "num_heads": 2, "num_layers": 1, "ff_dim": 16},
        TOKENS,
    )
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8)(inputs)  # sinusoidal positions have no weights
    h = keras.layers.LayerNormalization()(x)
    x = x + keras.layers.MultiHeadAttention(2, key_dim=4)(h, h)
    h = keras.layers.LayerNormalization()(x)
    x = x + keras.layers.Dense(8)(keras.layers.Dense(16, activation="gelu")(h))
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    by_hand = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    assert model.count_params() == by_hand.count_params()


# === Dispatch and errors ======================================================


@pytest.mark.parametrize(
    ("shape", "conv"), [((12, 2), "Conv1D"), ((6, 6, 1), "Conv2D"), ((4, 4, 4, 1), "Conv3D")]
)
def test_cnn_picks_convolution_by_input_rank(shape, conv):
    spec = DataSpec(task="classification", input_shape=shape, num_classes=2)
    model = build({"type": "cnn", "conv": [{"filters": 2}], "global_pool": True}, spec)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[1] == conv
    assert kinds[2].startswith("GlobalAveragePooling")


def test_cnn_on_flat_features_names_model_type():
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "cnn", "conv": [{"filters": 2}]}, FEATURES)
    assert problems(excinfo).startswith("model.type:")
    assert "[100]" in problems(excinfo)


def test_cnn_kernel_larger_than_feature_map_names_the_block():
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "cnn", "conv": [{"filters": 2, "kernel_size": 5}] * 2}, DIGITS)
    assert problems(excinfo).startswith("model.conv.1:")


def test_model_input_shape_overrides_the_data():
    spec = DataSpec(task="classification", input_shape=(64,), num_classes=10)
    model = build({"type": "cnn", "input_shape": [8, 8, 1], "conv": [{"filters": 2}]}, spec)
    assert model.input_shape == (None, 8, 8, 1)


def test_rnn_embeds_tokens_and_wraps_bidirectional():
    model = build(
        {"type": "rnn", "cell": "lstm", "units": [4], "bidirectional": True, "embedding_dim": 5},
        TOKENS,
    )
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Embedding", "Bidirectional", "Dense"]
    lstm = 4 * ((5 + 4) * 4 + 4)
    assert model.count_params() == 20 * 5 + 2 * lstm + (8 * 3 + 3)


def test_rnn_on_language_model_data_predicts_every_position():
    model = build({"type": "rnn", "cell": "simple", "units": [4]}, CORPUS)
    assert model.output_shape == (None, 6, 11)


@pytest.mark.parametrize(
    ("model", "spec", "key"),
    [
        ({"type": "rnn", "embedding_dim": 8}, SERIES, "model.embedding_dim"),
        ({"type": "rnn"}, FEATURES, "model.type"),
        ({"type": "rnn", "batch_norm": True}, SERIES, "model.batch_norm"),
        ({"type": "mlp"}, CORPUS, "model.type"),
        ({"type": "transformer", "num_heads": 1, "max_length": 3}, TOKENS, "model.max_length"),
        ({"type": "transformer", "num_heads": 1, "vocab_size": 5}, TOKENS, "model.vocab_size"),
        ({"type": "transformer", "num_heads": 1}, CORPUS, "model.task"),
        ({"type": "transformer", "num_heads": 1, "task": "language_model"}, TOKENS, "model.task"),
    ],
)
def test_model_and_data_mismatch_names_the_key(model, spec, key):
    with pytest.raises(ConfigError) as excinfo:
        build(model, spec)
    assert problems(excinfo).startswith(f"{key}:")


def test_every_model_type_has_a_builder():
    from bigmodel_cli.config import MODEL_CLASSES

    assert set(BUILDERS) == set(MODEL_CLASSES)


def test_regularization_reaches_every_kernel():
    model = build(
        {"type": "rnn", "units": [3], "dense": [4]}, TOKENS, regularization={"l2": 1.0e-3}
    )
    # embedding, recurrent kernel, recurrent (hidden-to-hidden) kernel, dense, output
    assert len(model.losses) == 5
    assert build({"type": "mlp", "dense": [4]}, FEATURES).losses == []


# === Transformer ==============================================================


def test_transformer_classifies_float_sequences():
    model = build({"type": "transformer", "d_model": 8, "num_heads": 2, "dense": [4]}, SERIES)
    assert model.get_layer("input_projection").units == 8
    assert isinstance(model.get_layer("position_encoding"), PositionEncoding)
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_float_sequence_transformer_survives_safe_reload(tmp_path, positional):
    model = build(
        {"type": "transformer", "d_model": 4, "num_heads": 2, "positional": positional},
        SERIES,
    )
    series = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")
    model.save(tmp_path / "clf.keras")
    loaded = keras.models.load_model(tmp_path / "clf.keras", safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(series, verbose=0), model.predict(series, verbose=0), atol=1e-6
    )
    assert loaded.get_layer("position_encoding").get_config()["positional"] == positional


def test_position_encoding_is_the_sinusoid_table():
    layer = PositionEncoding(5, 4)
    encoded = layer(np.zeros((1, 3, 4), dtype="float32")).numpy()[0]
    assert layer.count_params() == 0
    np.testing.assert_allclose(encoded[:, 0], np.sin(np.arange(3)), atol=1e-6)
    np.testing.assert_allclose(encoded[:, 3], np.cos(np.arange(3) / 100.0), atol=1e-6)


def _language_model(positional: str) -> keras.Model:
    return build(
        {
            "type": "transformer",
            "task": "language_model",
            "d_model": 8,
            "num_heads": 2,
            "num_layers": 2,
            "positional": positional,
            "max_length": 8,
        },
        CORPUS,
        loss={"name": "sparse_categorical_crossentropy", "from_logits": True},
    )


def _assert_causal(model: keras.Model, tokens: np.ndarray) -> np.ndarray:
    changed = tokens.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % 11
    before, after = model.predict(tokens, verbose=0), model.predict(changed, verbose=0)
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not np.allclose(before[:, 4:], after[:, 4:])
    return before


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_language_model_is_causal_before_and_after_safe_reload(tmp_path, positional):
    model = _language_model(positional)
    assert model.output_shape == (None, 6, 11)
    assert isinstance(model.get_layer("embedding"), TokenAndPositionEmbedding)
    tokens = np.random.default_rng(0).integers(0, 11, size=(2, 6)).astype("int32")
    outputs = _assert_causal(model, tokens)

    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(tokens, verbose=0), outputs, atol=1e-5)
    _assert_causal(loaded, tokens)


def test_custom_objects_cover_the_custom_layers(tmp_path):
    model = _language_model("learned")
    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects=registry.custom_objects())
    assert loaded.count_params() == model.count_params()
    config = loaded.get_layer("embedding").get_config()
    assert (config["vocab_size"], config["max_length"], config["embed_dim"]) == (11, 8, 8)
    assert config["positional"] == "learned"


# === Sequential ===============================================================

SEQUENTIAL = {
    "type": "sequential",
    "input_shape": [8, 8, 1],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}


def test_sequential_is_exactly_the_layer_list():
    model = build(SEQUENTIAL, DIGITS)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert model.count_params() == (9 * 4 + 4) + (3 * 3 * 4 * 10 + 10)
    assert model.layers[-1].dtype == "float32"


def test_sequential_bad_arguments_name_every_layer_at_once():
    layers = [
        {"type": "Dense", "units": 4, "unitz": 3},
        {"type": "Dropout", "rate": 0.1},
        {"type": "Dense", "units": 3, "activation": "no_such_activation"},
    ]
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "sequential", "layers": layers}, SERIES)
    lines = excinfo.value.problems
    assert lines[0].startswith("model.layers.0: Dense:")
    assert "unitz" in lines[0]
    assert lines[1].startswith("model.layers.2: Dense:")


def test_sequential_shape_error_names_the_layer():
    layers = [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Dense", "units": 3}]
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "sequential", "layers": layers}, SERIES)
    assert problems(excinfo).startswith("model.layers.0: Conv2D:")


def test_sequential_output_must_fit_the_labels():
    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 4}]
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "sequential", "layers": layers}, SERIES)
    assert problems(excinfo).startswith("model.layers.1:")
    assert "need 3" in problems(excinfo)


def test_sequential_refuses_preset_keys_instead_of_ignoring_them():
    with pytest.raises(ConfigError) as excinfo:
        build({**SEQUENTIAL, "dropout": 0.5}, DIGITS, regularization={"l2": 0.01})
    lines = excinfo.value.problems
    assert lines[0].startswith("model.dropout:")
    assert lines[1].startswith("regularization.l2:")


# === Regression and mixed precision ===========================================


def test_regression_head_is_linear_with_target_size_units():
    model = build({"type": "mlp", "dense": [3]}, REGRESSION)
    assert model.output_shape == (None, 2)
    assert model.layers[-1].activation.__name__ == "linear"


def test_outputs_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _language_model("learned")
        assert model.get_layer("block_1_attn").compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
        tokens = np.zeros((1, 6), dtype="int32")
        assert model.predict(tokens, verbose=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_keras_errors_are_condensed_to_their_message():
    layers = [{"type": "Dense", "units": 4, "unitz": 3}, {"type": "Conv1D", "filters": 2}]
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "sequential", "layers": layers}, SERIES)
    assert excinfo.value.problems[0] == (
        "model.layers.0: Dense: Keyword argument not understood: unitz"
    )
    with pytest.raises(ConfigError) as excinfo:
        build({"type": "cnn", "conv": [{"filters": 2, "kernel_size": [3, 3, 3]}]}, DIGITS)
    assert "{{node" not in problems(excinfo)
    assert "tuple of 2 integers" in problems(excinfo)
