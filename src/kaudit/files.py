"""Who may read kaudit's files: audit data is created 0640 or tighter, and a private key
readable by group or others is refused, as ssh refuses such a key.

The audit log, its cursors, lock files, checkpoints, dead letters and the search index
hold who did what: they are created with mode 0640 (owner read/write, the group of an
auditing team read, others nothing; a stricter umask only removes more), and a file
found looser than that when kaudit opens it for writing is tightened. Private keys (the
Ed25519 checkpoint key, the HMAC key file, TLS keys) must be readable by their owner
only: `check_private_key` refuses one that group or others can read or write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, cast

from kaudit.errors import KauditError

__all__ = [
    "PRIVATE_FILE_MODE",
    "UnprotectedKeyError",
    "check_private_key",
    "open_private",
    "open_private_fd",
]

PRIVATE_FILE_MODE = 0o640
"""Audit data: owner read/write, group read, others nothing."""
_NOT_ALLOWED = 0o137  # anything beyond 0640: owner execute, group write/execute, others
_KEY_NOT_ALLOWED = 0o077  # a private key: nothing for group or others


class UnprotectedKeyError(KauditError):
    """A private key file that group or others may read or write. Retrying does not
    help: the file's mode must be fixed (chmod 600)."""


def open_private_fd(path: str | os.PathLike[str], flags: int) -> int:
    """`os.open(path, flags | O_CREAT)` creating the file 0640, and tightening an
    existing file that is looser."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & _NOT_ALLOWED:
            os.fchmod(fd, mode & PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str | os.PathLike[str], mode: str = "wb") -> BinaryIO:
    """A binary file object like `open(path, mode)` for "wb", "ab" or "r+b", creating the
    file 0640 (see `open_private_fd`)."""
    flags = {
        "wb": os.O_WRONLY | os.O_TRUNC,
        "ab": os.O_WRONLY | os.O_APPEND,
        "r+b": os.O_RDWR,
    }[mode]
    return cast(BinaryIO, open(open_private_fd(path, flags), mode))


def check_private_key(path: str | os.PathLike[str], what: str) -> None:
    """Refuse a private key file that group or others may read or write (as ssh does);
    a missing file is left to the caller's own error."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & _KEY_NOT_ALLOWED:
        raise UnprotectedKeyError(
            f"{Path(path)}: the {what} is accessible by group or others (mode "
            f"{mode:04o}); a private key must be readable by its owner only: "
            f"chmod 600 {Path(path)}"
        )
