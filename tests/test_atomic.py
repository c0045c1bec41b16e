"""textclf.atomic: all-or-nothing output files and run directories."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from textclf import atomic
from textclf.atomic import atomic_directory, atomic_output
from textclf.errors import TextclfError, UsageError


def _leftovers(folder: Path) -> list[str]:
    """Hidden temporaries our context managers might have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class Boom(Exception):
    pass


# --------------------------------------------------------------------------
# atomic_output
# --------------------------------------------------------------------------

def test_output_appears_only_at_exit(tmp_path):
    target = tmp_path / "out.jsonl"
    with atomic_output(str(target), force=False) as out:
        out.write("{}\n")
        assert not target.exists()
        assert _leftovers(tmp_path) and _leftovers(tmp_path)[0].startswith(".out.jsonl.")
    assert target.read_text(encoding="utf-8") == "{}\n"
    assert _leftovers(tmp_path) == []


def test_output_gets_umask_permissions_not_tempfile_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "out.tsv", force=False) as out:
            out.write("x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out.tsv").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_output_exception_leaves_nothing(tmp_path, exc):
    target = tmp_path / "out.jsonl"
    with pytest.raises(exc):
        with atomic_output(target, force=False) as out:
            out.write("partial\n" * 10_000)
            raise exc()
    assert not target.exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_output_exception_keeps_previous_target(tmp_path, exc):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(exc):
        with atomic_output(target, force=True) as out:
            out.write("new\n")
            raise exc()
    assert target.read_text(encoding="utf-8") == "old\n"
    assert _leftovers(tmp_path) == []


def test_output_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        with atomic_output(str(target), force=False) as out:
            out.write("new\n")   # pragma: no cover - never reached
    assert str(info.value) == f"{target} exists; pass --force to overwrite"
    assert info.value.exit_code == 2
    assert target.read_text(encoding="utf-8") == "old\n"
    assert _leftovers(tmp_path) == []


def test_output_overwrites_with_force(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with atomic_output(target, force=True) as out:
        out.write("new 新\n")
    assert target.read_text(encoding="utf-8") == "new 新\n"


def test_output_full_disk_on_write(tmp_path, monkeypatch):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")

    def full(_text):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(TextclfError) as info:
        with atomic_output(target, force=True) as out:
            monkeypatch.setattr(out, "write", full)
            out.write("x\n")
    assert type(info.value) is TextclfError and info.value.exit_code == 1
    assert str(info.value) == f"cannot write {target}: no space left on device (nothing was written)"
    assert "\n" not in str(info.value)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert _leftovers(tmp_path) == []


def test_output_full_disk_on_fsync(tmp_path, monkeypatch):
    """The disk may fill while the buffer is flushed at exit, not only during write()."""
    target = tmp_path / "out.jsonl"

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(TextclfError, match="no space left on device"):
        with atomic_output(target, force=False) as out:
            out.write("x\n")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_output(tmp_path / "out", force=False):
            raise PermissionError(errno.EACCES, "denied")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("path", [None, "-"])
def test_output_dash_or_none_is_stdout(path, capsys):
    with atomic_output(path, force=False) as out:
        assert out is sys.stdout
        out.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"


def test_output_rejects_directory_and_missing_parent(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        with atomic_output(tmp_path, force=True):
            pass   # pragma: no cover
    missing = tmp_path / "nope" / "out.tsv"
    with pytest.raises(UsageError, match="does not exist"):
        with atomic_output(missing, force=False):
            pass   # pragma: no cover


def _run_and_terminate(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a child that prints 'ready' then sleeps; SIGTERM it once ready."""
    root = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import sys, time
        from textclf.atomic import atomic_output, atomic_directory
        {body}
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={"PYTHONPATH": str(root), "PATH": ""})
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_output_sigterm_removes_temporary(tmp_path):
    done = _run_and_terminate(tmp_path, """
        with atomic_output("out.jsonl", force=False) as out:
            out.write("partial\\n")
            print("ready", flush=True)
            time.sleep(30)
    """)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# atomic_directory
# --------------------------------------------------------------------------

def test_directory_appears_only_at_exit(tmp_path):
    target = tmp_path / "runs" / "bbc_cnn"   # missing parent is created
    with atomic_directory(target, force=False) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".bbc_cnn.partial-")
        (partial / "config.yaml").write_text("a: 1\n", encoding="utf-8")
        assert not target.exists()
    assert (target / "config.yaml").read_text(encoding="utf-8") == "a: 1\n"
    assert _leftovers(target.parent) == []


def test_directory_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "run", force=False):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_directory_exception_removes_partial(tmp_path, exc):
    target = tmp_path / "run"
    with pytest.raises(exc):
        with atomic_directory(target, force=False) as partial:
            (partial / "weights.h5").write_bytes(b"x" * 1000)
            raise exc()
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_directory_refuses_existing_without_force(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "keep").write_text("old", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        with atomic_directory(target, force=False):
            pass   # pragma: no cover
    assert str(info.value) == f"{target} exists; pass --force to overwrite"
    assert (target / "keep").read_text(encoding="utf-8") == "old"
    assert _leftovers(tmp_path) == []


def test_directory_refuses_a_file_even_with_force(tmp_path):
    target = tmp_path / "run"
    target.write_text("not a dir", encoding="utf-8")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        with atomic_directory(target, force=True):
            pass   # pragma: no cover


def test_directory_force_replaces_old(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "old_file").write_text("old", encoding="utf-8")
    with atomic_directory(target, force=True) as partial:
        (partial / "new_file").write_text("new", encoding="utf-8")
    assert sorted(p.name for p in target.iterdir()) == ["new_file"]
    assert _leftovers(tmp_path) == []


def test_directory_force_with_failure_keeps_old(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "old_file").write_text("old", encoding="utf-8")
    with pytest.raises(Boom):
        with atomic_directory(target, force=True) as partial:
            (partial / "new_file").write_text("new", encoding="utf-8")
            raise Boom()
    assert sorted(p.name for p in target.iterdir()) == ["old_file"]
    assert _leftovers(tmp_path) == []


def test_directory_failed_swap_puts_old_back(tmp_path, monkeypatch):
    """If renaming the new directory in fails, the old one returns: target never goes missing."""
    target = tmp_path / "run"
    target.mkdir()
    (target / "old_file").write_text("old", encoding="utf-8")
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:   # 1: target -> aside, 2: partial -> target
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="I/O error"):
        with atomic_directory(target, force=True) as partial:
            (partial / "new_file").write_text("new", encoding="utf-8")
    assert calls[0][0] == "run" and calls[0][1].startswith(".run.old-")
    assert calls[2] == (calls[0][1], "run")   # put back
    assert sorted(p.name for p in target.iterdir()) == ["old_file"]
    assert _leftovers(tmp_path) == []


def test_directory_keep_on_error_then_resume(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(Boom) as info:
        with atomic_directory(target, force=False, keep_on_error=True) as partial:
            (partial / "epoch_1.ckpt").write_text("1", encoding="utf-8")
            raise Boom()
    kept = Path(info.value.partial_path)
    assert kept == partial and (kept / "epoch_1.ckpt").exists()
    assert f"partial directory kept: {partial}" in getattr(info.value, "__notes__", [""] )[0] \
        or sys.version_info < (3, 11)
    assert not target.exists()

    with atomic_directory(target, force=False, keep_on_error=True, resume=kept) as again:
        assert again == kept
        (again / "epoch_2.ckpt").write_text("2", encoding="utf-8")
    assert sorted(p.name for p in target.iterdir()) == ["epoch_1.ckpt", "epoch_2.ckpt"]
    assert _leftovers(tmp_path) == []


def test_directory_resume_must_sit_beside_target(tmp_path):
    elsewhere = tmp_path / "a" / ".run.partial-x"
    elsewhere.mkdir(parents=True)
    with pytest.raises(UsageError, match="must be in"):
        with atomic_directory(tmp_path / "run", force=False, resume=elsewhere):
            pass   # pragma: no cover
    with pytest.raises(UsageError, match="not a directory"):
        with atomic_directory(tmp_path / "run", force=False, resume=tmp_path / ".missing"):
            pass   # pragma: no cover


@pytest.mark.parametrize("keep", [False, True])
def test_directory_full_disk(tmp_path, keep):
    target = tmp_path / "run"
    with pytest.raises(TextclfError) as info:
        with atomic_directory(target, force=False, keep_on_error=keep) as partial:
            (partial / "a").write_text("x", encoding="utf-8")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert type(info.value) is TextclfError and info.value.exit_code == 1
    assert str(info.value).startswith(f"cannot write {target}: no space left on device (partial directory ")
    assert not target.exists()
    if keep:
        assert info.value.partial_path == str(partial) and partial.exists()
        assert str(partial) in str(info.value)
    else:
        assert _leftovers(tmp_path) == []


def test_directory_sigterm_removes_partial(tmp_path):
    done = _run_and_terminate(tmp_path, """
        with atomic_directory("run", force=False) as d:
            (d / "f").write_text("x")
            print("ready", flush=True)
            time.sleep(30)
    """)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
