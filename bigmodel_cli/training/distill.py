"""Knowledge distillation (`distill:`): the student (the config's model) learns from a
finished run's model (the teacher) as well as from the labels.

The loss is `w * loss(labels) + (1 - w) * T^2 * KL(softmax(teacher / T) ||
softmax(student / T))` (`w` is `distill.hard_label_weight`, `T` its `temperature`), plus
the student's weight penalties, as the keras.io Distiller computes it. Heads that end in
softmax (or one sigmoid unit) are compared through their log-probabilities, which stand
in for logits: softmax(log p / T) is what softmax(z / T) would be.

The teacher is opened before the data (prepare.py: its vocabulary is the student's),
checked against the student's data before anything is built, and loaded frozen inside
the strategy's scope by the run's own loader (inference/open_run.py: the model rebuilt
from the teacher's config, only its SHA-256-checked weights read, so no file can bring
code). It sees the student's batches laid out and normalized as it was trained.

The student stays the model the recipe compiles and saves: a functional model over the
student's own layers whose `compute_loss` adds the teacher's term. The teacher hangs off
it in a plain holder that Keras does not track, so checkpoints/, model.keras and the
resume backup hold the student alone, and `--resume` loads the teacher again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bigmodel_cli import console, distribution, registry
from bigmodel_cli.config import Config
from bigmodel_cli.config.distill import TEACHER_KEY
from bigmodel_cli.errors import UserError
from bigmodel_cli.inference.open_run import TrainedRun, open_named_run
from bigmodel_cli.layers import LayersModel
from bigmodel_cli.spec import DataSpec
from bigmodel_cli.tfenv import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

LOSS_TERMS = ("hard_loss", "soft_loss")  # logged beside `loss`, which is their sum
# data keys that change how batches are read, never which example lands in which split
NOT_SPLITS = ("batch_size", "shuffle", "normalize", "augment", "cache")
EPSILON = 1e-7  # probabilities are clipped here before their log


# === Opening and checking the teacher ========================================


def open_teacher(cfg: Config) -> TrainedRun | None:
    """The teacher's run, opened with the data it was trained on (None without
    `distill`); a teacher that is unset, not a run, or not finished is exit 2."""
    if cfg.distill is None:
        return None
    unset = (
        f"not set; name the run to learn from, e.g. bigmodel train CONFIG --set "
        f"{TEACHER_KEY}=RUN_DIR"
    )
    return open_named_run(TEACHER_KEY, cfg.distill.teacher, unset)


def same_splits(teacher: TrainedRun, cfg: Config) -> bool:
    """Whether the teacher split the same data the same way (seed and data keys), so
    that the student's validation and test examples are held out from the teacher too."""
    mine, theirs = (c.data.model_dump(exclude=set(NOT_SPLITS)) for c in (cfg, teacher.cfg))
    return cfg.seed == teacher.cfg.seed and mine == theirs


def check_teacher(teacher: TrainedRun, spec: DataSpec, cfg: Config) -> None:
    """Every way the teacher's data differs from the student's, at once: its task,
    classes, vocabulary and inputs must be the student's. Other splits are allowed,
    with a warning: the teacher may have trained on the student's test examples."""
    mine, theirs, root = spec, teacher.spec, teacher.run.root
    where = f"{TEACHER_KEY}: {root}"
    if mine.task == "regression":
        raise UserError(
            f"distill: the student's data has regression targets; distillation compares "
            f"class probabilities, so it needs a classification or language-model task. "
            f"Remove distill (teacher {root})"
        )
    problems = []
    if theirs.task != mine.task:
        problems.append(
            f"{where} was trained for {theirs.task}; the student's data is {mine.task}: a "
            "teacher must do the student's task"
        )
    elif theirs.num_classes != mine.num_classes:
        problems.append(
            f"{where} predicts {theirs.num_classes} classes; the student's data has "
            f"{mine.num_classes}"
        )
    elif theirs.class_names and mine.class_names and theirs.class_names != mine.class_names:
        problems.append(
            f"{where}: its classes are {_listed(theirs.class_names)}; the student's are "
            f"{_listed(mine.class_names)} (same count, other names or order)"
        )
    if theirs.vocab_size != mine.vocab_size:
        problems.append(
            f"{where}: its vocabulary has {theirs.vocab_size} tokens; the student's data has "
            f"{mine.vocab_size}: the two must read the same token ids"
        )
    problems += _input_problems(where, theirs, mine)
    if problems:
        raise UserError(problems)
    if not same_splits(teacher, cfg):
        console.note(
            f"warning: {where} split its data otherwise (another seed or data section): "
            "it may have trained on this run's validation and test examples, which then "
            "flatter the teacher's and the student's scores"
        )


def _listed(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:8])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 8 else "")


def _input_problems(where: str, theirs: DataSpec, mine: DataSpec) -> list[str]:
    if theirs.input_dtype != mine.input_dtype:
        kinds = {"int32": "token ids", "float32": "float values"}
        return [
            f"{where} reads {kinds[theirs.input_dtype]}; the student's data is "
            f"{kinds[mine.input_dtype]}"
        ]
    same = (
        theirs.input_shape == mine.input_shape
        if mine.input_dtype == "int32"
        else int(np.prod(theirs.input_shape)) == int(np.prod(mine.input_shape))
    )
    if same:
        return []
    return [
        f"{where} reads examples of shape {list(theirs.input_shape)}; the student's data "
        f"gives {list(mine.input_shape)}: the teacher must be trained on the same data"
    ]


# === The teacher beside the student =========================================


@dataclass
class Teacher:
    """What the student's loss needs of its teacher; never tracked by Keras."""

    run: TrainedRun
    view: Any  # keras.Model: the student's batch in, the teacher's outputs out
    loss_cfg: Any  # the teacher's effective loss (its head: logits or probabilities)
    student_from_logits: bool
    temperature: float
    hard_label_weight: float
    trackers: tuple  # Mean metrics: loss, hard_loss, soft_loss


class _Distilling:
    """A functional student whose loss also matches its teacher (see the module)."""

    teacher: Teacher  # set right after construction

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        teacher = self.teacher
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # The labels' term, already divided by the replicas as Keras does (so gradients
        # summed across replicas are the global batch's); the others follow suit.
        hard = self.compiled_loss(y, y_pred, sample_weight) * replicas
        soft = _soft_loss(teacher, x, y_pred, sample_weight)
        weight = teacher.hard_label_weight
        total = weight * hard + (1.0 - weight) * soft
        if self.losses:  # the student's weight penalties, counted once
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        batch = tf.shape(y_pred)[0]
        for tracker, value in zip(teacher.trackers, (total, hard, soft), strict=True):
            tracker.update_state(value, sample_weight=batch)
        return total / replicas

    @property
    def metrics(self):
        """The loss and its two terms, then the compiled metrics (not the compiled
        loss's own tracker: `loss` here is the distillation loss)."""
        found = list(self.teacher.trackers) if hasattr(self, "teacher") else []
        compiled = getattr(self, "compiled_metrics", None)
        if self._is_compiled and compiled is not None:
            found += compiled.metrics
        return found


class DistillingModel(_Distilling, keras.Model):
    pass


class DistillingLayersModel(_Distilling, LayersModel):
    pass


def _soft_loss(teacher: Teacher, x, y_pred, sample_weight):
    """T^2 * KL(teacher || student) of the softened class probabilities, averaged over
    the examples (and positions, for a language model)."""
    temperature = teacher.temperature
    target = _log_probabilities(teacher.view(x, training=False), teacher.loss_cfg.from_logits)
    target = tf.stop_gradient(target) / temperature
    student = _log_probabilities(y_pred, teacher.student_from_logits) / temperature
    log_target = tf.nn.log_softmax(target, axis=-1)
    divergence = tf.reduce_sum(
        tf.exp(log_target) * (log_target - tf.nn.log_softmax(student, axis=-1)), axis=-1
    )
    if sample_weight is not None:
        weights = tf.cast(sample_weight, divergence.dtype)
        divergence *= tf.reshape(weights, tf.shape(divergence))
    return temperature**2 * tf.reduce_mean(divergence)


def _log_probabilities(outputs, from_logits: bool):
    """Scores whose softmax is the head's class probabilities: logits as they are,
    log-probabilities of a softmax head, and [0, z] or [log(1-p), log p] for one unit."""
    outputs = tf.cast(outputs, tf.float32)
    if outputs.shape[-1] == 1:
        if from_logits:
            return tf.concat([tf.zeros_like(outputs), outputs], axis=-1)
        p = tf.clip_by_value(outputs, EPSILON, 1.0 - EPSILON)
        return tf.concat([tf.math.log(1.0 - p), tf.math.log(p)], axis=-1)
    if from_logits:
        return outputs
    return tf.math.log(tf.clip_by_value(outputs, EPSILON, 1.0))


def with_teacher(student, teacher_run: TrainedRun, cfg: Config, data, runtime, precision: str):
    """The student, as a model whose loss also matches the teacher: built over the same
    layers (the same weights), the teacher loaded frozen inside the strategy's scope."""
    from bigmodel_cli.config import defaults

    student_class = DistillingLayersModel if isinstance(student, LayersModel) else DistillingModel
    with runtime.placement.strategy.scope():
        model = student_class(student.inputs, student.outputs, name=student.name)
        trackers = tuple(
            keras.metrics.Mean(name, dtype="float32") for name in ("loss", *LOSS_TERMS)
        )
        try:  # the teacher is rebuilt in float32 (load_run_model), its view too
            teacher_model, _ = teacher_run.load_model()
            teacher_model.trainable = False
            _check_outputs(teacher_run, teacher_model, student)
            view = _teacher_view(teacher_model, teacher_run, data)
        except UserError as err:
            raise UserError([_keyed(problem) for problem in err.problems]) from None
        finally:
            distribution.set_precision(precision)
    model.teacher = Teacher(
        run=teacher_run,
        view=view,
        loss_cfg=defaults.effective_loss(teacher_run.cfg, teacher_run.spec),
        student_from_logits=data.loss_cfg.from_logits,
        temperature=cfg.distill.temperature,
        hard_label_weight=cfg.distill.hard_label_weight,
        trackers=trackers,
    )
    return model


def _keyed(problem: str) -> str:
    return problem if problem.startswith(TEACHER_KEY) else f"{TEACHER_KEY}: {problem}"


def _classes(shape) -> tuple:
    """An output's shape past the batch, one sigmoid unit counted as two classes."""
    shape = tuple(shape[1:])
    return (*shape[:-1], 2) if shape[-1:] == (1,) else shape


def _check_outputs(teacher_run: TrainedRun, teacher_model, student) -> None:
    theirs, mine = teacher_model.output_shape, student.output_shape
    if _classes(theirs) != _classes(mine):
        raise UserError(
            f"{TEACHER_KEY}: {teacher_run.run.root}: its model outputs {list(theirs[1:])} "
            f"per example; the student's outputs {list(mine[1:])}: the two heads must score "
            "the same classes (check model.outputs and the loss of both configs)"
        )


def _teacher_view(teacher_model, teacher_run: TrainedRun, data):
    """A model from the student's batch to the teacher's outputs: the batch laid out as
    the teacher reads it and normalized with the teacher's statistics, i.e.
    x_teacher = (x * std_student + mean_student - mean_teacher) / std_teacher."""
    spec = data.spec
    inputs = keras.Input(spec.input_shape, dtype=spec.input_dtype, name="student_inputs")
    x = inputs
    scaling = _rescaling(data.bundle.normalization, teacher_run.normalization)
    if scaling is not None:
        native, scale, offset = scaling
        if tuple(spec.input_shape) != native:
            x = keras.layers.Reshape(native)(x)
        x = keras.layers.Rescaling(scale, offset)(x)
    if tuple(x.shape[1:]) != tuple(teacher_run.spec.input_shape):
        x = keras.layers.Reshape(teacher_run.spec.input_shape)(x)
    view = keras.Model(inputs, teacher_model(x, training=False), name="teacher_view")
    view.trainable = False
    return view


def _stats(saved: dict | None, native: tuple) -> tuple[np.ndarray, np.ndarray]:
    if not saved:
        return np.zeros(native[-1:], np.float64), np.ones(native[-1:], np.float64)
    return np.asarray(saved["mean"], np.float64), np.asarray(saved["std"], np.float64)


def _rescaling(student: dict | None, teacher: dict | None):
    """(native shape, scale, offset) that take the student's normalized inputs to the
    teacher's, or None when both models read the same values."""
    if not student and not teacher:
        return None
    native = tuple((student or teacher)["native_shape"])
    other = tuple((teacher or student)["native_shape"])
    if native != other:
        raise UserError(
            f"its normalization is for examples of shape {list(other)}; the student's data "
            f"is {list(native)}: the teacher must be trained on the same data"
        )
    mean_s, std_s = _stats(student, native)
    mean_t, std_t = _stats(teacher, native)
    try:
        scale, offset = np.broadcast_arrays(std_s / std_t, (mean_s - mean_t) / std_t)
    except ValueError:
        raise UserError(
            f"its normalization has {len(mean_t)} statistics; the student's has "
            f"{len(mean_s)}: the teacher must be trained on the same data"
        ) from None
    if np.allclose(scale, 1.0, rtol=0, atol=1e-6) and np.allclose(offset, 0.0, atol=1e-6):
        return None
    return native, scale.astype(np.float32), offset.astype(np.float32)


# === What summary.json says ==================================================


def teacher_of(model) -> Teacher | None:
    return getattr(model, "teacher", None) if isinstance(model, _Distilling) else None


def report(model, data, cfg: Config, score_test: bool) -> dict[str, Any]:
    """summary.json's `distill`: the teacher, the settings, and the teacher's score on
    the student's test split (the student's own is the summary's `test`)."""
    from bigmodel_cli.inference.evaluate import score

    teacher = teacher_of(model)
    test = None
    if score_test and data.bundle.test is not None:
        view = teacher.view
        with model.distribute_strategy.scope():
            view.compile(
                loss=registry.build_loss(teacher.loss_cfg),
                metrics=registry.build_metrics(data.metric_names, teacher.loss_cfg, data.spec),
            )
        test = score(view, data.bundle.test, cfg, data.spec)
    return {
        "teacher": str(teacher.run.run.root),
        "temperature": teacher.temperature,
        "hard_label_weight": teacher.hard_label_weight,
        "teacher_params": int(teacher.view.count_params()),
        # False: the teacher may have trained on the test split (see check_teacher).
        "same_splits": same_splits(teacher.run, cfg),
        "teacher_test": test,
    }
