"""Where a login may send the user afterwards: `next` is kept only when it is a path on
this site, so a crafted login link cannot turn the console into an open redirect."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["local_path"]


def local_path(value: object) -> str | None:
    """`value` if it is a local path (`/topics?x=1`), else None.

    Refused: absolute URLs, scheme-relative `//host`, backslashes (browsers read `/\\host`
    as `//host`), and control characters (a tab or newline inside `//` is dropped by
    browsers, turning `/\t/host` into `//host`).
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2048:
        return None
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return None
    return value
