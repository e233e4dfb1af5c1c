"""The awsops home (``$AWSOPS_HOME``, default ``~/.awsops``) and private files in it.

Plans, journals, locks and the plan-signing key hold role ARNs, external ids and the
record of what was destroyed: they are created ``0600`` in directories ``0700``, written
through a fresh temporary file in the same directory (``O_CREAT | O_EXCL | O_NOFOLLOW``)
and renamed into place, and never written through a symbolic link.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from awsops.errors import UsageError

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def home() -> Path:
    """The awsops state directory (``AWSOPS_HOME`` or ``~/.awsops``), created 0700."""
    path = Path(os.environ.get("AWSOPS_HOME") or Path.home() / ".awsops")
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing directory is
    left as it is unless it is ours and group- or world-writable, which is tightened."""
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for p in reversed(missing):  # each one 0700: mkdir(parents=True) would not
            with contextlib.suppress(FileExistsError):
                p.mkdir(mode=DIR_MODE)
        st = path.lstat()
    except OSError as exc:
        raise UsageError(f"cannot create directory {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{path} is a symbolic link: refusing to keep private files there")
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(path, DIR_MODE)
    return path


def refuse_symlink(path: Path, what: str) -> None:
    """A one-line UsageError if ``path`` is a symbolic link."""
    if path.is_symlink():
        raise UsageError(f"{what} {path} is a symbolic link: refusing to write through it")


def check_writable_dir(path: Path, what: str) -> None:
    """Fail early, before any work, if ``path``'s directory cannot take a new file."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {what} {path}: directory {parent} is not writable")
    if path.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a directory")
    refuse_symlink(path, what)


def write_private(path: Path, data: bytes | Iterable[bytes], what: str = "file") -> Path:
    """Write ``data`` (bytes, or pieces of bytes) to ``path`` atomically with mode 0600.

    The bytes go to a new temporary file beside ``path`` (random name, created with
    O_EXCL and O_NOFOLLOW, so nothing placed there in advance is followed or reused),
    are fsync'd, and the file is renamed over ``path``. A symbolic link at ``path`` is
    refused rather than replaced or followed.
    """
    refuse_symlink(path, what)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            for piece in (data,) if isinstance(data, bytes) else data:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a failed write, or an interrupt: no temporary file left
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600 that never follows a symbolic link at ``path``."""
    return os.open(path, flags | _NOFOLLOW, FILE_MODE)
