"""Early stopping that survives `--resume`: patience, best value and best weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bigmodel_cli.tfenv import import_keras

keras = import_keras()


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience, best value and best weights survive `--resume`:
    `state()` and `best_weights` are committed with each backup (the weights as an
    attachment, rewritten only when the best epoch changes), and come back through
    `resume_from`, so a resumed run ends with the weights the uninterrupted one would.
    """

    ATTACHMENT = "early_stopping_best"

    def __init__(self, state: dict | None = None, best_weights=None, **kw):
        super().__init__(**kw)
        self._resume_state = state
        self._resume_weights = best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if not self._resume_state:
            return
        self.wait = self._resume_state["wait"]
        self.best = self._resume_state["best"]
        self.best_epoch = self._resume_state["best_epoch"]
        if self.restore_best_weights and self._resume_weights is not None:
            self.best_weights = list(self._resume_weights)

    def state(self) -> dict:
        return {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch}

    def attachment(self) -> dict[str, tuple[str, Callable[[], dict[str, np.ndarray]]]]:
        """The best weights for the backup, named by their epoch (their version)."""
        if not self.restore_best_weights or self.best_weights is None:
            return {}
        weights = self.best_weights
        arrays = lambda: {f"w{i:04d}": w for i, w in enumerate(weights)}  # noqa: E731
        return {self.ATTACHMENT: (f"early-stopping-best-{self.best_epoch + 1}.npz", arrays)}

    @staticmethod
    def weights_from(arrays: dict[str, np.ndarray] | None) -> list[np.ndarray] | None:
        return None if arrays is None else [arrays[k] for k in sorted(arrays)]
