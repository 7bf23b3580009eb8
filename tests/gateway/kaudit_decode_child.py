"""Frames decoded by the gateway's codec in a child process, for tests of hostile bytes.

kio's native reader can abort the process it runs in (a failed Rust allocation is
SIGABRT, not an exception), so these tests never decode hostile bytes in the test run
itself: a regression fails the test that found it, naming the frame and how the child
died, and the run goes on (the next frame gets a new child).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from typing import IO

REQUEST, RESPONSE = 0, 1
_HEAD = struct.Struct(">Bhhi")

# Reads (direction, api key, version, frame) messages from stdin until EOF and answers
# each with one line: "ok", "FrameDecodeError <message>" or "other <repr>".
_CHILD = """
import struct, sys
from kaudit.gateway.codec import FrameDecodeError, decode_request, decode_response
head = struct.Struct(">Bhhi")
read, out = sys.stdin.buffer.read, sys.stdout
while data := read(head.size):
    direction, key, version, size = head.unpack(data)
    frame = memoryview(read(size))  # as the connection hands frames to the codec
    try:
        if direction == 0:
            decode_request(frame)
        else:
            decode_response(key, version, frame)
    except FrameDecodeError as exc:
        answer = f"FrameDecodeError {exc}"
    except BaseException as exc:
        answer = f"other {exc!r}"
    else:
        answer = "ok"
    out.write(answer.replace("\\n", " ") + "\\n")
    out.flush()
"""


class DecodeChild:
    """A child process that decodes frames with `kaudit.gateway.codec`."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        # Kept open while the child lives: closed by close(), or after reading why it died.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def decode(self, direction: int, key: int, version: int, frame: bytes) -> str:
        """The child's answer for `frame`: "ok" or "FrameDecodeError <message>" (or
        "other <repr>" for any other exception); AssertionError if it died of it."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_HEAD.pack(direction, key, version, len(frame)) + frame)
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            code = proc.wait(timeout=30)
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")[:300]
            self._stderr.close()
            self._start()
            kind = "request" if direction == REQUEST else "response"
            raise AssertionError(
                f"decoding api {key} v{version} {kind} {frame!r} killed the decoding "
                f"process (exit status {code}): {err.strip()}"
            )
        return line.decode().rstrip("\n")

    def close(self) -> int:
        """Ends the child; its exit status (0 when it ended by reading the end of input)."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        code = self._proc.wait(timeout=30)
        self._stderr.close()
        return code
