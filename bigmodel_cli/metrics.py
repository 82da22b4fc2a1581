"""Custom streaming metrics: macro precision/recall/F1, one-vs-rest AUC, perplexity.

All state lives in `add_weight` variables (summed across replicas by Keras), updated in
`update_state` and read in `result`, so the numbers are exact over a whole epoch under
any `tf.distribute` strategy, not averages of per-batch values.
"""

from __future__ import annotations

import math

from bigmodel_cli.tfenv import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()


SCORES = ("precision", "recall", "f1")
AVERAGES = ("macro", "binary")
LABEL_FORMATS = ("sparse", "one_hot")


def _flat_weights(sample_weight, flat_labels, dtype):
    """Per-label weights: ones, or `sample_weight` repeated over each example's labels.

    Keras passes one weight per example while a language model has a label per
    position; row-major flattening keeps an example's positions together, so repeating
    each weight `labels_per_weight` times lines them up.
    """
    if sample_weight is None:
        return tf.ones_like(flat_labels, dtype=dtype)
    weights = tf.reshape(tf.cast(sample_weight, dtype), [-1])
    labels_per_weight = tf.size(flat_labels) // tf.maximum(tf.size(weights), 1)
    return tf.repeat(weights, labels_per_weight)


def _in_range(ids, num_classes):
    """Ids outside [0, num_classes) (e.g. from an output wider than the data's classes)
    become -1, which `unsorted_segment_sum` drops: they can never be a true positive."""
    return tf.where((ids >= 0) & (ids < num_classes), ids, -1)


@keras.saving.register_keras_serializable(package="bigmodel")
class ClassificationScore(keras.metrics.Metric):
    """Streaming precision, recall or F1 from per-class true/false positive counts.

    - `average="macro"`: the unweighted mean over classes that occur in the labels or
      the predictions seen so far (what `sklearn.metrics.f1_score(average="macro")`
      does); a class with an empty denominator scores 0.
      bigmodel's `precision`, `recall` and `f1` are always macro, for binary labels too.
    - `average="binary"`: the positive class (1) only, as sklearn's default for binary
      labels and `keras.metrics.Precision` do. bigmodel no longer builds it; it stays so
      models saved before (their compile config names it) still load.

    Predictions are the argmax of the last axis, or, for a single-unit output (a sigmoid
    or a logit), `y_pred > threshold`. Labels are integer class ids (`label_format=
    "sparse"`, any shape, e.g. one per position for language models) or one-hot rows.
    Only three vectors of `num_classes` counts are kept, so large vocabularies are fine.
    """

    def __init__(
        self,
        num_classes: int,
        score: str = "f1",
        average: str = "macro",
        label_format: str = "sparse",
        threshold: float = 0.5,
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(name=name or score, dtype=dtype)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}; received {score!r}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}; received {average!r}")
        if label_format not in LABEL_FORMATS:
            raise ValueError(
                f"label_format must be one of {LABEL_FORMATS}; received {label_format!r}"
            )
        self.num_classes = int(num_classes)
        self.score = score
        self.average = average
        self.label_format = label_format
        self.threshold = float(threshold)
        shape = (self.num_classes,)
        self.true_positives = self.add_weight("true_positives", shape, initializer="zeros")
        self.predicted = self.add_weight("predicted", shape, initializer="zeros")
        self.actual = self.add_weight("actual", shape, initializer="zeros")

    def _class_ids(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        if self.label_format == "one_hot":
            y_true = tf.argmax(y_true, axis=-1)
        true_ids = tf.reshape(tf.cast(tf.round(tf.cast(y_true, tf.float32)), tf.int32), [-1])
        if y_pred.shape.rank == 1 or y_pred.shape[-1] == 1:
            pred_ids = tf.cast(y_pred > self.threshold, tf.int32)
        else:
            pred_ids = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        pred_ids = tf.reshape(pred_ids, [-1])
        return _in_range(true_ids, self.num_classes), _in_range(pred_ids, self.num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        true_ids, pred_ids = self._class_ids(y_true, y_pred)
        weights = _flat_weights(sample_weight, true_ids, self.dtype)
        hits = tf.where(true_ids == pred_ids, weights, tf.zeros_like(weights))
        n = self.num_classes
        self.true_positives.assign_add(tf.math.unsorted_segment_sum(hits, true_ids, n))
        self.predicted.assign_add(tf.math.unsorted_segment_sum(weights, pred_ids, n))
        self.actual.assign_add(tf.math.unsorted_segment_sum(weights, true_ids, n))

    def reset_state(self):
        # The base class assigns a scalar 0, which does not fit vector state.
        for variable in self.variables:
            variable.assign(tf.zeros_like(variable))

    def result(self):
        tp, predicted, actual = self.true_positives, self.predicted, self.actual
        per_class = {
            "precision": tf.math.divide_no_nan(tp, predicted),
            "recall": tf.math.divide_no_nan(tp, actual),
            # 2PR / (P + R) simplifies to 2tp / (predicted + actual).
            "f1": tf.math.divide_no_nan(2.0 * tp, predicted + actual),
        }[self.score]
        if self.average == "binary":
            return per_class[1]
        present = tf.cast(predicted + actual > 0, self.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(per_class * present), tf.reduce_sum(present))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "score": self.score,
            "average": self.average,
            "label_format": self.label_format,
            "threshold": self.threshold,
            "name": self.name,
            "dtype": self.dtype,
        }


@keras.saving.register_keras_serializable(package="bigmodel")
class OneVsRestAUC(keras.metrics.AUC):
    """Macro one-vs-rest ROC AUC for a softmax (or logits) output over `num_classes`.

    Integer labels are one-hot encoded first (`sparse_labels=True`); logits go through a
    softmax (not the per-column sigmoid `keras.metrics.AUC(from_logits=True)` would use,
    which ranks examples differently). Each class's AUC is computed against the rest and
    the unweighted mean is reported, like `sklearn.metrics.roc_auc_score(multi_class=
    "ovr", average="macro")` up to Keras's threshold interpolation.
    """

    def __init__(
        self,
        num_classes: int,
        sparse_labels: bool = True,
        from_logits: bool = False,
        num_thresholds: int = 200,
        name: str = "auc",
        dtype=None,
    ):
        super().__init__(
            num_thresholds=num_thresholds,
            name=name,
            dtype=dtype,
            multi_label=True,
            num_labels=int(num_classes),
        )
        self.num_classes = int(num_classes)
        self.sparse_labels = bool(sparse_labels)
        self.softmax_logits = bool(from_logits)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"OneVsRestAUC expects {self.num_classes} scores per example; "
                f"received predictions of shape {y_pred.shape}."
            )
        y_pred = tf.reshape(y_pred, [-1, self.num_classes])
        if self.softmax_logits:
            y_pred = tf.nn.softmax(y_pred, axis=-1)
        if self.sparse_labels:
            ids = tf.reshape(tf.cast(y_true, tf.int32), [-1])
            y_true = tf.one_hot(ids, self.num_classes)
        else:
            y_true = tf.reshape(y_true, [-1, self.num_classes])
        if sample_weight is not None:
            sample_weight = _flat_weights(sample_weight, y_true[:, 0], self.dtype)
        return super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "sparse_labels": self.sparse_labels,
            "from_logits": self.softmax_logits,
            "num_thresholds": self.num_thresholds,
            "name": self.name,
            "dtype": self.dtype,
        }


@keras.saving.register_keras_serializable(package="bigmodel")
class Perplexity(keras.metrics.Metric):
    """exp(mean cross-entropy) over every label seen, e.g. every position of a batch.

    The mean is taken over all tokens of the epoch before the exp, so it is the
    corpus perplexity, not a mean of per-batch perplexities. Label smoothing, which is a
    training device, is not applied.
    """

    def __init__(
        self,
        from_logits: bool = False,
        sparse_labels: bool = True,
        name: str = "perplexity",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.sparse_labels = bool(sparse_labels)
        self.total = self.add_weight("total", initializer="zeros")
        self.count = self.add_weight("count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.sparse_labels:
            losses = keras.losses.sparse_categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits
            )
        else:
            losses = keras.losses.categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits
            )
        losses = tf.reshape(tf.cast(losses, self.dtype), [-1])
        weights = _flat_weights(sample_weight, losses, self.dtype)
        self.total.assign_add(tf.reduce_sum(losses * weights))
        self.count.assign_add(tf.reduce_sum(weights))

    def result(self):
        return tf.exp(tf.math.divide_no_nan(self.total, self.count))

    def get_config(self):
        return {
            "from_logits": self.from_logits,
            "sparse_labels": self.sparse_labels,
            "name": self.name,
            "dtype": self.dtype,
        }


@keras.saving.register_keras_serializable(package="bigmodel")
class BitsPerByte(Perplexity):
    """Cross-entropy in bits per byte of text: the summed nats of every label / ln 2 /
    the bytes of text those labels stand for (`token_bytes[id]`: 1 per byte token, the
    piece's length for a subword, 0 for end-of-document). Counted per split, so subword
    models are scored on the bytes each split really holds; unlike perplexity it does
    not depend on the tokenizer, so byte-level and subword models compare directly.
    """

    def __init__(
        self,
        token_bytes=(),
        from_logits: bool = False,
        sparse_labels: bool = True,
        name: str = "bits_per_byte",
        dtype=None,
    ):
        super().__init__(from_logits, sparse_labels, name=name, dtype=dtype)
        self.token_bytes = [int(b) for b in token_bytes]
        self.text_bytes = self.add_weight("text_bytes", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(y_true, y_pred, sample_weight)
        ids = tf.cast(y_true, tf.int32)
        if not self.sparse_labels:
            ids = tf.argmax(y_true, axis=-1, output_type=tf.int32)
        lengths = tf.gather(tf.constant(self.token_bytes, self.dtype), tf.reshape(ids, [-1]))
        weights = _flat_weights(sample_weight, lengths, self.dtype)
        self.text_bytes.assign_add(tf.reduce_sum(lengths * weights))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.text_bytes * math.log(2.0))

    def get_config(self):
        return {**super().get_config(), "token_bytes": self.token_bytes}


CUSTOM_METRICS = (ClassificationScore, OneVsRestAUC, Perplexity, BitsPerByte)
