"""Fuzzing the config loader: hundreds of broken configs, each must exit 2 with a message.

Every input starts from a valid base config (one per model type) and gets one corruption
that makes it invalid *by construction*: wrong types, unknown and misspelled keys at every
level, numbers outside the schema's bounds, wrong nesting, unknown names, hostile run
names and paths, raw bytes, non-mappings, malformed YAML, alias bombs, bad `base:` and
`--set`. `bigmodel validate --no-build` and `bigmodel train` must answer each with exit
code 2, `error:` lines, no traceback, within seconds, and without creating a run folder.

The strategies are in tests/helpers/fuzz_strategies.py (and fuzz_bases, fuzz_files), the
checks every answer must pass in tests/helpers/fuzz_runner.py.
"""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from hypothesis import given, settings

from bigmodel_cli.cli import app
from tests.helpers.fuzz_bases import BASES
from tests.helpers.fuzz_runner import CASE, FUZZ, RUNNER, TRIED, dump, run_bad_input
from tests.helpers.fuzz_strategies import FAMILIES, bad_inputs

# === tests ==================================================================


@pytest.fixture(scope="module", autouse=True)
def _remove_scratch():
    yield
    shutil.rmtree(CASE.parent, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(BASES))
def test_every_base_is_valid(name):
    """Each corruption makes a valid base invalid; so the bases must be valid."""
    shutil.rmtree(CASE, ignore_errors=True)
    CASE.mkdir(parents=True)
    (CASE / "config.yaml").write_bytes(dump(BASES[name]))
    result = RUNNER.invoke(app, ["validate", "--no-build", str(CASE / "config.yaml")])
    assert result.exit_code == 0, result.output


@settings(FUZZ, max_examples=800)
@given(bad_inputs())
def test_validate_refuses_every_bad_config(bad):
    run_bad_input("validate", bad)


@settings(FUZZ, max_examples=200)
@given(bad_inputs())
def test_train_refuses_every_bad_config_without_a_run_dir(bad):
    run_bad_input("train", bad)


def test_fuzzing_tried_at_least_500_bad_configs(capsys):
    """Runs after the two fuzz tests (file order) and reports what they tried."""
    if not {"validate", "train"} <= {command for command, _ in TRIED}:
        pytest.skip("reports on the two fuzz tests above; run them too")
    per_command, per_family = Counter(), Counter()
    for (command, kind), n in TRIED.items():
        if kind.split(":")[0] in FAMILIES:
            per_command[command] += n
            per_family[kind.split(":")[0]] += n
    total = sum(per_command.values())
    with capsys.disabled():  # shown with or without -s
        print(
            f"\nfuzz: tried {total} bad configs ({per_command['validate']} validate --no-build, "
            f"{per_command['train']} train): "
            + ", ".join(f"{family} {n}" for family, n in per_family.most_common())
        )
    assert total >= 500 and per_command["train"] >= 100
    assert set(per_family) == FAMILIES, FAMILIES - set(per_family)
