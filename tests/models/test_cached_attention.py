"""layers.CachedMultiHeadAttention: one position at a time through the cache gives what
causal attention over the whole sequence gives; a copy of a trained MultiHeadAttention
keeps its weights; the layer saves and reloads with safe_mode=True."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tf_keras as keras  # noqa: E402

from bigmodel_cli.layers import CachedMultiHeadAttention, LayersModel  # noqa: E402

STEPS, WIDTH = 6, 8


def trained_attention() -> tuple[keras.layers.MultiHeadAttention, np.ndarray]:
    """A built plain MultiHeadAttention (as every saved run holds) and an input for it."""
    keras.utils.set_random_seed(1)
    attention = keras.layers.MultiHeadAttention(2, key_dim=4)
    x = np.random.default_rng(0).normal(size=(1, STEPS, WIDTH)).astype("float32")
    attention(x, x, use_causal_mask=True)
    return attention, x


def test_a_copy_keeps_the_weights_and_attends_as_the_original():
    attention, x = trained_attention()
    copy = CachedMultiHeadAttention.from_attention(attention)
    assert copy.get_config() == attention.get_config()
    expected = attention(x, x, use_causal_mask=True).numpy()
    np.testing.assert_allclose(copy(x, x, use_causal_mask=True).numpy(), expected, atol=1e-6)


def test_each_cached_position_equals_causal_attention_over_the_sequence():
    attention, x = trained_attention()
    expected = attention(x, x, use_causal_mask=True).numpy()
    cached = CachedMultiHeadAttention.from_attention(attention)
    cache = cached.empty_cache(1, STEPS)
    assert tuple(cache.shape) == (1, 2, STEPS, 2, 4)
    prefix = 2  # the first positions at once (a prefill), then one at a time
    visible = np.tril(np.ones((STEPS, STEPS), bool))[None]
    out, cache = cached(x[:, :prefix], x[:, :prefix], attention_mask=visible[:, :prefix],
                        cache=cache, cache_update_index=0)  # fmt: skip
    np.testing.assert_allclose(out.numpy(), expected[:, :prefix], atol=1e-5)
    for i in range(prefix, STEPS):
        step = x[:, i : i + 1]
        out, cache = cached(step, step, attention_mask=visible[:, i : i + 1], cache=cache,
                            cache_update_index=i)  # fmt: skip
        np.testing.assert_allclose(out.numpy(), expected[:, i : i + 1], atol=1e-5)


def test_the_layer_survives_a_safe_reload(tmp_path):
    inputs = keras.Input((STEPS, WIDTH))
    outputs = CachedMultiHeadAttention(2, key_dim=4, name="attn")(
        inputs, inputs, use_causal_mask=True
    )
    model = LayersModel(inputs, outputs)
    x = np.random.default_rng(2).normal(size=(2, STEPS, WIDTH)).astype("float32")
    path = tmp_path / "attn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("attn")) is CachedMultiHeadAttention
    assert keras.saving.get_registered_name(CachedMultiHeadAttention) == (
        "bigmodel>CachedMultiHeadAttention"
    )
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
