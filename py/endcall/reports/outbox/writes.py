"""What the agent writes: crash drafts, the accepted end, and final reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from endcall.reports.outbox.base import TABLE, StoreResult, draft_key
from endcall.reports.outbox.schema import (
    Tx,
    chunks,
    in_list,
    json_text,
)
from endcall.reports.outbox.sql_core import SqlCore


class SessionWrites(SqlCore):
    """The agent's writes: drafts (leased to their writer), the accepted end on the draft,
    and final reports that replace the session's draft."""

    def _upsert_draft(
        self, tx: Tx, end_id: str, params: dict[str, Any], body_sql: str, ending_sql: str
    ) -> bool:
        """Insert the draft row or update it while it is still a draft, never once the
        session's final report exists."""
        if self._get(tx, end_id) is not None:
            return False
        key = draft_key(end_id)
        rows = tx.run(
            f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
            " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, delivery,"
            " ending, scope) VALUES (:key, 'draft', 1, :url, :h, :b, 0, :now, :o, :exp, :now,"
            " :now, :d, :ending, :scope)"
            f" ON CONFLICT (end_id) DO UPDATE SET url = :url, headers = :h, {body_sql}"
            f" lease_owner = :o, lease_expires_at = :exp, updated_at = :now, delivery = :d,"
            f" scope = COALESCE(:scope, {TABLE}.scope)"
            f"{ending_sql} WHERE {TABLE}.status = 'draft' RETURNING end_id",
            {"key": key, **params},
        )
        return bool(rows)

    def _draft_params(
        self,
        tx: Tx,
        url: str,
        body: bytes,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None,
        delivery: Mapping[str, Any] | None,
        scope: str | None,
    ) -> dict[str, Any]:
        now = self._now(tx)
        return {
            "scope": scope,
            "url": url,
            "h": json_text(headers),
            "b": body,
            "now": now,
            "o": owner,
            "exp": now + lease,
            "d": json_text(delivery),
            "ending": None,
        }

    def save_draft(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
        scope: str | None = None,
    ) -> bool:
        with self._t() as tx:
            p = self._draft_params(tx, url, body, owner, lease, headers, delivery, scope)
            return self._upsert_draft(tx, end_id, p, "body = :b,", "")

    def mark_ending(
        self,
        end_id: str,
        ending: Mapping[str, Any],
        *,
        url: str,
        body: bytes,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
        scope: str | None = None,
    ) -> bool:
        with self._t() as tx:
            p = self._draft_params(tx, url, body, owner, lease, headers, delivery, scope)
            p["ending"] = json_text(ending)
            return self._upsert_draft(tx, end_id, p, "", ", ending = :ending")

    def discard_draft(self, end_id: str) -> bool:
        with self._t() as tx:
            rows = tx.run(
                f"DELETE FROM {TABLE} WHERE end_id = :key AND status = 'draft' RETURNING end_id",
                {"key": draft_key(end_id)},
            )
        return bool(rows)

    def store(
        self,
        end_id: str,
        url: str,
        body: bytes,
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> StoreResult:
        return self.store_many(
            [(end_id, url, body)], owner=owner, lease=lease, headers=headers, delivery=delivery
        )[0]

    def store_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> list[StoreResult]:
        return self.write_many(
            items, (), owner=owner, lease=lease, headers=headers, delivery=delivery
        )

    def write_many(
        self,
        stores: Sequence[tuple[str, str, bytes]],
        delivered: Sequence[tuple[str, int]],
        *,
        owner: str,
        lease: float,
        headers: Mapping[str, str] | None = None,
        delivery: Mapping[str, Any] | None = None,
    ) -> list[StoreResult]:
        """`store_many` and `mark_delivered_many` in one transaction: one durable commit (one
        fsync with SQLite) for a sender's new reports and its finished deliveries together.
        Returns the store results.

        A batch costs a constant number of statements (one multi-row insert and one draft
        delete per chunk, one update per distinct status code), not a few per report: each
        statement is a round trip into the database and, from a worker thread, a fight for
        the GIL with the event loop."""
        h, d = json_text(headers), json_text(delivery)
        out: list[StoreResult] = []
        with self._t() as tx:
            now = self._now(tx)
            if stores:
                out = self._store_rows(tx, stores, h, d, owner, now, now + lease)
            by_code: dict[int, list[str]] = {}
            for end_id, code in delivered:
                by_code.setdefault(code, []).append(end_id)
            for code, ids in by_code.items():
                for part in chunks(ids):
                    sql_in, params = in_list(part)
                    rows = tx.run(
                        f"UPDATE {TABLE} SET status = 'delivered', attempts = attempts + 1,"
                        " last_status = :s, last_error = NULL, lease_owner = NULL,"
                        " lease_expires_at = NULL, delivered_at = :now, updated_at = :now"
                        f" WHERE end_id IN {sql_in} AND status <> 'delivered'"
                        " RETURNING end_id, attempts",
                        {"s": code, "now": now, **params},
                    )
                    self._log_attempts(tx, rows, now, "delivered", code, None)
        return out

    def _store_rows(
        self,
        tx: Tx,
        items: Sequence[tuple[str, str, bytes]],
        h: str,
        d: str,
        owner: str,
        now: float,
        exp: float,
    ) -> list[StoreResult]:
        """Insert final reports with one insert per chunk and delete their untaken drafts; an
        end_id already stored is left as it was (``"exists"``, also for a repeat within the
        batch)."""
        first: dict[str, int] = {}
        for i, (end_id, _, _) in enumerate(items):
            first.setdefault(end_id, i)
        stored: set[str] = set()
        order = list(first.values())
        for part in chunks(order, 100):
            params: dict[str, Any] = {"h": h, "d": d, "now": now, "o": owner, "exp": exp}
            values = []
            drafts = {}
            for j, i in enumerate(part):
                end_id, url, body = items[i]
                params[f"i{j}"], params[f"u{j}"], params[f"b{j}"] = end_id, url, body
                drafts[f"k{j}"] = draft_key(end_id)
                values.append(
                    f"(:i{j}, 'pending', 0, :u{j}, :h, :b{j}, 0, :now, :o, :exp, :now, :now, :d)"
                )
            rows = tx.run(
                f"INSERT INTO {TABLE} (end_id, status, is_draft, url, headers, body, attempts,"
                " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at,"
                f" delivery) VALUES {', '.join(values)}"
                " ON CONFLICT (end_id) DO NOTHING RETURNING end_id",
                params,
            )
            stored.update(r[0] for r in rows)
            tx.run(
                f"DELETE FROM {TABLE} WHERE status = 'draft'"
                f" AND end_id IN ({', '.join(':' + k for k in drafts)})",
                drafts,
            )
        out: list[StoreResult] = []
        for i, (end_id, _, _) in enumerate(items):
            out.append("stored" if end_id in stored and first[end_id] == i else "exists")
        return out

    def mark_delivered(self, end_id: str, owner: str, status_code: int) -> None:
        self.mark_delivered_many([(end_id, status_code)], owner)

    def mark_delivered_many(self, items: Sequence[tuple[str, int]], owner: str) -> None:
        self.write_many((), items, owner=owner, lease=0.0)
