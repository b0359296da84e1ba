"""What operators and the CLI do: list, count, replay and purge rows."""

from __future__ import annotations

from endcall.reports.outbox.base import (
    ATTEMPTS_TABLE,
    STATUSES,
    TABLE,
    Backlog,
    OutboxRecord,
    Status,
)
from endcall.reports.outbox.schema import (
    COLUMNS,
    chunks,
    in_list,
    row_record,
)
from endcall.reports.outbox.sql_core import SqlCore


class OutboxAdmin(SqlCore):
    """The operators' side: rows listed and counted, dead ones replayed, old ones purged."""

    def records(
        self, status: Status | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[OutboxRecord]:
        where = "" if status is None else " WHERE status = :st"
        with self._t(write=False) as tx:
            rows = tx.run(
                f"SELECT {COLUMNS} FROM {TABLE}{where}"
                " ORDER BY created_at DESC, end_id LIMIT :lim OFFSET :off",
                {"st": status, "lim": limit, "off": offset},
            )
        return [row_record(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._t(write=False) as tx:
            rows = tx.run(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status")
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def backlog(self) -> Backlog:
        """Rows by status and the age of the oldest report not yet delivered (pending or
        being delivered; drafts are sessions still running), by the database's clock."""
        with self._t(write=False) as tx:
            now = self._now(tx)
            rows = tx.run(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status")
            oldest = tx.run(
                f"SELECT MIN(created_at) FROM {TABLE} WHERE status IN ('pending', 'delivering')"
            )
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        first = oldest[0][0] if oldest else None
        return Backlog(counts, None if first is None else max(0.0, now - float(first)))

    def replay(self, end_id: str) -> bool:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', attempts = 0, next_attempt_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL, delivered_at = NULL,"
                " updated_at = :now WHERE end_id = :id AND status IN ('delivered', 'dead',"
                " 'pending') RETURNING end_id",
                {"id": end_id, "now": now},
            )
        return bool(rows)

    def make_due(self) -> int:
        """Make every pending report that waits for a later attempt due now (its attempt
        count unchanged; drafts and leased rows untouched). Returns how many."""
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET next_attempt_at = :now, updated_at = :now"
                " WHERE status = 'pending' AND next_attempt_at > :now"
                " AND (lease_owner IS NULL OR lease_expires_at <= :now) RETURNING end_id",
                {"now": now},
            )
        return len(rows)

    def replay_dead(self, since: float | None = None) -> list[str]:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', attempts = 0, next_attempt_at = :now,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now"
                " WHERE status = 'dead' AND updated_at >= :since RETURNING end_id",
                {"now": now, "since": 0.0 if since is None else since},
            )
        return sorted(r[0] for r in rows)

    def purge(self, delivered_before: float) -> int:
        with self._t() as tx:
            rows = tx.run(
                f"DELETE FROM {TABLE} WHERE status = 'delivered' AND delivered_at < :t"
                " RETURNING end_id",
                {"t": delivered_before},
            )
            for part in chunks([r[0] for r in rows]):
                sql_in, params = in_list(part)
                tx.run(f"DELETE FROM {ATTEMPTS_TABLE} WHERE end_id IN {sql_in}", params)
        return len(rows)
