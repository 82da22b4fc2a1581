"""`data.source: image_dir`, `data.augment` and the Vision Transformer (`patch_size`):
folders of synthetic stripe images written here, read, trained on and evaluated; bad
folders and files exit 2 without a run directory."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bigmodel_cli.cli import app
from bigmodel_cli.config.sections import AugmentConfig
from bigmodel_cli.data import layout_shape, load_data, make_dataset
from bigmodel_cli.data.augment import augment_batches
from bigmodel_cli.data.decode import decoded_array
from bigmodel_cli.data.images import load_images
from bigmodel_cli.data.sources.image_dir import read_image_dir
from bigmodel_cli.errors import ConfigError, DataError
from tests.helpers import run_dir_of, train
from tests.helpers.data import make_cfg, problems

SIZE = 12
PATTERNS = ("horizontal", "vertical", "diagonal")


# === Synthetic image folders =================================================


def stripes(pattern: str, rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    """A noisy SIZE x SIZE uint8 image of 2-pixel stripes in one direction."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    along = {"horizontal": rows, "vertical": cols, "diagonal": rows + cols}[pattern]
    light = (along + rng.integers(4)) % 4 < 2
    image = np.where(light, 190.0, 60.0) + rng.normal(0, 25, (SIZE, SIZE))
    image = np.repeat(image[..., None], channels, axis=-1) * rng.uniform(0.8, 1.0, channels)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())
    return path


def write_bmp(path: Path, image: np.ndarray) -> Path:
    """An uncompressed 24-bit BMP of an (h, w, 3) uint8 array (TF cannot encode BMP)."""
    height, width, _ = image.shape
    pad = (-3 * width) % 4
    rows = b"".join(image[y, :, ::-1].tobytes() + b"\0" * pad for y in range(height - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    path.write_bytes(header + info + rows)
    return path


def stripes_folder(root: Path, per_class: int = 40, patterns=PATTERNS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for pattern in patterns:
        for index in range(per_class):
            write_png(root / pattern / f"{index:03d}.png", stripes(pattern, rng))
    return root


def folder_config(path, model: dict | None = None, **data) -> dict:
    return {
        "name": "stripes",
        "seed": 1,
        "data": {
            "source": "image_dir",
            "path": str(path),
            "image_size": [SIZE, SIZE],
            "color_mode": "grayscale",
            "test_split": 0.2,
            "batch_size": 16,
            **data,
        },
        "model": model
        or {
            "type": "cnn",
            "conv": [{"filters": 8, "kernel_size": 3, "padding": "same", "pool": 2}],
            "dense": [16],
        },
        "optimizer": {"name": "adam", "learning_rate": 3e-3},
        "train": {"epochs": 6},
    }


# === Reading a folder ========================================================


def test_reads_one_class_per_sorted_subfolder(tmp_path):
    stripes_folder(tmp_path / "images", per_class=5, patterns=("vertical", "horizontal"))
    (tmp_path / "images" / "vertical" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / "vertical" / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / "images" / ".cache").mkdir()  # a hidden folder is not a class
    rng = np.random.default_rng(1)
    write_png(
        tmp_path / "images" / "horizontal" / "deeper" / "EXTRA.PNG", stripes("horizontal", rng)
    )
    cfg = make_cfg({"source": "image_dir", "path": "images", "image_size": [6, 8]}, "cnn")

    raw = read_image_dir(cfg, tmp_path)  # the relative path resolves against base_dir

    assert raw.class_names == ("horizontal", "vertical")
    assert raw.x.shape == (11, 6, 8, 3) and raw.x.dtype == np.uint8  # default color_mode rgb
    assert np.bincount(raw.y).tolist() == [6, 5]
    assert (raw.kind, raw.task, raw.num_classes) == ("image", "classification", 2)
    assert raw.encoded is not None and len(raw.encoded) == 11  # decoded as batches are read
    assert any("decoded a batch at a time" in note for note in raw.notes)
    assert any("ignored 1 file" in note for note in raw.notes)


def test_color_modes_convert_between_gray_color_and_alpha(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    gray = np.full((4, 4, 1), 90, np.uint8)
    paths = [write_png(tmp_path / "rgb.png", rgb), write_png(tmp_path / "gray.png", gray)]
    # decode_image itself refuses channels=1 for BMP files: converted after decoding.
    paths.append(write_bmp(tmp_path / "rgb.BMP", rgb))

    def load(mode: str) -> np.ndarray:
        cfg = make_cfg(
            {"source": "image_dir", "path": ".", "image_size": [4, 4], "color_mode": mode}, "cnn"
        )
        return load_images(paths, cfg)[:, 0, 0, :]

    grayscale, color, rgba = load("grayscale"), load("rgb"), load("rgba")
    assert grayscale[:, 0].tolist() == [60, 90, 60]  # luma of red 200: 0.2989 * 200 = 59.8
    assert color.tolist() == [[200, 0, 0], [90, 90, 90], [200, 0, 0]]
    assert rgba[:, 3].tolist() == [255, 255, 255]


def test_load_images_decodes_like_the_folder_reader(tmp_path):
    folder = stripes_folder(tmp_path / "images", per_class=3, patterns=PATTERNS[:2])
    cfg = make_cfg(
        {
            "source": "image_dir",
            "path": str(folder),
            "image_size": [5, 7],
            "color_mode": "grayscale",
        },
        "cnn",
    )
    raw = read_image_dir(cfg, tmp_path)
    paths = sorted((folder / PATTERNS[1]).glob("*.png"))
    assert np.array_equal(load_images(paths, cfg), decoded_array(raw.encoded)[raw.y == 1])
    assert load_images([], cfg).shape == (0, 5, 7, 1)


@pytest.mark.parametrize(
    "damage,phrases",
    [
        ("missing", ["data.path", "no such folder"]),
        ("file", ["data.path", "not a folder"]),
        ("one_class", ["data.path", "only 'horizontal'", "two or more"]),
        ("empty_class", ["class folder 'vertical'", "has no images"]),
        ("corrupt", ["broken.png", "garbage.jpg", "not a readable image"]),
    ],
)
def test_bad_folders_exit_2_naming_the_problem_and_create_no_run(
    runner, tmp_path, write_config, damage, phrases
):
    images = tmp_path / "images"
    stripes_folder(images, per_class=4, patterns=("horizontal", "vertical"))
    if damage == "missing":
        images = tmp_path / "nowhere"
    elif damage == "file":
        images = write_png(tmp_path / "one.png", np.zeros((4, 4, 1), np.uint8))
    elif damage == "one_class":
        for path in (images / "vertical").iterdir():
            path.unlink()
        (images / "vertical").rmdir()
    elif damage == "empty_class":
        for path in (images / "vertical").iterdir():
            path.rename(path.with_suffix(".txt"))
    elif damage == "corrupt":
        (images / "vertical" / "broken.png").write_bytes(b"\x89PNG but not really")
        (images / "horizontal" / "garbage.jpg").write_bytes(b"")
    result = train(runner, write_config(folder_config(images)))
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


# === Training and evaluating =================================================


def test_cnn_learns_stripes_from_a_folder_and_evaluates(runner, tmp_path, write_config):
    stripes_folder(tmp_path / "images")
    augment = {"rotation": 0.02, "translation": 0.1, "contrast": 0.2}
    # A relative path: resolved against the config file's folder.
    run = run_dir_of(train(runner, write_config(folder_config("images", augment=augment))))

    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.8, summary["test"]  # chance is 1/3
    assert summary["data"]["spec"]["class_names"] == sorted(PATTERNS)

    result = runner.invoke(app, ["evaluate", str(run), "--json"])  # the run's absolute path
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert set(report["per_class"]) == set(PATTERNS)

    # New images, never seen in training, decoded and normalized as training did.
    rng = np.random.default_rng(99)
    new = [write_png(tmp_path / "new" / f"{p}.png", stripes(p, rng)) for p in PATTERNS * 3]
    result = runner.invoke(app, ["predict", str(run), *map(str, new)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == [str(p) for p in new]
    correct = sum(line["class"] == Path(line["input"]).stem for line in lines)
    assert correct >= 7, lines  # of 9; chance is 3
    assert set(lines[0]["probabilities"]) == set(PATTERNS)
    (tmp_path / "new" / "broken.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "new" / "broken.png")])
    assert result.exit_code == 2 and "broken.png" in result.output


# === Augmentation ============================================================


def image_bundle(augment: dict, model: str = "cnn"):
    cfg = make_cfg(
        {
            "source": "synthetic",
            "task": "image",
            "examples": 64,
            "batch_size": 16,
            "augment": augment,
        },
        model,
    )
    return cfg, load_data(cfg, Path("."))


def batches(ds) -> list[np.ndarray]:
    return [x for x, _ in ds.as_numpy_iterator()]


def test_augmentation_changes_training_batches_only():
    cfg, bundle = image_bundle({"rotation": 0.1, "zoom": 0.2, "flip": "horizontal"})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"shuffle": False})})
    plain = bundle.train.x.astype(np.float32)

    evaluation = np.concatenate(
        batches(make_dataset(bundle.train, cfg, bundle.spec, training=False))
    )
    assert np.array_equal(evaluation, plain)  # validation, test, evaluate: untouched

    training = make_dataset(bundle.train, cfg, bundle.spec, training=True, start=(0, 0))
    augmented = np.concatenate(batches(training.take(-(-len(plain) // 16))))  # one epoch
    assert augmented.shape == plain.shape and augmented.dtype == np.float32
    assert not np.allclose(augmented, plain)


def test_a_batch_is_augmented_by_its_place_in_the_stream_so_resumes_match():
    augment = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2, "translation": 0.1,
               "contrast": 0.3}  # fmt: skip
    cfg, bundle = image_bundle(augment)
    per_epoch = -(-len(bundle.train) // 16)  # batches per epoch

    def stream(start, count):
        ds = make_dataset(bundle.train, cfg, bundle.spec, training=True, start=start)
        return batches(ds.take(count))

    whole = stream((0, 0), per_epoch + 3)
    # Resumed mid-epoch and on the next epoch's boundary: the very same batches.
    for start, offset in (((0, 2), 2), ((1, 0), per_epoch), ((1, 1), per_epoch + 1)):
        resumed = stream(start, 2)
        for a, b in zip(resumed, whole[offset : offset + 2], strict=True):
            np.testing.assert_array_equal(a, b)
    # ... and the transformations still differ from batch to batch.
    assert not np.allclose(whole[0], whole[per_epoch])


def test_augment_batches_is_seeded_and_leaves_labels_alone():
    x = np.random.default_rng(0).normal(size=(8, 10, 10, 2)).astype(np.float32)
    y = np.arange(8)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    cfg = AugmentConfig(rotation=0.1, translation=0.2)
    first = list(augment_batches(ds, cfg, seed=3).as_numpy_iterator())
    again = list(augment_batches(ds, cfg, seed=3).as_numpy_iterator())
    other = list(augment_batches(ds, cfg, seed=4).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], other[0][0])
    assert np.concatenate([b[1] for b in first]).tolist() == y.tolist()


def test_contrast_keeps_standardized_values_unclipped():
    """Keras's RandomContrast clips to [0, 255]: every negative input would become 0."""
    x = np.random.default_rng(0).normal(size=(16, 6, 6, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(16))).batch(16)
    ((out, _),) = augment_batches(ds, AugmentConfig(contrast=0.5), seed=0).as_numpy_iterator()
    assert out.min() < -1 and not np.allclose(out, x)
    # Contrast scales around each image's per-channel mean, which it keeps.
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-5)
    # One factor per image, shared by its channels.
    ratio = (out - out.mean(axis=(1, 2), keepdims=True)) / (x - x.mean(axis=(1, 2), keepdims=True))
    spread = ratio.reshape(16, -1)
    np.testing.assert_allclose(spread.min(axis=1), spread.max(axis=1), rtol=1e-3)
    assert np.ptp(spread[:, 0]) > 0.05


@pytest.mark.parametrize(
    "model,hint",
    [("mlp", "model.type cnn"), ("rnn", "model.type cnn"), ("transformer", "patch_size")],
)
def test_augment_needs_a_model_that_reads_images(model, hint):
    with pytest.raises(DataError) as caught:
        image_bundle({"zoom": 0.1}, model)
    assert "data.augment" in problems(caught) and hint in problems(caught)


def test_augment_on_non_image_data_is_refused():
    data = {"source": "synthetic", "task": "classification", "augment": {"flip": "vertical"}}
    cfg = make_cfg(data, "cnn")
    with pytest.raises(DataError) as caught:
        load_data(cfg, Path("."))
    assert "data.augment" in problems(caught) and "tabular" in problems(caught)


def test_augment_batches_refuses_batches_that_are_not_images():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 64), np.float32), np.zeros(4))).batch(2)
    with pytest.raises(ConfigError, match="data.augment"):
        augment_batches(ds, AugmentConfig(zoom=0.1), seed=0)


def test_inactive_augment_is_not_applied():
    cfg, bundle = image_bundle({"zoom": 0.0}, "mlp")  # all off: the mlp is fine
    assert not cfg.data.augment.active and bundle.spec.input_shape == (16 * 16,)


# === Vision Transformer ======================================================

VIT = {
    "type": "transformer",
    "patch_size": 4,
    "d_model": 32,
    "num_heads": 2,
    "num_layers": 1,
    "ff_dim": 64,
}


def test_vit_keeps_images_as_images_and_counts_patch_flops():
    import tf_keras as keras

    from bigmodel_cli.config import Config
    from bigmodel_cli.models import build_model
    from bigmodel_cli.models.flops import flops_per_example

    cfg = Config.model_validate({"data": {"source": "digits"}, "model": VIT})
    assert layout_shape((8, 8, 1), "image", cfg) == (8, 8, 1)
    rows = Config.model_validate(
        {"data": {"source": "digits"}, "model": {**VIT, "patch_size": None}}
    )
    assert layout_shape((8, 8, 1), "image", rows) == (8, 8)  # without patches: rows as steps

    bundle = load_data(cfg, Path("."))
    assert bundle.spec.input_shape == (8, 8, 1)
    model = build_model(cfg, bundle.spec)
    assert model.get_layer("patches").output_shape == (None, 4, 32)
    assert model.get_layer("patch_embedding").count_params() == 4 * 4 * 32 + 32
    embedding = keras.Model(model.input, model.get_layer("patches").output)
    patch_flops = 2 * (4 * 4 * 1 * 32) * 4  # kernel entries x output positions (4 patches)
    assert flops_per_example(embedding) == patch_flops
    assert flops_per_example(model) > patch_flops


def test_vit_learns_digits_and_evaluates(runner, tmp_path, write_config):
    config = {
        "name": "vit",
        "data": {"source": "digits"},
        "model": VIT,
        "optimizer": {"name": "adam", "learning_rate": 3e-3},
        "train": {"epochs": 4},
    }
    run = run_dir_of(train(runner, write_config(config)))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.6, summary["test"]  # chance is 0.1
    result = runner.invoke(app, ["evaluate", str(run), "--json"])  # safe_mode load
    assert result.exit_code == 0, result.output


def test_vit_with_augmentation_reads_a_folder(tmp_path):
    from bigmodel_cli.config import Config
    from bigmodel_cli.models import build_model

    stripes_folder(tmp_path / "images", per_class=4)
    data = folder_config("images", augment={"flip": "horizontal_and_vertical"})["data"]
    cfg = Config.model_validate({"data": data, "model": VIT})
    bundle = load_data(cfg, tmp_path)
    assert bundle.spec.input_shape == (SIZE, SIZE, 1)
    assert build_model(cfg, bundle.spec).get_layer("patches").output_shape == (None, 9, 32)


@pytest.mark.parametrize(
    "model,data,phrases",
    [
        ({**VIT, "patch_size": 3}, {"source": "digits"}, ["model.patch_size", "8x8", "1, 2, 4, 8"]),
        ({**VIT, "patch_size": 16}, {"source": "digits"}, ["model.patch_size", "16"]),
        (VIT, {"source": "iris"}, ["model.patch_size", "images"]),
        ({**VIT, "max_length": 2}, {"source": "digits"}, ["model.max_length", "patches"]),
    ],
)
def test_vit_misfits_exit_2_and_create_no_run(runner, tmp_path, write_config, model, data, phrases):
    result = train(runner, write_config({"name": "vit", "data": data, "model": model}))
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


# === Limits ==================================================================


def test_an_image_size_beyond_the_limit_is_a_config_error(runner, tmp_path, write_config):
    config = write_config(folder_config("images", image_size=[100000, 100000]))
    result = runner.invoke(app, ["validate", str(config), "--no-build"])
    assert result.exit_code == 2 and "data.image_size" in result.output


def test_images_that_would_not_fit_in_memory_still_load_as_a_file_list(tmp_path, monkeypatch):
    from bigmodel_cli.data import images as image_folder

    stripes_folder(tmp_path / "images", per_class=4)
    monkeypatch.setattr(image_folder, "_available_memory", lambda: 1_000_000)
    data = {"source": "image_dir", "path": "images", "image_size": [512, 512]}
    bundle = load_data(make_cfg(data, "cnn"), tmp_path)
    # 12 images of 512x512x3 are 9 MB decoded; only where they are is held.
    assert bundle.train.x is None and len(bundle.train.encoded) == len(bundle.train)
    assert sum(len(part) for part in (bundle.train, bundle.validation, bundle.test) if part) == 12


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    root = stripes_folder(tmp_path / "images", per_class=3)
    os.mkfifo(root / "vertical" / "pipe.png")
    cfg = make_cfg({"source": "image_dir", "path": str(root), "image_size": [SIZE, SIZE]}, "cnn")
    raw = read_image_dir(cfg, tmp_path)
    assert len(raw.x) == 9


def test_data_limit_decodes_only_the_kept_images(tmp_path):
    root = stripes_folder(tmp_path / "images", per_class=10)
    data = {"source": "image_dir", "path": str(root), "image_size": [SIZE, SIZE], "limit": 12}
    raw = read_image_dir(make_cfg(data, "cnn"), tmp_path)
    assert len(raw.x) == len(raw.y) == 12
    assert any("decoding 12 of 30" in note for note in raw.notes)
    everything = read_image_dir(make_cfg({**data, "limit": None}, "cnn"), tmp_path)
    kept, every = decoded_array(raw.encoded), decoded_array(everything.encoded)
    # The kept images are a subset of the folder's, each with its own label.
    for image, label in zip(kept, raw.y, strict=True):
        matches = np.flatnonzero((every == image).all(axis=(1, 2, 3)))
        assert label in everything.y[matches]
