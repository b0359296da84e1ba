"""The reports wing: store a report durably, sign it, deliver it, relay what others left.

It deals only in report bodies and their `webhook-id`s, never in rooms or sessions (the agent
builds the report; `endcall.agent.report`): `outbox` (SQLite and PostgreSQL rows), `webhook`
(the destination and Standard Webhooks signing), `delivery` (one attempt and the retry
policy), `pipeline` (the agent's store-then-send path), `relay` (leftovers of other
processes), `storage` (an outbox that can't be written is an error at start), `redact` (no
connection-string password in a log). See docs/architecture.md.
"""
