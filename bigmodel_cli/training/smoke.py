"""`bigmodel smoke`: train every config briefly to prove it still runs.

Each config runs with smoke overrides (one epoch of two small batches on a data subset,
into a temporary folder that is removed afterwards), one line of output per config. The
config's own model is built and trained, one step per graph call so that its training
step is traced once; the run skips what two steps cannot make meaningful: scoring the
test split and writing checkpoints/best.keras and last.keras (model.keras, the resume
backup, metrics.csv and TensorBoard are written as in any run). TensorFlow is imported
once; the configs run in two worker processes forked from it (`--jobs`), one per core.

A config that starts from another run left for the command line (`--set
init.from=RUN_DIR`, `--set distill.teacher=RUN_DIR`, as shipped) starts from a run
smoke-trained first from the same config without that section: the copy of weights
(globs, shapes, freezing) or the student and the distillation loss are what is tested.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli.config import Config, DataConfig
from bigmodel_cli.config import load as config_load
from bigmodel_cli.errors import UserError

# Enough for 10%/10% splits to be non-empty and two batches to train on; smaller
# held-out fractions get more (see smoke_examples). Batches stay tiny: smoke proves a
# config runs, and a 224x224 CNN's few steps cost seconds at batch 16.
SMOKE_EXAMPLES = 64
SMOKE_BATCH = 4
# A BPE text_corpus reads at most this much: learning merges costs about a second per
# megabyte, and a megabyte of text still yields the configured vocab_size (4096 tested).
SMOKE_BPE_BYTES = 1_000_000
# Configs smoked at once (`bigmodel smoke --jobs`): two, one per core of the smallest
# machine it runs on; more would share the same cores and add a process's memory each.
DEFAULT_JOBS = 2


@dataclass
class SmokeResult:
    path: Path
    ok: bool
    seconds: float
    detail: str


def find_configs(paths: Iterable[Path]) -> list[Path]:
    """Every *.yaml / *.yml under `paths` (files are taken as given), sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            found.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return sorted(dict.fromkeys(found))


def smoke_examples(data: DataConfig) -> int:
    """SMOKE_EXAMPLES, or enough that every held-out split gets at least one example."""
    splits = (data.validation_split, data.test_split)
    return max([SMOKE_EXAMPLES, *(math.ceil(1 / share) for share in splits if share > 0)])


def one_epoch_schedule(cfg: Config) -> list[str]:
    """Overrides that fit a pruning schedule into one epoch (`train.epochs=1`): it then
    prunes the whole epoch, to the config's sparsity."""
    if cfg.compress is None or cfg.compress.prune is None:
        return []
    return ["compress.prune.begin_epoch=0", "compress.prune.end_epoch=null"]


def smoke_overrides(path: Path, output_dir: Path) -> list[str]:
    """Overrides that make any config finish in seconds without changing its model."""
    cfg = config_load.load_config(path)
    data = cfg.data
    examples = smoke_examples(data)
    overrides = [
        "train.epochs=1",
        "train.steps_per_epoch=2",
        f"data.batch_size={min(data.batch_size, SMOKE_BATCH)}",
        f"output.dir={output_dir}",
    ]
    if data.source != "text_dir":
        # Not for text folders: their vocabulary, and with it the embedding, is learned
        # from the training split, so a subset would build a smaller model than the run's.
        overrides.append(f"data.limit={min(data.limit or examples, examples)}")
    if cfg.train.steps_per_execution == "auto":
        # One step per graph call: the training step is traced once (a multi-step call
        # traces it twice, for its loop), and tracing is most of a small config's time.
        overrides.append("train.steps_per_execution=1")
    overrides += one_epoch_schedule(cfg)
    if cfg.init is not None and cfg.init.unfreeze_after_epochs is not None:
        # The second phase too: its first epoch unfreezes, then traces the step again.
        overrides += ["train.epochs=2", "init.unfreeze_after_epochs=1"]
    if data.source == "synthetic":
        overrides.append(f"data.examples={min(data.examples or examples, examples)}")
    if data.source == "text_corpus" and data.tokenizer == "bpe":
        # Not for bytes: a byte vocabulary holds the bytes seen, so a part of the corpus
        # would build a smaller embedding than the run's (reading it all is fast).
        cap = min(data.max_bytes or SMOKE_BPE_BYTES, SMOKE_BPE_BYTES)
        overrides.append(f"data.max_bytes={cap}")
    return overrides


def smoke_one(path: Path, output_dir: Path) -> SmokeResult:
    from bigmodel_cli.training.launch import train
    from bigmodel_cli.training.options import TrainOptions

    started = time.perf_counter()
    try:
        overrides = smoke_overrides(path, output_dir)
        cfg = config_load.load_config(path, overrides)
        note = ""
        for section, key in _waiting_for_a_run(cfg):
            parent = _smoke_parent(path, overrides, output_dir, section)
            overrides = [*overrides, f"{key}={parent}"]
            cfg = config_load.load_config(path, overrides)
            note += f"{key}: the config without {section}; "
        # The test split is not scored and best.keras/last.keras are not written: with
        # two steps both are meaningless, and together they cost a model load, a traced
        # test step and two saves per config.
        options = TrainOptions(
            config_path=path,
            overrides=overrides,
            progress=False,
            score_test=False,
            save_checkpoints=False,
        )
        summary = train(cfg, options)
        loss = summary["final"].get("loss", float("nan"))
        detail = f"{note}loss {loss:.4g}, {summary['params']:,} params"
        return SmokeResult(path, True, time.perf_counter() - started, detail)
    except UserError as err:
        return SmokeResult(path, False, time.perf_counter() - started, "; ".join(err.problems))
    except Exception as err:  # noqa: BLE001 - a smoke run reports every failure, then goes on
        where = traceback.extract_tb(err.__traceback__)[-1]
        detail = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
        return SmokeResult(path, False, time.perf_counter() - started, detail)


def _waiting_for_a_run(cfg) -> list[tuple[str, str]]:
    """The sections that start from a run the config leaves unnamed, and their keys."""
    waiting = []
    if cfg.init is not None and cfg.init.from_ is None:
        waiting.append(("init", "init.from"))
    if cfg.distill is not None and cfg.distill.teacher is None:
        waiting.append(("distill", "distill.teacher"))
    return waiting


def _smoke_parent(path: Path, overrides: list[str], output_dir: Path, section: str) -> str:
    """The run directory of a run smoke-trained from `path` without `section`."""
    from bigmodel_cli.training.launch import train
    from bigmodel_cli.training.options import TrainOptions

    overrides = [*overrides, f"{section}=null", f"output.dir={output_dir / section}"]
    options = TrainOptions(
        config_path=path, overrides=overrides, progress=False, score_test=False,
        save_checkpoints=False,
    )  # fmt: skip
    return train(config_load.load_config(path, overrides), options)["run_dir"]


def run_smoke(paths: Iterable[Path], jobs: int = DEFAULT_JOBS) -> Iterable[SmokeResult]:
    """Smoke every config under `paths`, in sorted order, `jobs` at a time.

    With more than one job, `jobs` worker processes take the configs one by one:
    tracing, most of a smoke run, is Python on one core, so two workers share two cores
    better than one process."""
    configs = find_configs(paths)
    if not configs:
        raise UserError("no *.yaml configs found under the given paths")
    jobs = max(1, min(jobs, len(configs), os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="bigmodel-smoke-") as tmp:
        folders = [Path(tmp) / str(i) for i in range(len(configs))]
        if jobs == 1:
            for path, folder in zip(configs, folders, strict=True):
                yield smoke_one(path, folder)
            return
        # Workers fork from a fresh server process that has imported TensorFlow and run
        # no op (this process may have: its runtime's threads would not survive a fork).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["bigmodel_cli.training.smoke_preload"])
        with context.Pool(jobs) as pool:
            yield from pool.imap(_smoke_pair, zip(configs, folders, strict=True))


def _smoke_pair(pair: tuple[Path, Path]) -> SmokeResult:
    return smoke_one(*pair)
