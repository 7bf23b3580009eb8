"""The local log's checkpointer, run in its own process beside the writer.

The writer seals each line (the HMAC chain must be in the bytes it writes) but leaves
the Merkle tree to a follower process: after each durable append the writer sends it one
short line saying how far the log is durable, and the follower reads those lines back
from the segment files (from the page cache), hashes them into the tree and writes the
signed checkpoints beside the segments. Hashing every event twice more (its leaf and,
on average, one interior node) thus runs on another core instead of holding the
writer's interpreter lock; a checkpoint never covers an event before the writer said it
was durable.

Protocol, one ASCII line per message. Writer to follower (stdin): `A <size> <segment>
<offset>` the log holds `size` durable events and ends at that position; `T` the
writer's tick (heartbeats are written only while the writer is alive and ticking); `C
<size> <segment> <offset>` close: catch up to there and write the final checkpoint.
The writer never waits for a follower that is behind: when the pipe is full it drops
`A` and `T` (the next `A` supersedes them). Follower to writer (stdout): `ready <size>` after
resuming and writing the start checkpoint, `closed <size>` after the final one, `error
<message>` when it cannot start. End of input without `C` means the writer is gone
(killed): the follower signs nothing more and exits.

Beyond the timing of `Checkpointer`, a checkpoint is written at each segment roll (it
covers exactly the closed segment), and with `fsync: never` the segments a checkpoint
covers are fsynced before it is written, so no signed checkpoint outlives its events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson

from kaudit.errors import KauditError, LogError
from kaudit.integrity.checkpointer import Checkpointer, resumable_tree
from kaudit.integrity.keys import Signer, load_signer
from kaudit.integrity.merkle import MerkleTree, leaf_hashes
from kaudit.integrity.store import LocalCheckpointStore, StoredCheckpoint, last_checkpoint
from kaudit.log.segments import LogReader, Position, SegmentLog, list_segments, segment_name

log = logging.getLogger("kaudit.integrity")

_START_TIMEOUT_S = 300.0  # resuming rereads the log after the last checkpoint
_CLOSE_TIMEOUT_S = 300.0  # the follower may be behind the writer at close
_RESTART_INTERVAL_S = 5.0
_NICENESS = 19
# Not `-m`: the kaudit package imports this module, and runpy warns about running it twice.
_ENTRY = "import sys; from kaudit.integrity.follower import main; sys.exit(main())"


class LogFollower:
    """The follower's state: the tree of a local log and where in the log it ends."""

    def __init__(
        self,
        log_dir: Path,
        log_size: int,
        signer: Signer,
        origin: str,
        *,
        every_events: int,
        every_seconds: float,
        anchor: Path | None = None,
        fsync_segments: bool = False,
    ) -> None:
        self.dir = log_dir
        self.reader = LogReader(log_dir)
        self.store = LocalCheckpointStore(log_dir)
        self.anchor = None if anchor is None else LocalCheckpointStore(anchor.parent, anchor)
        self.fsync_segments = fsync_segments
        self._unsynced: set[int] = set()
        tree, self.position = self._resume(log_size)
        self.checkpointer = Checkpointer(
            tree,
            signer,
            origin,
            self._store,
            every_events=every_events,
            every_seconds=every_seconds,
        )
        # A checkpoint at start says where this run begins (also after an unclean stop).
        self.checkpointer.checkpoint()

    def _resume(self, log_size: int) -> tuple[MerkleTree, Position]:
        """The tree at the log's end: from the last checkpoint's frontier plus the lines
        written after it; from the whole log when there is no checkpoint or its frontier
        does not fold to the root it signed."""
        stored = last_checkpoint(self.dir)
        tree, position = MerkleTree(), self.reader.start()
        if stored is not None and stored.size <= log_size:
            if resumable_tree(stored.size, stored.frontier, stored.note):
                tree = MerkleTree.from_frontier(stored.size, list(stored.frontier))
                position = Position(stored.segment, stored.offset)
            else:
                log.warning(
                    "the tree frontier stored with the last checkpoint of %s does not match "
                    "its signed root; rebuilding the tree from the log",
                    self.dir,
                )
        position = self._read_to(tree, position, log_size)
        if tree.size != log_size:
            raise LogError(
                f"the audit log in {self.dir} holds {tree.size} events by its checkpoints "
                f"and segments but its next sequence number is {log_size}: "
                "run `kaudit verify` on it"
            )
        return tree, position

    def _read_to(self, tree: MerkleTree, position: Position, size: int) -> Position:
        """Hash the lines after `position` into `tree` until it holds `size` leaves."""
        while tree.size < size:
            lines, after = self.reader.read(position, min(size - tree.size, 10_000))
            if not lines:
                break
            tree.extend(leaf_hashes([line[:-1] for line in lines]))
            self._unsynced.add(after.segment)
            position = after
        return position

    def _rolled(self, end_of_segment: Position) -> None:
        """The log moved on to a new segment: checkpoint the one that closed."""
        if self.checkpointer.uncovered:
            self.position = end_of_segment
            self.checkpointer.checkpoint()

    def _store(self, size: int, frontier: tuple[bytes, ...], note: bytes) -> None:
        if self.fsync_segments:
            for base in sorted(self._unsynced):
                try:
                    fd = os.open(self.dir / segment_name(base), os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._unsynced.clear()
        stored = StoredCheckpoint(size, self.position.segment, self.position.offset, frontier, note)
        self.store.write(stored)
        if self.anchor is not None:
            self.anchor.write(stored)

    def follow(self, size: int, end: Position) -> None:
        """The writer says the log holds `size` durable events ending at `end`: hash the
        lines up to there, reading exactly the bytes the writer wrote since last time."""
        checkpointer = self.checkpointer
        while self.position != end:
            segment, offset = self.position
            path = self.dir / segment_name(segment)
            with open(path, "rb") as f:
                stop = end.offset if segment == end.segment else os.fstat(f.fileno()).st_size
                f.seek(offset)
                data = f.read(stop - offset)
            if data:
                if not data.endswith(b"\n"):
                    raise LogError(f"{path} ends in a partial line at {stop}")
                # split() drops each newline: the leaf is the line without it.
                checkpointer.extend(leaf_hashes(data.split(b"\n")[:-1]))
                self._unsynced.add(segment)
                self.position = Position(segment, offset + len(data))
            if segment != end.segment:
                later = [s for s in list_segments(self.dir) if s > segment]
                if not later:
                    raise LogError(f"the audit log in {self.dir} has no segment after {path}")
                self._rolled(self.position)
                self.position = Position(later[0], 0)
        if checkpointer.tree.size != size:
            raise LogError(
                f"the audit log in {self.dir} reads {checkpointer.tree.size} events up to "
                f"{end}, the writer says {size}"
            )
        if checkpointer.due:
            checkpointer.checkpoint()

    def tick(self) -> None:
        self.checkpointer.tick()

    def close(self) -> int:
        self.checkpointer.checkpoint(closed=True)
        return self.checkpointer.tree.size


def _serve(settings: dict[str, Any], commands: IO[bytes], replies: IO[bytes]) -> int:
    try:
        follower = LogFollower(
            Path(settings["log_dir"]),
            int(settings["log_size"]),
            load_signer(settings["key_file"]),
            settings["origin"],
            every_events=int(settings["every_events"]),
            every_seconds=float(settings["every_seconds"]),
            anchor=Path(settings["anchor"]) if settings.get("anchor") else None,
            fsync_segments=bool(settings.get("fsync_segments")),
        )
    except (KauditError, OSError) as exc:
        replies.write(b"error " + str(exc).replace("\n", " ").encode() + b"\n")
        replies.flush()
        return 1
    replies.write(b"ready %d\n" % follower.checkpointer.tree.size)
    replies.flush()
    for raw in commands:
        kind = raw[:1]
        try:
            if kind == b"A":
                size, segment, offset = (int(x) for x in raw[1:].split())
                follower.follow(size, Position(segment, offset))
            elif kind == b"T":
                follower.tick()
            elif kind == b"C":
                size, segment, offset = (int(x) for x in raw[1:].split())
                follower.follow(size, Position(segment, offset))
                size = follower.close()
                replies.write(b"closed %d\n" % size)
                replies.flush()
                return 0
        except (LogError, OSError) as exc:  # read or written again at the next message
            log.error("checkpoint follower of %s: %s", follower.dir, exc)
    return 0  # the writer is gone without closing: nothing more is signed


def main() -> int:
    # The writer ends the follower (`C`, or end of input): Ctrl-C in a terminal and
    # systemd's SIGTERM reach the whole process group, and a follower that died of them
    # would leave the writer's clean stop without its final checkpoint.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # Background work: the writer, whose callers may wait on it, goes first for the CPU;
    # checkpoints are due every few seconds, not per event.
    os.nice(_NICENESS)
    logging.basicConfig(
        level=logging.INFO, format="kaudit checkpoint follower: %(levelname)s %(message)s"
    )
    return _serve(orjson.loads(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)


class FollowerProcess:
    """The writer's side: starts the follower, tells it what is durable, closes it.

    A follower that dies is started again (at most every few seconds); the new one
    resumes from the last checkpoint and catches up from the log.
    """

    def __init__(
        self,
        log: SegmentLog,
        key_file: str,
        origin: str,
        *,
        every_events: int,
        every_seconds: float,
        anchor: Path | None = None,
    ) -> None:
        self.log = log
        self._settings = {
            "log_dir": str(log.dir),
            "key_file": key_file,
            "origin": origin,
            "every_events": every_events,
            "every_seconds": every_seconds,
            "anchor": None if anchor is None else str(anchor),
            "fsync_segments": log.fsync == "never",
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_start = 0.0
        load_signer(key_file)  # a bad key file is refused here, with its own message
        self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        settings = dict(self._settings, log_size=self.log.next_sequence)
        proc = subprocess.Popen(
            [sys.executable, "-c", _ENTRY, orjson.dumps(settings).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            # Out of the writer's process group, so that Ctrl-C does not reach it even
            # before it ignores signals (see `main`).
            process_group=0,
        )
        reply = self._reply(proc, _START_TIMEOUT_S)
        if not reply.startswith(b"ready "):
            proc.kill()
            proc.wait()
            reason = reply.removeprefix(b"error ").decode(errors="replace").strip()
            raise LogError(
                f"the checkpointer of {self.log.dir} did not start: "
                f"{reason or f'it exited with code {proc.returncode}'}"
            )
        assert proc.stdin is not None
        # Never wait on a follower that is behind: a message that does not fit is
        # dropped, as the next `A` says more (see `_send`).
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc = proc

    @staticmethod
    def _reply(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        return proc.stdout.readline() if ready else b""

    def _send(self, message: bytes, *, wait: bool = False) -> None:
        """Send one message. A follower that has fallen behind (the pipe is full) gets
        no more `A` or `T` until it has read what it has: each `A` supersedes the ones
        before, and `C` carries the final position. With `wait`, wait for room."""
        proc = self._proc
        if proc is None:
            if time.monotonic() - self._last_start < _RESTART_INTERVAL_S:
                return
            log.warning("starting the checkpointer of %s again", self.log.dir)
            self._start()
            proc = self._proc
            assert proc is not None
        assert proc.stdin is not None
        try:
            # Shorter than PIPE_BUF: written whole or not at all.
            while proc.stdin.write(message) is None:
                if not wait:
                    return
                select.select([], [proc.stdin], [], 1.0)
        except BlockingIOError:
            return  # the same: no room
        except (BrokenPipeError, ValueError):
            log.error("the checkpointer of %s stopped (exit code %s)", self.log.dir, proc.poll())
            self._proc = None

    def _where(self) -> bytes:
        position = self.log.position
        return b"%d %d %d" % (self.log.next_sequence, position.segment, position.offset)

    def appended(self) -> None:
        self._send(b"A " + self._where() + b"\n")

    def tick(self) -> None:
        self._send(b"T\n")

    def close(self, *, checkpoint: bool = True) -> None:
        """Stop the follower; with `checkpoint`, once it has caught up and written the
        final checkpoint (waits for it). Without, it signs nothing more."""
        if checkpoint:
            self._send(b"C " + self._where() + b"\n", wait=True)
        proc, self._proc = self._proc, None
        if proc is None:
            if checkpoint:
                raise LogError(f"no final checkpoint for {self.log.dir}: its checkpointer stopped")
            return
        reply = self._reply(proc, _CLOSE_TIMEOUT_S) if checkpoint else b""
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if checkpoint and not reply.startswith(b"closed "):
            raise LogError(f"no final checkpoint for {self.log.dir}: its checkpointer failed")
