"""Step 4 of the recipe: claim the run directory, once nothing the user wrote can fail.

The chief creates (or, resuming, reopens) the run directory and holds its lock until
the summary is written; every other worker of a cluster writes the same files into a
scratch folder that is removed on the way out, so the recipe is the same on each.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli import console, faults, run_dir
from bigmodel_cli.config import Config
from bigmodel_cli.config import load as config_load
from bigmodel_cli.training.build import Built
from bigmodel_cli.training.options import TrainOptions
from bigmodel_cli.training.prepare import Prepared
from bigmodel_cli.training.runtime import Runtime, describe_environment
from bigmodel_cli.training.start import Start


@dataclass(frozen=True)
class Claimed:
    """The run directory this process writes (a scratch one for non-chief workers)."""

    run: run_dir.RunDir
    scratch: Path | None

    @property
    def is_chief(self) -> bool:
        return self.scratch is None


@contextlib.contextmanager
def claim_run_dir(
    start: Start, options: TrainOptions, runtime: Runtime, data: Prepared, built: Built
) -> Iterator[Claimed]:
    """The run directory, created only now that nothing the user wrote can fail, and held
    (one trainer per run directory) until the summary is written. Workers other than the
    chief write to a scratch folder they remove."""
    cfg = start.cfg
    environment = describe_environment(runtime, built.precision, options.command)
    scratch, run = None, start.run
    faults.point("before_run_dir")
    if not runtime.placement.is_chief:
        scratch = Path(tempfile.mkdtemp(prefix="bigmodel-worker-"))
        run = run_dir.create_run_dir(scratch, cfg.name)
    elif run is None:
        run = run_dir.create_run_dir(Path(cfg.output.dir), cfg.name, options.run_dir)
    held = contextlib.ExitStack()
    try:
        with run_dir.removed_on_failure(run, fresh=start.run is None):  # e.g. a full disk
            if scratch is None:
                held.enter_context(run_dir.locked(run, console.note))
            if start.run is None or scratch is not None:
                resolved = absolute_paths(cfg, start.base_dir)
                run_dir.atomic_write_text(run.config, config_load.dump_config(resolved))
            run_dir.make_folders(run)
            if data.bundle.vocabulary is not None and start.run is None:
                run_dir.write_vocabulary(run, data.bundle.vocabulary)
            run_dir.atomic_write_json(run.environment, environment)
        faults.point("run_dir_created")
        yield Claimed(run, scratch)
    finally:
        held.close()
        if scratch is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)


def absolute_paths(cfg: Config, base_dir: Path) -> Config:
    """The run's config.yaml must work from anywhere: make data.path and data.paths
    absolute (data.paths are glob patterns: see data.files.anchored), and init.from and
    distill.teacher (relative to the current directory, as a RUN_DIR argument is)."""
    from bigmodel_cli.data.files import anchored

    if cfg.distill is not None and cfg.distill.teacher is not None:
        teacher = str(run_dir.absolute(Path(cfg.distill.teacher), "distill.teacher"))
        distill = cfg.distill.model_copy(update={"teacher": teacher})
        cfg = cfg.model_copy(update={"distill": distill})
    base = base_dir.resolve()
    update = {}
    if cfg.data.path:
        path = cfg.data.path
        update["path"] = (
            path if path.startswith("~") or Path(path).is_absolute() else str(base / path)
        )
    if cfg.data.paths:
        update["paths"] = [anchored(p, base) for p in cfg.data.paths]
    if cfg.init is not None and cfg.init.from_ is not None:
        parent = str(run_dir.absolute(Path(cfg.init.from_), "init.from"))
        cfg = cfg.model_copy(update={"init": cfg.init.model_copy(update={"from_": parent})})
    if not update:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)})
