"""One driver per output folder: an exclusive lock held for as long as a grid runs there.

Two drivers on one folder would run every unit twice and race on MLflow. ``OutputLock`` takes
an exclusive ``flock`` on ``<output>/.uqroute.lock`` and writes who holds it (host, pid, command,
since when) into the file. The kernel drops the lock when the holding process dies, however it
dies (SIGKILL included), so a lock left by a dead driver is taken over by the next one without
any staleness guess; its old holder line is reported as taken over.

Shared filesystems: on NFSv4 (and Lustre, GPFS, CephFS, which implement POSIX locks across
clients) ``flock`` is mapped to a byte-range lock the server arbitrates, so two drivers on
different nodes exclude each other too. On a filesystem without cross-client locks (NFSv3
mounted with ``nolock``, some FUSE filesystems) it cannot hold: keep the output folder there
only if one node drives.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".uqroute.lock"


class FolderLocked(RuntimeError):
    """Another live driver holds the output folder."""


class OutputLock:
    def __init__(self, folder: Path | str):
        self.path = Path(folder) / LOCK_FILE
        self.fd: int | None = None
        self.previous: dict | None = None  # the holder line found when the lock was free (a dead driver)

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} ({holder.get('command')})"
                if holder
                else "another process"
            )
            raise FolderLocked(
                f"{self.path.parent} is in use by {who}. Wait for it to finish, or stop it "
                f"(Ctrl-C); a killed driver's lock is released by the kernel."
            ) from None
        self.previous = _read(fd) or None
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}
