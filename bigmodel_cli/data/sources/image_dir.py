"""`data.source: image_dir`: a folder with one sub-folder of images per class.

```
path/
  cat/  001.png  002.jpg ...
  dog/  a.jpeg  sub/b.png ...
```

Class names are the sorted sub-folder names, labels 0..K-1. A class folder's images are
every `.png .jpg .jpeg .gif .bmp` file in it or below it (suffix case-insensitive);
other files, hidden files and hidden folders are ignored. The images are decoded and
resized as `data.images` says (to `data.color_mode` and `data.image_size`).

**Memory.** Only the file list is held (with each file's size and label): the images
are decoded a batch at a time as training reads them (data/decode.py), so memory does
not grow with the number of images. Every file's header is read before training (an
image too large, or in a format refused, stops the run before it starts); an image that
cannot be decoded stops it when a batch reaches it, naming every such file.

**Errors** (exit 2): a missing folder, fewer than two class folders, a class folder
without images, images refused before decoding, and every file that cannot be read or
decoded (all reported together, each by its path).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bigmodel_cli.config import Config
from bigmodel_cli.data.images import DEFAULT_COLOR_MODE, IMAGE_SUFFIXES, encoded_files
from bigmodel_cli.data.images import image_shape as image_shape  # predict reads it here
from bigmodel_cli.data.raw import RawData, encoded_stand_in
from bigmodel_cli.errors import DataError


def read_image_dir(cfg: Config, base_dir: Path) -> RawData:
    """Read `cfg.data.path` (relative to `base_dir`): see the module docstring."""
    folder = Path(cfg.data.path or "").expanduser()
    folder = (folder if folder.is_absolute() else Path(base_dir) / folder).resolve()
    entries = _folder_entries(folder)
    class_dirs = sorted(
        (entry for entry in entries if entry.is_dir() and not _hidden(entry.name)),
        key=lambda entry: entry.name,
    )
    if len(class_dirs) < 2:
        found = f"only {class_dirs[0].name!r}" if class_dirs else "none"
        raise DataError(
            f"data.path: {folder}: found {found} as class sub-folder; classification needs "
            "two or more, one sub-folder of images per class (e.g. cat/, dog/)"
        )
    paths, labels, ignored = _class_images(class_dirs)
    notes = []
    limit = cfg.data.limit
    if limit and limit < len(paths):
        # The seeded subset load_data would keep, chosen before decoding the rest.
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(paths))[:limit])
        notes.append(f"data.limit: decoding {limit} of {len(paths)} images")
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    encoded = encoded_files(paths, cfg)
    names = tuple(entry.name for entry in class_dirs)
    height, width, channels = encoded.shape
    color_mode = cfg.data.color_mode or DEFAULT_COLOR_MODE
    notes.append(
        f"images decoded a batch at a time as training reads them: {len(paths)} files of "
        f"{int(encoded.lengths.sum()) / 2**20:.1f} MB, {height}x{width}x{channels} uint8 "
        f"= {len(paths) * height * width * channels / 2**20:.1f} MB once decoded"
    )
    notes += _ignored_notes(folder, entries, ignored)
    description = (
        f"image_dir {folder}: {len(paths)} images in {len(names)} classes, resized to "
        f"{height}x{width} {color_mode}"
    )
    y = np.asarray(labels, dtype=np.int64)
    return RawData(
        x=encoded_stand_in(len(paths), encoded.shape),
        y=y,
        task="classification",
        kind="image",
        description=description,
        num_classes=len(names),
        class_names=names,
        notes=notes,
        encoded=encoded,
    )


def _folder_entries(folder: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(f"data.path: {folder}: no such folder")
    if not folder.is_dir():
        raise DataError(
            f"data.path: {folder}: not a folder; image_dir expects a folder with one "
            "sub-folder of images per class"
        )
    try:
        return list(folder.iterdir())
    except OSError as err:
        raise DataError(f"data.path: {folder}: cannot list the folder ({err.strerror})") from None


def _class_images(class_dirs: list[Path]) -> tuple[list[Path], list[int], int]:
    """(every class's images, their labels, how many other files the folders hold)."""
    paths: list[Path] = []
    labels: list[int] = []
    problems = []
    ignored = 0
    for label, class_dir in enumerate(class_dirs):
        images, others = _image_files(class_dir)
        ignored += others
        if not images:
            problems.append(
                f"data.path: class folder {class_dir.name!r} ({class_dir}) has no images; "
                f"expected files ending in {', '.join(IMAGE_SUFFIXES)}. Add images or "
                "remove the folder"
            )
        paths += images
        labels += [label] * len(images)
    if problems:
        raise DataError(problems)
    return paths, labels, ignored


def _ignored_notes(folder: Path, entries: list[Path], ignored: int) -> list[str]:
    notes = []
    if ignored:
        notes.append(
            f"data.path: ignored {ignored} file(s) in class folders that are not "
            f"{'/'.join(IMAGE_SUFFIXES)} images"
        )
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        notes.append(
            f"data.path: ignored {len(loose)} image(s) directly in {folder}; only images in "
            "class sub-folders are read"
        )
    return notes


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _image_files(class_dir: Path) -> tuple[list[Path], int]:
    """The images in (or below) one class folder, sorted, and how many other files."""
    images, others = [], 0
    for root, dirs, files in os.walk(class_dir):
        dirs[:] = [d for d in dirs if not _hidden(d)]  # prune hidden folders in place
        for name in files:
            if _hidden(name):
                continue
            path = Path(root) / name
            # is_file: a FIFO or device named x.png would block the decoder forever.
            if name.lower().endswith(IMAGE_SUFFIXES) and path.is_file():
                images.append(path)
            else:
                others += 1
    return sorted(images), others
