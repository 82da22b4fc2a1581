"""The `distill:` section: its values are checked with the config, without TensorFlow.
(Teachers that are not runs, unfinished or of another task: tests/training/test_distill.py.)"""

from __future__ import annotations

import pytest

from bigmodel_cli.config.load import ConfigError, load_config

STUDENT = {"name": "t", "data": {"source": "digits"}, "model": {"type": "mlp", "dense": [8]}}

BAD = [
    # (what is wrong, the distill section or other keys, the key named, a phrase)
    ("temperature 0", {"distill": {"temperature": 0}}, "distill.temperature", "greater than 0"),
    ("negative weight", {"distill": {"hard_label_weight": -0.1}}, "distill.hard_label_weight",
     "greater than or equal to 0"),
    ("weight above 1", {"distill": {"hard_label_weight": 1.5}}, "distill.hard_label_weight",
     "less than or equal to 1"),
    ("unknown key", {"distill": {"temprature": 2}}, "distill.temprature", "temperature"),
    ("empty teacher", {"distill": {"teacher": ""}}, "distill.teacher", "at least 1"),
    ("regression loss", {"distill": {}, "loss": "mse"}, "distill", "classification loss"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_each_mistake_names_its_key(write_config, case):
    _, keys, key, phrase = case
    with pytest.raises(ConfigError) as caught:
        load_config(write_config({**STUDENT, **keys}))
    problems = caught.value.problems
    assert any(p.startswith(f"{key}:") and phrase in p for p in problems), problems


def test_defaults_and_the_teacher_from_the_command_line(write_config):
    path = write_config({**STUDENT, "distill": {}})
    cfg = load_config(path)
    assert (cfg.distill.teacher, cfg.distill.temperature, cfg.distill.hard_label_weight) == (
        None,
        4.0,
        0.5,
    )
    cfg = load_config(path, ["distill.teacher=runs/teacher/20261202-120000"])
    assert cfg.distill.teacher == "runs/teacher/20261202-120000"
    assert load_config(write_config(STUDENT)).distill is None
