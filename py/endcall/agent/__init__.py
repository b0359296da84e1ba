"""The agent wing: `EndCall` and its parts, inside the livekit-agents job.

One end state machine (`end_machine`) owns "ending"; every channel only feeds it: the
browser's requests (`channels`, authorized by `decisions`), the customer's presence
(`customer`), the room and job (`room_signals`, `job_lifecycle`), the agent's own ends
(`agent_ends`: the LLM's `end_tool`, `timers`, `silence`). An accepted end is stored
(`durable_end`), acknowledged, then `end_path` drains, builds the report (`report`) and hands
it to the reports wing (`endcall.reports.pipeline`). See docs/architecture.md.

Nothing is imported here, so importing one part does not load livekit-agents.
"""
