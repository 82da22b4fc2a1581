"""Hostile inputs, one row each: what a user (or a full disk) can throw at bigmodel, the
exit code it must get and a fragment of its message. One runner checks every row: the
exit code, the fragment, no traceback, nothing of a file that is not a config in the
output, and no orphan run directory (a command that exits 2 creates no file at all; one
that exits 1 leaves only run directories that `--resume` finishes once space is freed).

Rows:
- config text, `base:` and `--set` (issue 10): huge integers, symlink loops, deep keys,
  `base:` pointing at /etc/shadow;
- the file system (issue 10, item 7): a real full disk at each write of a run (a small
  tmpfs, filled just before that write), read-only folders, a run directory under a
  regular file, `~`, lock files that name no owner;
- run directories damaged or edited after training (item 8), for `--resume`, `evaluate`,
  `predict` and `generate`.
Damaged runs are copies of three trained once per module: a finished digits MLP, the same
stopped after its second of three epochs, and a tiny text language model.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bigmodel_cli.cli import app
from tests.helpers import REPO, no_traceback
from tests.helpers.disk import (
    BACKUP,
    FillBefore,
    all_of,
    delete,
    edit,
    edit_manifest,
    files_under,
    flip_byte,
    free,
    keep_lines,
    mount_tmpfs,
    rehash,
    truncate,
    truncate_line,
    unmount,
    write,
)
from tests.helpers.hostile import LM, TINY, Case, ReadOnly, Setup, params, train_run

DEEP = 1000
HUGE = "9" * 5000  # past Python's 4,300-digit limit for int("...")
SHADOW_LINE = "root:"  # what /etc/shadow (and /etc/passwd) lines start with
RESUME = ["train", "--resume", "{run}"]
EVALUATE = ["evaluate", "{run}"]
PREDICT = ["predict", "{run}", "{tmp}/x.npz"]
TRAIN = ["train", "{cfg}"]


def cases_config() -> list[Case]:
    """Issue 10: config text, base: and --set that used to end in a traceback."""
    nested = "{a: " * DEEP + "1" + "}" * DEEP
    return [
        Case("yaml integer of 5000 digits", TRAIN, 2, "an integer of 5,000 characters",
             config=f"seed: {HUGE}\nmodel: {{type: mlp}}\n"),
        Case("--set integer of 5000 digits", [*TRAIN, "--set", f"seed={HUGE}"], 2,
             "--set seed:1:1: malformed YAML: an integer of 5,000 characters", config={}),
        Case("--set key 1000 levels deep", [*TRAIN, "--set", "model" + ".a" * DEEP + "=1"], 2,
             f"{DEEP + 1} levels of keys", config={}),
        Case("--set value 1000 levels deep",
             [*TRAIN, "--set", "model.dense=" + "[" * DEEP + "]" * DEEP], 2,
             "--set model.dense: YAML nested too deeply", config={}),
        Case("--set mapping 200 levels deep",
             [*TRAIN, "--set", "model.a=" + "{a: " * 200 + "1" + "}" * 200], 2,
             "model.type='mlp' does not accept `a`", config={}),
        Case("yaml file nested 1000 levels", TRAIN, 2, "nested too deeply",
             config=f"model: {nested}\n"),
        Case("base: a symlink loop", TRAIN, 2, "'loop.yaml' is a symbolic link that loops",
             config="base: loop.yaml\nmodel: {type: mlp}\n", files={"loop.yaml": "->loop.yaml"}),
        Case("base: a loop of two symlinks", TRAIN, 2, "is a symbolic link that loops",
             config="base: a.yaml\nmodel: {type: mlp}\n",
             files={"a.yaml": "->b.yaml", "b.yaml": "->a.yaml"}),
        Case("CONFIG is a symlink loop", ["train", "{tmp}/loop.yaml"], 2,
             "a symbolic link to nowhere", files={"loop.yaml": "->loop.yaml"}),
        Case("base: /etc/shadow", TRAIN, 2, "'/etc/shadow' is not a .yaml or .yml file",
             config="base: /etc/shadow\nmodel: {type: mlp}\n"),
        Case("base: /etc/passwd", TRAIN, 2, "'/etc/passwd' is not a .yaml or .yml file",
             config="base: /etc/passwd\nmodel: {type: mlp}\n"),
        Case("base: a .yaml symlink to /etc/shadow", TRAIN, 2,
             "'/etc/shadow' is not a .yaml or .yml file",
             config="base: shadow.yaml\nmodel: {type: mlp}\n",
             files={"shadow.yaml": "->/etc/shadow"}),
        Case("CONFIG is /etc/shadow", ["train", "/etc/shadow"], 2,
             "/etc/shadow: not a .yaml or .yml file"),
        Case("CONFIG is a .yaml symlink to /etc/passwd", ["validate", "{tmp}/passwd.yaml"], 2,
             "(a link to /etc/passwd)", files={"passwd.yaml": "->/etc/passwd"}),
        Case("--data is /etc/passwd", ["evaluate", "{run}", "--data", "/etc/passwd"], 2,
             "/etc/passwd: not a .yaml or .yml file", run="finished", slow=True),
        Case("generate --prompt with bytes that are not UTF-8",
             ["generate", "{run}", "--prompt", "def f\udcff\udcfe(x):"], 2,
             "--prompt: not valid UTF-8 text (byte 0xff at character 6)", run="lm", slow=True),
    ]  # fmt: skip


def cases_file_system() -> list[Case]:
    """Item 7: a full disk at each write, read-only folders, odd paths, lock files."""
    fill = [
        ("run directory's .lock", "point:before_run_dir", 1, 2, ".lock: cannot write"),
        ("config.yaml", "config.yaml", 1, 2, "config.yaml: cannot write"),
        ("environment.json", "environment.json", 1, 2, "environment.json: cannot write"),
        ("TensorBoard's first events", "point:run_dir_created", 1, 1,
         "cannot write the TensorBoard events (No space left on device). Kept: nothing"),
        ("the backup's first manifest", "manifest.json", 1, 1, "manifest.json: cannot write"),
        ("metrics.csv's first row", "metrics.csv", 1, 1, "metrics.csv: cannot write"),
        ("metrics.csv's second row", "metrics.csv", 2, 1, "Kept: the backup after epoch 1"),
        ("best.keras", "best.keras", 1, 1, "best.keras: cannot write"),
        ("last.keras", "last.keras", 2, 1, "last.keras: cannot write"),
        ("the backup's checkpoint", "point:backup_write", 2, 1,
         "ckpt-2: cannot write (No space left on device). Kept: the backup after epoch 1"),
        ("the backup's manifest", "point:backup_before_manifest", 2, 1,
         "manifest.json: cannot write (No space left on device). Kept: the backup after"),
        ("model.keras", "model.keras", 1, 1,
         "model.keras: cannot write (No space left on device). Kept: the backup of the finished"),
        ("summary.json", "summary.json", 1, 1, "summary.json: cannot write"),
    ]  # fmt: skip
    rows = [
        Case(f"full disk at {what}", TRAIN, code, fragment, config={}, fill=(target, nth),
             slow=True)
        for what, target, nth, code, fragment in fill
    ]  # fmt: skip
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    return rows + [
        Case("full disk at eval.json", EVALUATE, 2,
             "eval.json: cannot write (No space left on device)", run="finished",
             fill=("eval.json", 1), slow=True),
        Case("output.dir on a read-only file system", TRAIN, 2,
             "output.dir: cannot create {ro}/new/tiny: Read-only file system",
             config={"output": {"dir": "{ro}/new"}}, read_only=True),
        Case("output.dir/NAME exists on a read-only file system", TRAIN, 2,
             "output.dir: cannot create a run folder in {ro}/runs/tiny: Read-only file system",
             config={"output": {"dir": "{ro}/runs"}}, read_only=True),
        Case("--run-dir on a read-only file system", [*TRAIN, "--run-dir", "{ro}/new"], 2,
             "--run-dir {ro}/new: cannot create it: Read-only file system", config={},
             read_only=True),
        Case("--run-dir empty, on a read-only file system", [*TRAIN, "--run-dir", "{ro}/empty"],
             2, ".lock: cannot write (Read-only file system)", config={}, read_only=True,
             slow=True),
        Case("--resume on a read-only file system", ["train", "--resume", "{ro}/interrupted"], 2,
             ".lock: cannot write (Read-only file system)", read_only=True, slow=True),
        Case("evaluate a run on a read-only file system", ["evaluate", "{ro}/finished"], 2,
             "eval.json: cannot write (Read-only file system)", read_only=True, slow=True),
        Case("--run-dir under /etc/passwd", [*TRAIN, "--run-dir", "/etc/passwd/run"], 2,
             "/etc/passwd is a file, not a folder", config={}),
        Case("--run-dir under a regular file", [*TRAIN, "--run-dir", "{tmp}/file/run"], 2,
             "{tmp}/file is a file, not a folder", config={}, files={"file": "x"}),
        Case("output.dir under a regular file", TRAIN, 2, "{tmp}/file is a file, not a folder",
             config={"output": {"dir": "{tmp}/file/runs"}}, files={"file": "x"}),
        Case("output.dir: ~/runs", TRAIN, 0, "{home}/runs/tiny/",
             config={"output": {"dir": "~/runs"}}, slow=True),
        Case("--run-dir ~/x", [*TRAIN, "--run-dir", "~/x"], 0, "{home}/x", config={},
             slow=True),
        Case("--resume ~/run", ["train", "--resume", "~/run"], 0, "resuming at epoch 3 of 3",
             run="interrupted", files={"home/run": "->../run"}, slow=True),
        Case("an empty .lock", RESUME, 0, "removing a lock file that names no owner",
             run="interrupted", damage=write(".lock", ""), slow=True),
        Case("a garbage .lock", RESUME, 0, "removing a lock file that names no owner",
             run="interrupted", damage=write(".lock", b"\x00\xffgarbage"), slow=True),
        Case("a .lock of a JSON list", RESUME, 0, "removing a lock file that names no owner",
             run="interrupted", damage=write(".lock", "[1, 2]"), slow=True),
        Case("a .lock of a live process", RESUME, 2, f"in use by process {owner['pid']}",
             run="interrupted", damage=write(".lock", json.dumps(owner)), slow=True),
        Case("a .lock of another host", RESUME, 2, "in use by process 1 on elsewhere",
             run="interrupted", damage=write(".lock", '{"pid": 1, "host": "elsewhere"}'),
             slow=True),
    ]  # fmt: skip


def cases_damaged_runs() -> list[Case]:
    """Item 8: run files damaged or edited, for --resume, evaluate, predict, generate."""
    index, data = f"{BACKUP}/ckpt-2.index", f"{BACKUP}/ckpt-2.data-00000-of-00001"
    manifest = f"{BACKUP}/manifest.json"
    refused = "to restart the run from its first step instead, delete"
    misfit = "its weights do not fit the model"
    resumed = "resuming at epoch 3 of 3"
    rows = [
        ("backup .index truncated", index, truncate(index, 10), 2, "ckpt-2.index was changed"),
        ("backup .data flipped", data, flip_byte(data), 2, "does not match manifest.json"),
        ("backup .index garbage, digest recomputed", index,
         all_of(write(index, "garbage" * 9), rehash(index)), 2, "ckpt-2 cannot be read"),
        ("backup .data garbage, digest recomputed", data,
         all_of(flip_byte(data), rehash(data)), 2, "ckpt-2 cannot be read"),
        ("checkpoint pointer of garbage", None, write(f"{BACKUP}/checkpoint", "\x00garbage"),
         0, resumed),
        ("checkpoint pointer to a foreign checkpoint", None,
         write(f"{BACKUP}/checkpoint", 'model_checkpoint_path: "/etc/ckpt-9"\n'), 0, resumed),
        ("checkpoint pointer missing", None, None, 0, resumed),
        ("manifest deleted", None, delete(manifest), 2, "but no manifest.json"),
        ("manifest garbage", None, write(manifest, "{]"), 2, "manifest.json: unreadable"),
        ("manifest a JSON list", None, write(manifest, "[]"), 2, refused),
        ("manifest names a file outside", None,
         edit_manifest(lambda m: m["files"].__setitem__("../../config.yaml", "0")), 2,
         "is not a file name inside the backup folder"),
        ("manifest names a missing file", None,
         edit_manifest(lambda m: m["files"].__setitem__("ckpt-2.extra", "0")), 2,
         "ckpt-2.extra: missing"),
        ("config.yaml: a layer size edited", None, edit("config.yaml", "- 8", "- 9"), 2,
         "config.yaml: changed since the run was trained"),
        ("config.yaml: the optimizer edited", None,
         edit("config.yaml", "name: adam", "name: sgd"), 2, "changed since the run was trained"),
        ("config.yaml: garbage", None, write("config.yaml", "model: [\n"), 2,
         "config.yaml:2:1: malformed YAML"),
        ("config.yaml deleted", None, delete("config.yaml"), 2, "not a run directory"),
        ("metrics.csv of binary garbage", None, write("metrics.csv", b"\xff\x00garbage\n"), 2,
         "metrics.csv: not UTF-8 text"),
        ("metrics.csv of text garbage", None, write("metrics.csv", "epoch,loss\nnot,numbers\n"),
         2, "metrics.csv: line 2 holds something else"),
        ("metrics.csv truncated mid-row", None, truncate_line("metrics.csv", 2, 30), 2,
         "metrics.csv: line 2 has 3 of the 9 columns"),
        ("metrics.csv header only", None, keep_lines("metrics.csv", 1), 2,
         "metrics.csv: no row for epoch 1, 2, which the backup has trained"),
        ("metrics.csv empty", None, write("metrics.csv", ""), 2, "metrics.csv: empty"),
        ("metrics.csv deleted", None, delete("metrics.csv"), 2, "metrics.csv: missing"),
        ("metrics.csv without its header", None,
         lambda run: (run / "metrics.csv").write_text(
             "".join((run / "metrics.csv").read_text().splitlines(True)[1:])),
         2, "the first line is not the header"),
        ("environment.json garbage (rewritten, never read)", None,
         write("environment.json", "{]"), 0, resumed),
        ("summary.json garbage", None, write("summary.json", "{]"), 2,
         "summary.json: not valid JSON"),
        ("summary.json a JSON list", None, write("summary.json", "[1]"), 2,
         "summary.json: expected a JSON object, found a list"),
        ("summary.json not UTF-8", None, write("summary.json", b"\xff\xfe"), 2,
         "summary.json: not UTF-8"),
    ]  # fmt: skip
    resume = [Case(f"--resume: {what}", RESUME, code, fragment, run="interrupted",
                   damage=damage, slow=True)
              for what, _, damage, code, fragment in rows]  # fmt: skip
    evaluate = [
        ("best.keras truncated", truncate("checkpoints/best.keras", 1000), 2,
         "best.keras: SHA-256 does not match"),
        ("best.keras digest deleted", delete("checkpoints/best.keras.sha256"), 2,
         "no best.keras.sha256 beside it"),
        ("config.yaml: a layer size edited", edit("config.yaml", "- 8", "- 9"), 2, misfit),
        ("config.yaml: a layer added", edit("config.yaml", "- 8", "- 8\n  - 8"), 2, misfit),
        ("config.yaml: mlp made an rnn", edit("config.yaml", "type: mlp", "type: rnn"), 2,
         misfit),
        ("config.yaml: mlp made a cnn (invalid)", edit("config.yaml", "type: mlp", "type: cnn"),
         2, "model.conv: required key is missing"),
        ("config.yaml: the optimizer edited (scoring does not use it)",
         edit("config.yaml", "name: adam", "name: sgd"), 0, "accuracy"),
        ("eval.json garbage (rewritten, never read)", write("eval.json", "{]"), 0, "accuracy"),
        ("summary.json garbage (read only with --data)", write("summary.json", "{]"), 0,
         "accuracy"),
    ]  # fmt: skip
    evaluate_rows = [Case(f"evaluate: {what}", EVALUATE, code, fragment, run="finished",
                          damage=damage, slow=True)
                     for what, damage, code, fragment in evaluate]  # fmt: skip
    with_data = ["evaluate", "{run}", "--data", "{cfg}"]
    evaluate_rows += [
        Case("evaluate --data: summary.json garbage", with_data, 2,
             "summary.json: not valid JSON", run="finished", config={},
             damage=write("summary.json", "{]"), slow=True),
        Case("evaluate --data: normalization garbage", with_data, 2,
             "data.normalization is not what bigmodel writes", run="finished", config={},
             damage=edit("summary.json", '"per"', '"nope"'), slow=True),
    ]  # fmt: skip
    predict = [
        ("summary.json garbage", write("summary.json", "{]"), "summary.json: not valid JSON"),
        ("summary.json a JSON list", write("summary.json", "[1]"), "expected a JSON object"),
        ("summary.json without a data spec", write("summary.json", '{"data": {}}'),
         "no valid data spec"),
        ("summary.json with a spec of unknown fields",
         write("summary.json", '{"data": {"spec": {"colour": 1}}}'), "no valid data spec"),
        ("summary.json with garbage normalization",
         edit("summary.json", '"per"', '"nope"'), "no valid data spec or normalization"),
        ("summary.json deleted", delete("summary.json"), "no summary.json; did training"),
        ("config.yaml: a layer size edited", edit("config.yaml", "- 8", "- 9"), misfit),
    ]  # fmt: skip
    predict_rows = [Case(f"predict: {what}", PREDICT, 2, fragment, run="finished",
                         damage=damage, slow=True)
                    for what, damage, fragment in predict]  # fmt: skip
    vocabulary = "vocabulary.json"
    generate = [
        ("vocabulary.json flipped", flip_byte(vocabulary), "vocabulary.json: SHA-256 does not"),
        ("vocabulary.json garbage, digest recomputed",
         all_of(write(vocabulary, '{"kind": "byte", "byte_values": "abc"}'), rehash(vocabulary)),
         "vocabulary.json: not a vocabulary bigmodel wrote"),
        ("vocabulary.json a list, digest recomputed",
         all_of(write(vocabulary, "[]"), rehash(vocabulary)), "expected a JSON object"),
        ("vocabulary.json deleted", delete(vocabulary), "no vocabulary.json"),
        ("vocabulary.json's digest deleted", delete(vocabulary + ".sha256"),
         "no vocabulary.json.sha256 beside it"),
        ("config.yaml: d_model edited", edit("config.yaml", "d_model: 8", "d_model: 16"), misfit),
    ]  # fmt: skip
    generate_rows = [Case(f"generate: {what}", ["generate", "{run}", "--prompt", "def"], 2,
                          fragment, run="lm", damage=damage, slow=True)
                     for what, damage, fragment in generate]  # fmt: skip
    generate_rows.append(
        Case("evaluate: an LM's vocabulary.json garbage, digest recomputed", EVALUATE, 2,
             "not a vocabulary bigmodel wrote", run="lm", slow=True,
             damage=all_of(write(vocabulary, '{"kind": "bpe"}'), rehash(vocabulary)))
    )  # fmt: skip
    return resume + evaluate_rows + predict_rows + generate_rows


CASES = cases_config() + cases_file_system() + cases_damaged_runs()


def test_the_readme_quotes_the_table():
    """The README's Reliability section gives the number of rows: kept in step here."""
    assert len(CASES) == len({case.id for case in CASES}), "two rows with one id"
    readme = (REPO / "README.md").read_text()
    assert f"{len(CASES)} hostile inputs" in readme, len(CASES)


# === The runner ==============================================================


@pytest.mark.parametrize("case", params(CASES))
def test_hostile_input(case: Case, tmp_path, request, monkeypatch):
    setup = Setup(case, tmp_path, request, monkeypatch)
    if case.fill is not None:
        FillBefore(monkeypatch, setup.disk, *case.fill)
    before = files_under(*setup.roots)
    runner = CliRunner()
    result = runner.invoke(app, [setup.fill_in(arg) for arg in case.args])
    output = result.output
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed and no_traceback(output), output
    assert result.exit_code == case.exit, output
    assert setup.fill_in(case.fragment) in " ".join(output.split()), output
    assert SHADOW_LINE not in output
    monkeypatch.undo()  # the disk fills no more
    if setup.disk is not None:
        free(setup.disk)
    created = files_under(*setup.roots) - before
    if case.exit == 2:
        assert not created, f"files left behind: {sorted(map(str, created))}"
    if case.exit == 1:  # training failed: what is left must resume and finish
        runs = sorted(p.parent for p in created if p.name == "config.yaml")
        assert runs, "no run directory to resume"
        for run in runs:
            resumed = runner.invoke(app, ["train", "--resume", str(run)])
            assert resumed.exit_code == 0 and no_traceback(resumed.output), resumed.output
            assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("mask", [0o002, 0o077], ids=["umask 002", "umask 077"])
def test_run_files_get_one_mode_under_the_umask(tmp_path, mask):
    """Every file 0666 & ~umask, every folder 0777 & ~umask: the backup's, TensorBoard's
    and the atomically written ones (tempfile would make those 0600) alike."""
    previous = os.umask(mask)
    try:  # stopped after its first backup, so the backup's files are there too
        run = train_run(tmp_path, TINY, stop_at=("backup_committed", 1), expect=130)
    finally:
        os.umask(previous)
    paths = [run, *run.rglob("*")]
    assert any(p.match("checkpoints/backup/chief/ckpt-1.index") for p in paths)
    modes = {(p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in paths}
    assert modes == {(False, 0o666 & ~mask), (True, 0o777 & ~mask)}, [
        (str(p.relative_to(run)), oct(stat.S_IMODE(p.stat().st_mode))) for p in paths
    ]


# === The runs that are damaged, and the file systems =========================


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A finished run, one stopped after the second of its three epochs, a text LM."""
    lm = tmp_path_factory.mktemp("lm")
    lines = [f"def f{i}(x):\n    return x + {i % 7}\n" for i in range(150)]
    (lm / "corpus.txt").write_text("".join(lines))
    interrupted = {**TINY, "train": {"epochs": 3}}
    return {
        "finished": train_run(tmp_path_factory.mktemp("finished"), TINY),
        "interrupted": train_run(
            tmp_path_factory.mktemp("interrupted"),
            interrupted,
            stop_at=("backup_committed", 2),
            expect=130,
        ),  # fmt: skip
        "lm": train_run(lm, LM),
    }


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    """A 32 MB tmpfs: filled by a case just before the write it tests."""
    folder = tmp_path_factory.mktemp("disk")
    mount_tmpfs(folder, "32m")
    yield folder
    unmount(folder)


@pytest.fixture(scope="module")
def read_only(tmp_path_factory) -> ReadOnly:
    folder = tmp_path_factory.mktemp("ro")
    mount_tmpfs(folder, "8m")
    try:
        yield ReadOnly(folder)
    finally:
        unmount(folder)
