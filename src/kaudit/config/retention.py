"""The `audit.retention` section: how long audit data is kept.

This module owns the minimum and maximum age of the local log, the search index and
exported files, and the S3 lifecycle rules applied to each S3 destination's bucket.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from kaudit.config.fields import ConfigModel, config_error

__all__ = ["LifecycleRule", "Retention"]


class LifecycleRule(ConfigModel):
    """Move exported objects to a cheaper storage class after `days` (S3 lifecycle)."""

    days: int = Field(gt=0)
    storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ]


class Retention(ConfigModel):
    """How long audit data is kept: never removed before `min_days`, removed after
    `max_days` (the local log, the search index and exported files)."""

    min_days: int = Field(default=365, ge=0)
    """Data younger than this is never removed (the compliance minimum)."""
    max_days: int | None = Field(default=None, gt=0)
    """Data older than this is removed; unset keeps everything."""
    lifecycle: list[LifecycleRule] = []
    """The seed's S3 lifecycle rules, applied to the bucket of each S3 destination."""

    @field_validator("max_days")
    @classmethod
    def _not_below_min(cls, max_days: int | None, info: ValidationInfo) -> int | None:
        min_days = info.data.get("min_days")
        if max_days is not None and isinstance(min_days, int) and max_days < min_days:
            raise config_error(
                "retention_range",
                f"max_days ({max_days}) is below min_days ({min_days}): data would have to "
                "be removed before it may be; accepted: max_days >= min_days, or unset",
            )
        return max_days
