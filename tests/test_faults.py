"""Faults survived: killed training (real subprocesses), Ctrl-C, killed output, full disks.

The promise checked here: whatever happens, a path named like a run directory or
an output file is whole (or absent, or the previous one, untouched), and an
interrupted deterministic run resumed with ``textclf train --resume`` ends with
the *same weights, bit for bit*, as a run never interrupted (so its metrics.json
and history.csv are equal too).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_topic_tsv
from textclf.cli import cli

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "textclf.cli"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
       "CUDA_VISIBLE_DEVICES": ""}

# Early stopping ends this recipe after epoch 6 of 8 (patience 0), so a resume
# after the stop must also bring back the best epoch's weights.
RECIPE = ("data:\n  train: train.tsv\n  format: tsv\n"
          "text:\n  max_tokens: 100\n  max_length: 30\n"
          "model:\n  type: cnn\n  embedding_dim: 16\n  filters: 8\n  kernel_sizes: [2, 3]\n"
          "train:\n  epochs: 8\n  patience: 0\n  batch_size: 16\n  learning_rate: 0.01\n"
          "  deterministic: true\n  verbose: quiet\n")


def invoke(*args, **kwargs):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The recipe, its data, and the run it gives when nothing goes wrong."""
    folder = tmp_path_factory.mktemp("faults")
    write_topic_tsv(folder / "train.tsv", 240)
    (folder / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    result = invoke("train", "-c", folder / "recipe.yaml", "-o", folder / "whole")
    assert result.exit_code == 0, result.output
    epochs_run = len((folder / "whole" / "history.csv").read_text().splitlines()) - 1
    assert epochs_run < 8, "the recipe must stop early for the resume-after-stop case"
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_run(expected: Path, found: Path) -> None:
    """Same weights bit for bit, hence the same metrics and the same history."""
    with np.load(expected / "weights.npz") as a, np.load(found / "weights.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert json.loads((found / "metrics.json").read_text()) == \
        json.loads((expected / "metrics.json").read_text())
    assert (found / "history.csv").read_text() == (expected / "history.csv").read_text()
    assert not (found / "checkpoint").exists()
    assert not (found.parent / f".{found.name}.partial").exists()


def wait_for(condition, child: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    """Poll every 5 ms until ``condition()``; fail if the child exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            out, err = child.communicate()
            pytest.fail(f"exited ({child.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _as_a_foreground_job() -> None:
    """Ctrl-C reaches a command a user runs in a terminal; a test suite started in
    the background (``make test &``) has SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], env=ENV, cwd=kwargs.pop("cwd", REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_a_foreground_job, **kwargs)


# --------------------------------------------------------------------------
# Training killed or interrupted.
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_training_keeps_old_run_and_resume_matches(reference, tmp_path):
    """SIGKILL a real ``train --force -o RUN`` once the first epoch is checkpointed:
    the run already at RUN is untouched, and ``--resume`` ends where an
    uninterrupted run ends."""
    target = tmp_path / "run"
    shutil.copytree(reference / "whole", target)
    (target / "old-run-marker").write_text("old\n")
    before = snapshot(target)
    progress = tmp_path / ".run.partial" / "checkpoint" / "progress.json"

    child = spawn("train", "-c", reference / "recipe.yaml", "-o", target, "--force")
    wait_for(progress.exists, child, "the first checkpoint")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert snapshot(target) == before, "a killed training must not touch the existing run"
    killed_after = json.loads(progress.read_text())["epoch"]
    assert killed_after < 5, "killed too late to be mid-training"

    resumed = invoke("train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    assert not (target / "old-run-marker").exists(), "the resumed run replaces the old one"
    assert_same_run(reference / "whole", target)


@pytest.mark.slow
def test_sigint_stops_cleanly_and_says_how_to_resume(reference, tmp_path):
    target = tmp_path / "run"
    progress = tmp_path / ".run.partial" / "checkpoint" / "progress.json"
    child = spawn("train", "-c", reference / "recipe.yaml", "-o", target)
    wait_for(progress.exists, child, "the first checkpoint")
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        "Error: interrupted; the last finished epoch is saved: resume with "
        f"`textclf train --resume {target}`")
    assert "Traceback" not in err
    assert not target.exists(), "an unfinished run must not appear at the target"

    resumed = invoke("train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(reference / "whole", target)


@pytest.mark.slow
def test_sigkill_before_first_epoch_leaves_clear_advice(reference, tmp_path):
    """Killed before any epoch finished: nothing to resume, and both commands say so."""
    target = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    child = spawn("train", "-c", reference / "recipe.yaml", "-o", target)
    wait_for(partial.exists, child, "the partial run directory")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert not target.exists()

    resumed = invoke("train", "--resume", target)
    assert resumed.exit_code == 2
    assert "no interrupted run to resume" in resumed.output
    again = invoke("train", "-c", reference / "recipe.yaml", "-o", target)
    assert again.exit_code == 2
    assert "--force" in again.output and "--resume" not in again.output, again.output


def _interrupt_at(monkeypatch, moment: str) -> None:
    """Raise KeyboardInterrupt (what SIGKILL's victim would never get to see, but it
    leaves the same files behind) at one of the most awkward moments."""
    from textclf import training
    from textclf.reference import export

    if moment in ("before-commit", "after-commit"):
        real = training.write_json

        def write_json(path, value):
            epoch_one = Path(path).name == "progress.json" and value.get("epoch") == 1
            if epoch_one and moment == "before-commit":
                raise KeyboardInterrupt
            real(path, value)
            if epoch_one:
                raise KeyboardInterrupt

        monkeypatch.setattr(training, "write_json", write_json)
    else:  # training over (early-stopped), the run not yet moved into place
        def export_numpy_weights(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(export, "export_numpy_weights", export_numpy_weights)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before-commit", "after-commit", "before-finalize"])
def test_stop_at_the_worst_moment_then_resume_matches(reference, tmp_path, monkeypatch,
                                                      moment):
    """Stopped between writing an epoch's state and recording it (before-commit),
    just after recording it, or after early stopping but before the run is
    finalised: the resumed run still equals the uninterrupted one."""
    target = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_at(patch, moment)
        stopped = invoke("train", "-c", reference / "recipe.yaml", "-o", target)
    assert stopped.exit_code == 1, stopped.output
    assert "textclf train --resume" in stopped.output
    assert not target.exists()
    resumed = invoke("train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(reference / "whole", target)


@pytest.mark.slow
def test_full_disk_during_training_is_clear_and_resumable(reference, tmp_path, monkeypatch):
    """ENOSPC while saving the final model: one clear line, no run at the target,
    and once there is space again ``--resume`` finishes the same run."""
    import keras

    target = tmp_path / "run"
    real_save = keras.Model.save

    def save(self, filepath, *args, **kwargs):
        if Path(filepath).name == "model.keras":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return real_save(self, filepath, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", save)
        full = invoke("train", "-c", reference / "recipe.yaml", "-o", target)
    assert full.exit_code == 1
    assert full.output.strip().splitlines()[-1] == (
        f"Error: no space left on device while writing {target}; the last finished epoch is "
        f"saved: free some space, then resume with `textclf train --resume {target}`")
    assert not target.exists()
    resumed = invoke("train", "--resume", target)
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(reference / "whole", target)


# --------------------------------------------------------------------------
# Output files killed mid-way or out of space.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_lines(reference) -> Path:
    """100,000 documents: long enough to be killed while the output is written."""
    path = reference / "many.txt"
    words = "goal match team bank stock chip phone the a".split()
    path.write_text("".join(f"{words[i % 9]} {words[(i * 7) % 9]} {i}\n" for i in range(100_000)),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("sig, existing", [(signal.SIGKILL, False), (signal.SIGKILL, True),
                                           (signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["sigkill-new", "sigkill-existing", "sigterm-existing", "sigint-new"])
def test_killed_predict_never_leaves_a_partial_output(reference, many_lines, tmp_path, sig,
                                                      existing):
    target = tmp_path / "out.jsonl"
    if existing:
        target.write_text('{"old": true}\n')
    child = spawn("predict", reference / "whole", many_lines, "-o", target, "--force",
                  "--engine", "numpy")

    def writing():
        return any(p.stat().st_size > 0 for p in tmp_path.glob(".out.jsonl.*.tmp"))

    wait_for(writing, child, "output to be written")
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0, "killed too late: the prediction had finished"
    if existing:
        assert target.read_text() == '{"old": true}\n'
    else:
        assert not target.exists()
    if sig != signal.SIGKILL:  # a catchable signal also removes the temporary file
        assert [p.name for p in tmp_path.iterdir()] == (["out.jsonl"] if existing else [])
    if sig == signal.SIGTERM:  # unwinds quietly, with the shell's status for SIGTERM
        assert child.returncode == 128 + signal.SIGTERM and err == "", err
    if sig == signal.SIGINT:
        assert child.returncode == 130 and err.strip() == "Error: interrupted", err


def _unshare_works() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs Linux user namespaces (unshare -rm) "
                                                 "to mount a small tmpfs without root")
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_full_disk_on_a_real_small_filesystem(reference, many_lines, tmp_path, existing):
    """Predict into a 64 KiB tmpfs: one clear line, exit 1, and the directory holds
    exactly what it held before (the old file intact, no temporary left)."""
    small = tmp_path / "small"
    small.mkdir()
    target = small / "out.jsonl"
    script = ('mount -t tmpfs -o size=64k tmpfs "$0" || exit 99\n'
              'if [ -n "$OLD" ]; then printf old > "$0/out.jsonl"; fi\n'
              '"$@"; echo "rc=$?" >&2\n'
              'for f in "$0"/* "$0"/.[!.]*; do\n'
              '  if [ -e "$f" ]; then echo "left: ${f##*/} $(head -c 20 "$f")" >&2; fi\n'
              'done\n')
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(small), *CLI, "predict",
         str(reference / "whole"), str(many_lines), "-o", str(target), "--force",
         "--engine", "numpy"],
        env={**ENV, "OLD": "1" if existing else ""}, cwd=REPO, capture_output=True, text=True,
        timeout=300)
    err = done.stderr
    if "rc=" not in err:
        pytest.skip(f"cannot mount a tmpfs here: {err[-300:]}")
    lines = err.strip().splitlines()
    assert f"Error: cannot write {target}: no space left on device (nothing was written)" in lines
    assert "rc=1" in lines
    assert "Traceback" not in err
    left = [line for line in lines if line.startswith("left: ")]
    assert left == (["left: out.jsonl old"] if existing else [])


def test_full_disk_on_standard_output(reference, tmp_path):
    """stdout on /dev/full (every write fails with ENOSPC): a clear line, exit 1."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    docs = tmp_path / "docs.txt"
    docs.write_text("goal match\n" * 5000, encoding="utf-8")
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "predict", str(reference / "whole"), str(docs),
                               "--engine", "numpy"], env=ENV, cwd=REPO, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: cannot write to standard output: no space left on device"]
