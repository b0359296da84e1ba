"""The job's own fields in the report: `EndCall(report_meta=...)` and `end.annotate(...)`.

They land in the report's `annotations` object (protocol.md §6), e.g. the test id and company
id the job's metadata carried, so the backend can file the report without a lookup. Values are
JSON (str, number, bool, null, lists, objects); the whole object is at most 4,096 bytes
serialized. Bad input raises `ValueError` where it is given, never later in the end path.

Each field remembers where it came from, and the report says so in `annotations_source`: a
plain mapping passed to `EndCall(report_meta=...)` and every `end.annotate(...)` are the
agent's code (`"code"`); a `ReportMeta` says itself (`endcall.job_config` makes one: `"signed"`
for fields of a verified dispatch claim, `"unsigned"` for fields of plain job metadata). The
least trusted field present decides, so a receiver never files a report under an id the
candidate may have chosen (protocol.md §6, "Trusting `annotations`").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from endcall.protocol import (
    ANNOTATIONS_SOURCES,
    MAX_META_BYTES,
    AnnotationsSource,
    ProtocolError,
    canonical_json,
    check_annotations,
    json_size,
)

__all__ = ["Annotations", "AnnotationsSnapshot", "ReportMeta", "least_trusted"]

#: from most to least trusted
_TRUST: dict[str, int] = {source: rank for rank, source in enumerate(ANNOTATIONS_SOURCES)}


def least_trusted(sources: Iterable[AnnotationsSource]) -> AnnotationsSource:
    """The least trusted of `sources` (`"code"` when there are none)."""
    worst: AnnotationsSource = "code"
    for source in sources:
        if _TRUST[source] > _TRUST[worst]:
            worst = source
    return worst


def _check_source(source: str) -> AnnotationsSource:
    if source not in _TRUST:
        raise ValueError(f"source must be one of {', '.join(ANNOTATIONS_SOURCES)}, not {source!r}")
    return source  # type: ignore[return-value]


class ReportMeta(Mapping[str, Any]):
    """`report_meta` that knows where it came from: pass it to `EndCall(report_meta=...)` as
    it is (copying it into a plain dict makes it `"code"` again).

    `ReportMeta(fields, source="unsigned")` marks fields your code read from somewhere nobody
    signed (the default, so marking is never forgotten); `a | b` merges two, `b` winning per
    key with its own source. `config_refused` lists what `endcall.job_config` refused; EndCall
    writes it into the report's `end.config_refused`."""

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        *,
        source: AnnotationsSource = "unsigned",
        config_refused: tuple[str, ...] = (),
    ) -> None:
        _check_source(source)
        self._fields: dict[str, Any] = dict(fields or {})
        self._sources: dict[str, AnnotationsSource] = dict.fromkeys(self._fields, source)
        self.config_refused: tuple[str, ...] = tuple(config_refused)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"ReportMeta({self._fields!r}, source={self.source!r})"

    def __or__(self, other: object) -> ReportMeta:
        if not isinstance(other, ReportMeta):
            return NotImplemented
        merged = ReportMeta(config_refused=self.config_refused + other.config_refused)
        merged._fields = {**self._fields, **other._fields}
        merged._sources = {**self._sources, **other._sources}
        return merged

    def with_refusals(self, refused: tuple[str, ...]) -> ReportMeta:
        """The same fields with `refused` as `config_refused`."""
        copy = self | ReportMeta()
        copy.config_refused = tuple(refused)
        return copy

    def source_of(self, key: str) -> AnnotationsSource:
        return self._sources[key]

    @property
    def source(self) -> AnnotationsSource:
        """The least trusted source among the fields (`"code"` when there are none)."""
        return least_trusted(self._sources.values())


class AnnotationsSnapshot(dict[str, Any]):
    """The annotations of one report, with `source` for its `annotations_source`."""

    source: AnnotationsSource = "code"


class Annotations:
    """A validated JSON object, updated key by key until the report is built; each key
    remembers its source."""

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self._fields: dict[str, Any] = {}
        self._sources: dict[str, AnnotationsSource] = {}
        self.config_refused: tuple[str, ...] = ()
        if isinstance(fields, ReportMeta):
            self.config_refused = fields.config_refused
            self._merge(fields, {key: fields.source_of(key) for key in fields})
        elif fields:
            self.update(fields)

    def update(self, fields: Mapping[str, Any]) -> None:
        """Merge `fields` in, as the agent's code (a later value for a key wins). Raises
        `ValueError`."""
        self._merge(fields, dict.fromkeys(fields, "code"))

    def _merge(self, fields: Mapping[str, Any], sources: Mapping[str, AnnotationsSource]) -> None:
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
        self._sources.update(sources)

    @property
    def source(self) -> AnnotationsSource:
        return least_trusted(self._sources.values())

    def snapshot(self) -> AnnotationsSnapshot:
        """A copy for one report, with its `source`."""
        snap = AnnotationsSnapshot(self._fields)
        snap.source = self.source
        return snap
