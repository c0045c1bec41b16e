"""Write files and run directories so that readers see all of it or none of it.

Both context managers build their output under a hidden temporary name in the
target's own directory (same file system, so the final ``os.replace`` /
``os.rename`` is atomic) and move it onto the target only when the ``with``
body finished without an exception. On an exception, including
KeyboardInterrupt, the temporary output is removed and an existing target is
left as it was. SIGTERM is turned into ``SystemExit(143)`` while the body runs
(when we are in the main thread and nobody else handles SIGTERM), so a plain
``kill`` cleans up too; SIGKILL cannot be caught, and leaves a hidden
``.<name>.*.tmp`` file or ``.<name>.partial-*`` directory behind.

A full disk (``ENOSPC``, or ``EDQUOT`` for quotas) becomes a
:class:`TextclfError` (exit 1) naming the target, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator

from .errors import TextclfError, UsageError

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _is_no_space(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _NO_SPACE


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Make SIGTERM unwind the stack (SystemExit 143) so ``finally`` clean-up runs.

    Only installed from the main thread and only over the default handler: a
    handler the application set itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _umask_mode(full: int) -> int:
    """``full`` with the process umask applied, as open()/mkdir() would do.

    tempfile creates files 0600 and directories 0700 for privacy; our outputs
    are ordinary results and should get the permissions a plain open() gives.
    """
    mask = os.umask(0)   # reading the umask means setting it; put it straight back
    os.umask(mask)
    return full & ~mask


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    """Persist a rename in ``path`` (best effort: not every OS/file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _stdout_guard() -> Iterator[IO[str]]:
    try:
        yield sys.stdout
        sys.stdout.flush()
    except OSError as err:
        if _is_no_space(err):
            raise TextclfError("cannot write to standard output: no space left on device") from err
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike | None, force: bool,
                  encoding: str = "utf-8") -> Iterator[IO[str]]:
    """A text stream that lands on ``path`` only if the ``with`` body succeeds.

    Args:
        path: target file; ``None`` or ``"-"`` means standard output (written to
            directly, nothing atomic about it).
        force: overwrite an existing target. Without it an existing target is a
            usage error, checked before anything is written.
        encoding: text encoding of the file. Newlines are written as ``\\n`` on
            every platform.

    Yields:
        A writable text stream. For a path it is a temporary file
        ``<dir>/.<name>.XXXX.tmp``; at a successful exit it is flushed, fsynced
        and ``os.replace``-d onto ``path``.

    Raises:
        UsageError: ``path`` exists and ``force`` is false; ``path`` is a
            directory; its directory does not exist.
        TextclfError: the disk filled up while writing (the temporary file is
            removed), or the temporary file could not be created.
    """
    if path is None or os.fspath(path) == "-":
        with _stdout_guard() as out:
            yield out
        return

    target = os.fspath(path)
    if os.path.isdir(target):
        raise UsageError(f"{target} is a directory; expected a file name")
    if os.path.lexists(target) and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {target}: directory {parent} does not exist")
    try:
        tmp = tempfile.NamedTemporaryFile(
            mode="w", encoding=encoding, newline="\n", dir=parent, delete=False,
            prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        os.chmod(tmp.name, _umask_mode(0o666))
    except OSError as err:
        raise TextclfError(f"cannot write {target}: {err.strerror or err}") from err

    with _sigterm_as_exit():
        try:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
            tmp.close()
            os.replace(tmp.name, target)
        except BaseException as err:
            with contextlib.suppress(OSError):
                tmp.close()   # may fail again on a full disk flushing its buffer
            _remove_quietly(tmp.name)
            if _is_no_space(err):
                raise TextclfError(
                    f"cannot write {target}: no space left on device (nothing was written)") from err
            raise
    _fsync_dir(parent)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, force: bool, keep_on_error: bool = False,
                     resume: str | os.PathLike | None = None) -> Iterator[Path]:
    """A directory that appears at ``target`` complete, or not at all.

    Args:
        target: the directory to create. Missing parent directories are created
            (run directories usually live under a ``runs/`` folder made on demand).
        force: replace an existing ``target``. The old directory is renamed
            aside, the new one renamed in, and only then is the old one deleted;
            if renaming the new one in fails, the old one is put back, so
            ``target`` is never left missing.
        keep_on_error: keep the partial directory when the body fails (for
            resumable training). Its path is then attached to the exception as
            ``err.partial_path`` and, on Python >= 3.11, as an exception note.
        resume: an existing partial directory (one kept by ``keep_on_error``)
            to continue building in, instead of a fresh one. It must sit in
            ``target``'s parent so the final rename stays atomic.

    Yields:
        ``Path`` of the partial directory, ``<parent>/.<name>.partial-XXXX``
        (or ``resume``).

    Raises:
        UsageError: ``target`` exists and ``force`` is false; ``target`` is not a
            directory; ``resume`` is not a directory beside ``target``.
        TextclfError: the disk filled up (the partial directory is removed
            unless ``keep_on_error``).
    """
    target_s = os.path.abspath(os.fspath(target))
    shown = os.fspath(target)
    name = os.path.basename(target_s)
    parent = os.path.dirname(target_s)
    if os.path.lexists(target_s) and not os.path.isdir(target_s):
        raise UsageError(f"{shown} exists and is not a directory")
    if os.path.lexists(target_s) and not force:
        raise UsageError(f"{shown} exists; pass --force to overwrite")
    if resume is not None:
        partial = os.path.abspath(os.fspath(resume))
        if not os.path.isdir(partial):
            raise UsageError(f"cannot resume from {os.fspath(resume)}: not a directory")
        if os.path.dirname(partial) != parent:
            raise UsageError(f"cannot resume from {os.fspath(resume)}: it must be in {parent}, "
                             f"the directory of {shown}")
    else:
        try:
            os.makedirs(parent, exist_ok=True)
            partial = tempfile.mkdtemp(dir=parent, prefix=f".{name}.partial-")
            os.chmod(partial, _umask_mode(0o777))
        except OSError as err:
            raise TextclfError(f"cannot create {shown}: {err.strerror or err}") from err

    with _sigterm_as_exit():
        try:
            yield Path(partial)
            _move_into_place(partial, target_s, parent, name)
        except BaseException as err:
            if keep_on_error:
                what = f"partial directory kept: {partial}"
            else:
                shutil.rmtree(partial, ignore_errors=True)
                what = "partial directory removed"
            if _is_no_space(err):
                full = TextclfError(f"cannot write {shown}: no space left on device ({what})")
                full.partial_path = partial if keep_on_error else None
                raise full from err
            if keep_on_error:
                with contextlib.suppress(AttributeError):
                    err.partial_path = partial
                if hasattr(err, "add_note"):
                    err.add_note(what)
            raise
    _fsync_dir(parent)


def _move_into_place(partial: str, target: str, parent: str, name: str) -> None:
    """Rename ``partial`` onto ``target``, replacing an existing ``target`` without a gap."""
    if not os.path.lexists(target):
        os.rename(partial, target)
        return
    aside = os.path.join(parent, f".{name}.old-{secrets.token_hex(4)}")
    os.rename(target, aside)
    try:
        os.rename(partial, target)
    except BaseException:
        # Put the old directory back before reporting: never leave target missing.
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
