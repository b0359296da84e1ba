"""`SqlOutbox`: the dialect-neutral `Outbox` (the SQLite and PostgreSQL outboxes subclass it).

Its queries live by who uses them: `writes` (the agent), `leases` (senders), `admin`
(operators), over `sql_core` (transactions and the database's clock).
"""

from __future__ import annotations

from endcall.reports.outbox.admin import OutboxAdmin
from endcall.reports.outbox.leases import DeliveryLeases
from endcall.reports.outbox.writes import SessionWrites

__all__ = ["SqlOutbox"]


class SqlOutbox(SessionWrites, DeliveryLeases, OutboxAdmin):
    """Dialect-neutral implementation of `Outbox` over a ``Tx`` factory (see `SqlCore`)."""
