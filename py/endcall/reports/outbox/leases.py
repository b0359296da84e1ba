"""What senders do: claim due rows under a lease, renew it, and record each attempt's outcome."""

from __future__ import annotations

from typing import Any

from endcall.reports.outbox.base import ATTEMPTS_TABLE, TABLE, OutboxRecord, draft_key
from endcall.reports.outbox.schema import (
    COLUMNS,
    NO_FINAL,
    row_record,
)
from endcall.reports.outbox.sql_core import SqlCore


class DeliveryLeases(SqlCore):
    """The senders' side: due rows claimed under a lease, outcomes recorded per attempt."""

    def renew(self, end_id: str, owner: str, lease: float) -> OutboxRecord | None:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'delivering', lease_owner = :o,"
                " lease_expires_at = :exp, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o OR lease_expires_at <= :now)"
                f"{NO_FINAL} RETURNING {COLUMNS}",
                {"id": end_id, "o": owner, "exp": now + lease, "now": now},
            )
        return row_record(rows[0]) if rows else None

    def renew_draft(self, end_id: str, owner: str, lease: float) -> bool:
        """The running session's heartbeat: extend the lease on its crash draft (still ours,
        still a draft); False when it was taken over or is gone."""
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET lease_expires_at = :exp, updated_at = :now"
                " WHERE end_id = :key AND status = 'draft' AND lease_owner = :o RETURNING end_id",
                {"key": draft_key(end_id), "o": owner, "exp": now + lease, "now": now},
            )
        return bool(rows)

    def release_scope(self, scope: str, quiet: float) -> float | None:
        """Its owner is gone from ``scope`` (LiveKit said so): each crash draft of that scope
        (or of a scope nested in it, ``scope/…``) may be taken over once its owner has been
        silent for ``quiet`` seconds — its lease now ends at the later of now and its last
        renewal + ``quiet`` (never later than it did). Returns the earliest such time (the
        database's clock), None when no draft is held."""
        with self._t() as tx:
            now = self._now(tx)
            until = "CASE WHEN updated_at + :q > :now THEN updated_at + :q ELSE :now END"
            rows = tx.run(
                f"UPDATE {TABLE} SET lease_expires_at = {until}"
                " WHERE (scope = :s OR substr(scope, 1, :n) = :nested) AND status = 'draft'"
                f" AND lease_owner IS NOT NULL AND lease_expires_at > {until}"
                " RETURNING lease_expires_at",
                {"s": scope, "n": len(scope) + 1, "nested": scope + "/", "q": quiet, "now": now},
            )
        return min((float(r[0]) for r in rows), default=None)

    def silent_scopes(self, quiet: float, limit: int = 50) -> list[str]:
        """Scopes of held drafts not renewed for ``quiet`` seconds, the longest silent first."""
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"SELECT scope, MIN(updated_at) AS quiet_since FROM {TABLE}"
                " WHERE status = 'draft' AND scope IS NOT NULL AND lease_owner IS NOT NULL"
                " AND lease_expires_at > :now AND updated_at <= :since"
                " GROUP BY scope ORDER BY quiet_since LIMIT :lim",
                {"now": now, "since": now - quiet, "lim": limit},
            )
        return [str(r[0]) for r in rows]

    def claim(self, owner: str, *, limit: int, lease: float) -> list[OutboxRecord]:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"SELECT end_id FROM {TABLE}"
                " WHERE status IN ('draft', 'pending', 'delivering')"
                " AND next_attempt_at <= :now"
                " AND (lease_owner IS NULL OR lease_expires_at <= :now)"
                f"{NO_FINAL} ORDER BY next_attempt_at LIMIT :lim" + self.claim_lock,
                {"now": now, "lim": limit},
            )
            out: list[OutboxRecord] = []
            for (end_id,) in rows:
                upd = tx.run(
                    f"UPDATE {TABLE} SET status = 'delivering', lease_owner = :o,"
                    " lease_expires_at = :exp, updated_at = :now WHERE end_id = :id"
                    f" RETURNING {COLUMNS}",
                    {"o": owner, "exp": now + lease, "now": now, "id": end_id},
                )
                out.extend(row_record(u) for u in upd)
        return out

    def mark_failed(
        self,
        end_id: str,
        owner: str,
        *,
        dead: bool,
        next_attempt_at: float,
        status_code: int | None,
        error: str,
        keep_lease: float | None = None,
    ) -> bool:
        keep = keep_lease is not None
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = :st, attempts = attempts + 1,"
                " last_status = :s, last_error = :e, next_attempt_at = :nxt,"
                " lease_owner = :lo, lease_expires_at = :le, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id, attempts",
                {
                    "id": end_id,
                    "st": "dead" if dead else "pending",
                    "s": status_code,
                    "e": error[:2000],
                    "nxt": next_attempt_at,
                    "lo": owner if keep and not dead else None,
                    "le": now + keep_lease if keep_lease is not None and not dead else None,
                    "now": now,
                    "o": owner,
                },
            )
            outcome = "dead" if dead else "failed"
            self._log_attempts(tx, rows, now, outcome, status_code, error[:2000])
        return bool(rows)

    def attempts(self, end_id: str) -> list[dict[str, Any]]:
        """Every recorded delivery attempt of one row, oldest first: ``attempt``, ``at``,
        ``outcome`` (``delivered``/``failed``/``dead``), ``status_code``, ``error``."""
        with self._t(write=False) as tx:
            rows = tx.run(
                f"SELECT attempt, at, outcome, status_code, error FROM {ATTEMPTS_TABLE}"
                " WHERE end_id = :id ORDER BY at, attempt",
                {"id": end_id},
            )
        keys = ("attempt", "at", "outcome", "status_code", "error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def defer(self, end_id: str, owner: str, *, until: float, error: str) -> bool:
        with self._t() as tx:
            now = self._now(tx)
            rows = tx.run(
                f"UPDATE {TABLE} SET status = 'pending', last_error = :e, next_attempt_at = :nxt,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now"
                " WHERE end_id = :id AND status IN ('pending', 'delivering')"
                " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id",
                {"id": end_id, "o": owner, "e": error[:2000], "nxt": until, "now": now},
            )
        return bool(rows)

    def release(self, end_id: str, owner: str) -> None:
        with self._t() as tx:
            now = self._now(tx)
            tx.run(
                f"UPDATE {TABLE} SET lease_owner = NULL, lease_expires_at = NULL,"
                " status = CASE WHEN status = 'delivering' THEN 'pending' ELSE status END,"
                " updated_at = :now WHERE end_id = :id AND lease_owner = :o"
                " AND status <> 'draft'",
                {"id": end_id, "o": owner, "now": now},
            )
