"""The `compress:` section: making a trained model smaller while it trains (`prune`).

Only the section's own bounds are checked here; `end_epoch` against `train.epochs` is
checked by `Config`, and whether each `layers` glob names a prunable layer of the model
is checked once the model is built (bigmodel_cli.training.prune), before the run
directory is claimed. Self-contained: it imports only the schema's base.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from bigmodel_cli.config.base import MAX_INT, ConfigKeyError, Section

Glob = Annotated[str, Field(min_length=1, max_length=200)]


class PruneConfig(Section):
    """Magnitude pruning (tensorflow-model-optimization's `prune_low_magnitude`): the
    smallest weights of each pruned layer's kernel are set to zero, on a polynomial
    schedule from 0 at the start of epoch `begin_epoch + 1` to `sparsity` at the end of
    epoch `end_epoch`; the saved model is the plain one (the wrappers are stripped)."""

    sparsity: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Fraction of each pruned kernel's weights that are zero at the end.",
    )
    begin_epoch: int = Field(
        0,
        ge=0,
        lt=MAX_INT,
        description="Epochs trained dense before pruning starts (0: from the first step).",
    )
    end_epoch: int | None = Field(
        None,
        ge=1,
        lt=MAX_INT,
        description="The epoch at whose end `sparsity` is reached (default: the last). "
        "Until then checkpoints/best.keras and early stopping ignore the epochs, so the "
        "best model is one at the final sparsity.",
    )
    layers: list[Glob] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Layer names to prune, as fnmatch globs (`conv2d*`, `dense`); each must "
        "match a prunable layer (Dense, Conv1D/2D/3D and their transposes, SeparableConv, "
        "Embedding, LSTM/GRU/SimpleRNN, MultiHeadAttention). Default: every prunable "
        "layer except the model's output layer (`predictions` in the presets), which is "
        "small and which every class's score passes through.",
    )

    @model_validator(mode="after")
    def _ends_after_it_begins(self) -> PruneConfig:
        if self.end_epoch is not None and self.end_epoch <= self.begin_epoch:
            raise ConfigKeyError(
                "end_epoch",
                f"must be greater than begin_epoch ({self.begin_epoch}): pruning runs from "
                f"the start of epoch {self.begin_epoch + 1} to the end of epoch end_epoch. "
                f"Received: end_epoch={self.end_epoch}",
            )
        return self


class CompressConfig(Section):
    """Making the model smaller while it trains."""

    prune: PruneConfig | None = Field(
        None, description="Magnitude pruning of the model's kernels (see compress.prune)."
    )
