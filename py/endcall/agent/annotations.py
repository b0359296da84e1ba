"""The job's own fields in the report: `EndCall(report_meta=...)` and `end.annotate(...)`.

They land in the report's `annotations` object (protocol.md §6), e.g. the test id and company
id the job's metadata carried, so the backend can file the report without a lookup. Values are
JSON (str, number, bool, null, lists, objects); the whole object is at most 4,096 bytes
serialized. Bad input raises `ValueError` where it is given, never later in the end path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from endcall.protocol import (
    MAX_META_BYTES,
    ProtocolError,
    canonical_json,
    check_annotations,
    json_size,
)

__all__ = ["Annotations"]


class Annotations:
    """A validated JSON object, updated key by key until the report is built."""

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self._fields: dict[str, Any] = {}
        if fields:
            self.update(fields)

    def update(self, fields: Mapping[str, Any]) -> None:
        """Merge `fields` in (a later value for a key wins). Raises `ValueError`."""
        merged = {**self._fields}
        for key, value in fields.items():
            if not isinstance(key, str) or not key:
                raise ValueError("annotation keys must be non-empty strings")
            try:
                json_size(value)  # only JSON types (no tuples, sets, objects)
                canonical_json(value)  # finite numbers
            except (TypeError, ValueError) as e:
                raise ValueError(f"annotation {key!r} is not a JSON value: {e}") from None
            merged[key] = value
        try:
            check_annotations(merged)
        except ProtocolError:
            raise ValueError(
                f"annotations are {json_size(merged)} bytes serialized; the limit is "
                f"{MAX_META_BYTES}"
            ) from None
        self._fields = merged

    def snapshot(self) -> dict[str, Any]:
        """A copy for one report."""
        return dict(self._fields)
