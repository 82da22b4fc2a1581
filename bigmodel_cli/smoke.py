"""`bigmodel smoke`: train every config briefly to prove it still runs.

Each config runs with smoke overrides (one epoch of two small batches on a data subset,
into a temporary folder that is removed afterwards), one line of output per config.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli import config_load
from bigmodel_cli.errors import UserError

SMOKE_EXAMPLES = 160  # enough for the default 10%/10% splits to be non-empty
SMOKE_BATCH = 16


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


def smoke_overrides(path: Path, output_dir: Path) -> list[str]:
    """Overrides that make any config finish in seconds without changing what it tests."""
    document = config_load.resolve_document(path)
    data = document.get("data") or {}
    batch = min(int(data.get("batch_size", SMOKE_BATCH)), SMOKE_BATCH)
    overrides = [
        "train.epochs=1",
        "train.steps_per_epoch=2",
        f"data.batch_size={batch}",
        f"data.limit={SMOKE_EXAMPLES}",
        f"output.dir={output_dir}",
    ]
    if data.get("source") == "synthetic":
        examples = min(int(data.get("examples") or SMOKE_EXAMPLES), SMOKE_EXAMPLES)
        overrides.append(f"data.examples={examples}")
    return overrides


def smoke_one(path: Path, output_dir: Path) -> SmokeResult:
    from bigmodel_cli.training import TrainOptions, train

    started = time.perf_counter()
    try:
        overrides = smoke_overrides(path, output_dir)
        cfg = config_load.load_config(path, overrides)
        summary = train(cfg, TrainOptions(config_path=path, overrides=overrides, progress=False))
        loss = summary["final"].get("loss", float("nan"))
        detail = f"loss {loss:.4g}, {summary['params']:,} params"
        return SmokeResult(path, True, time.perf_counter() - started, detail)
    except UserError as err:
        return SmokeResult(path, False, time.perf_counter() - started, "; ".join(err.problems))
    except Exception as err:  # noqa: BLE001 - a smoke run reports every failure, then goes on
        where = traceback.extract_tb(err.__traceback__)[-1]
        detail = f"{type(err).__name__}: {err} ({Path(where.filename).name}:{where.lineno})"
        return SmokeResult(path, False, time.perf_counter() - started, detail)


def run_smoke(paths: Iterable[Path]) -> Iterable[SmokeResult]:
    configs = find_configs(paths)
    if not configs:
        raise UserError("no *.yaml configs found under the given paths")
    with tempfile.TemporaryDirectory(prefix="bigmodel-smoke-") as tmp:
        for path in configs:
            yield smoke_one(path, Path(tmp))
