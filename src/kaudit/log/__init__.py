"""The audit log: the append-only, sequenced source of truth, and readers over it."""

from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, Position, RecoveryReport, SegmentLog

__all__ = ["Cursor", "LogReader", "Position", "RecoveryReport", "SegmentLog"]
