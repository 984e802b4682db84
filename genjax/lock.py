"""One live run per workdir: an advisory lock taken before anything is written.

`train_and_evaluate` holds `hold(workdir)` for the whole run. The lock is an exclusive
`flock` on `<workdir>/run.lock`, a file that records its holder (PID, host, start time,
command) while the run lives and is emptied when it ends. The kernel releases a `flock`
when its process dies however it dies (`kill -9` included), so a record left behind by
a dead process never blocks a rerun: the next run takes the lock over and says so.
A second run started on a workdir that a live run holds stops at once with
`WorkdirInUseError` (exit status 2 from train.py), naming the holder; it writes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from absl import logging

from genjax.errors import CheckpointSaveError, GenjaxError

LOCK_NAME = "run.lock"


class WorkdirInUseError(GenjaxError):
    """Another live process is training in this workdir."""


def _record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv])}


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {"raw": text[:200]}
    return record if isinstance(record, dict) else {"raw": text[:200]}


def _describe(record: dict | None) -> str:
    if not record:
        return "another process (it has not written its details yet)"
    if "pid" not in record:
        return f"an unknown process (lock file content: {record.get('raw')!r})"
    return (f"PID {record['pid']} on host {record.get('host', '?')}, started "
            f"{record.get('started', '?')} ({record.get('command', '?')})")


def _write(fd: int, record: dict | None) -> None:
    os.ftruncate(fd, 0)
    if record is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)


def _alive_here(record: dict | None) -> bool:
    """Whether a record names a live process on this host (for filesystems without flock)."""
    if not record or "pid" not in record or record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@contextlib.contextmanager
def hold(workdir) -> Iterator[Path]:
    """Holds `<workdir>/run.lock` for the duration of the block (creating the workdir).

    Raises WorkdirInUseError when a live process holds it, and CheckpointSaveError when
    the workdir cannot be created or written.
    """
    workdir = Path(workdir)
    path = workdir / LOCK_NAME
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CheckpointSaveError(
            f"Cannot write to the workdir {workdir}: {type(e).__name__}: {e}. Pass a "
            "--workdir on a writable disk with free space.") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirInUseError(
                    f"The workdir {workdir} is in use by {_describe(_read(fd))}. Two runs "
                    "in one workdir would overwrite each other's checkpoints. Wait for that "
                    "run to finish or stop it (it saves and exits on Ctrl-C or SIGTERM), or "
                    "train in another --workdir.") from None
            # A filesystem without flock (some network mounts): trust a live PID here.
            locked = False
            if _alive_here(_read(fd)) and _read(fd).get("pid") != os.getpid():
                raise WorkdirInUseError(
                    f"The workdir {workdir} is in use by {_describe(_read(fd))}. Wait for "
                    "that run to finish or stop it, or train in another --workdir.") from None
        left = _read(fd)
        if left:
            logging.warning("Taking over %s, left by %s, which is no longer running.",
                            path, _describe(left))
        _write(fd, _record())
        try:
            yield path
        finally:
            _write(fd, None)
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
