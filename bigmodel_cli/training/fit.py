"""Step 6 of the recipe: fit() from where the run stands, or only finish a trained one."""

from __future__ import annotations

from bigmodel_cli import console, distribution
from bigmodel_cli.errors import DataError, TrainingFailed
from bigmodel_cli.training.backup import folder_of
from bigmodel_cli.training.build import Built
from bigmodel_cli.training.build_callbacks import Callbacks
from bigmodel_cli.training.callbacks.nan_guard import LossNotFinite
from bigmodel_cli.training.callbacks.resume_backup import restore_checkpoint, training_checkpoint
from bigmodel_cli.training.callbacks.signals import StoppedBySignal
from bigmodel_cli.training.failures import (
    loss_not_finite,
    resume_command,
    stop_progress,
    stopped_by_signal,
    undecodable_images,
    undecodable_message,
)
from bigmodel_cli.training.prepare import Prepared
from bigmodel_cli.training.run_directory import Claimed
from bigmodel_cli.training.runtime import Runtime
from bigmodel_cli.training.start import Start


def fit(start: Start, claimed: Claimed, runtime: Runtime, data: Prepared, built: Built,
        callbacks: Callbacks) -> None:  # fmt: skip
    """Train (or, when the backup says training ended, only finish it)."""
    if start.commit is not None and start.commit.finished:
        # Killed after training ended: the final weights are in the backup.
        checkpoint, _, _ = training_checkpoint(built.model)
        folder = folder_of(start.run.backup)
        restore_checkpoint(checkpoint, folder / start.commit.checkpoint)
        return
    # A commit made as training ended (early stopping, time limit) runs no epoch: fit()
    # only restores it and lets the callbacks end the run (best weights, final commit).
    epochs = start.position.epoch if start.state.get("ending") else start.cfg.train.epochs
    try:
        built.model.fit(
            data.train_ds,
            validation_data=data.val_ds,
            epochs=epochs,
            initial_epoch=min(start.position.epoch, epochs),
            steps_per_epoch=data.steps_per_epoch,  # the stream is endless
            callbacks=callbacks.all,
            verbose=0,
        )
    except StoppedBySignal:
        stop_progress(callbacks)
        raise stopped_by_signal(callbacks, data.steps_per_epoch, claimed.run) from None
    except LossNotFinite as err:
        stop_progress(callbacks)
        raise loss_not_finite(err, start.cfg, claimed, built.steps_per_execution) from None
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, with the last backup
        stop_progress(callbacks)
        console.note(
            f"interrupted; resume from the last backup with: {resume_command(claimed.run)}"
        )
        raise
    except Exception as err:
        bad_images = undecodable_images(err, data.bundle)
        if bad_images is not None:
            stop_progress(callbacks)
            raise DataError(undecodable_message(bad_images, claimed.run)) from None
        if not distribution.is_peer_loss(err, runtime.placement):
            raise
        message = distribution.peer_lost_message(err, resume_command(claimed.run), claimed.is_chief)
        raise TrainingFailed(message) from None
