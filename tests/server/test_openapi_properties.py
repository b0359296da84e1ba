"""Property tests over the served OpenAPI description (hypothesis, checked with jsonschema).

Requests are generated from the document's own request schema (and from arbitrary bytes,
JSON values and content types); every answer must be a status the document lists for the
operation, with a body valid against the schema it gives for that status, the documented
headers, and no LiveKit room touched unless the answer is a success.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import rtc
from server_support import API_KEY, API_SECRET, FakeAgent, ServedApp, livekit_token

from endcall.server import Settings, create_app
from endcall.testing import LoopbackServer, RoomServiceDouble

T = TypeVar("T")
AGENT_ROOMS = [f"prop-{i}" for i in range(4)]
PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class BackgroundStack:
    """The served stack on an event loop in a thread, for synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = LoopbackServer()
        self.double = RoomServiceDouble(self.hub, api_key=API_KEY, api_secret=API_SECRET)
        self.servers: list[ServedApp] = []
        lk_url = self.call(self._serve(self.double))
        self.settings = Settings(
            livekit_url=lk_url,
            api_key=API_KEY,
            api_secret=API_SECRET,
            ack_timeout=0.3,
            rate_limit_identity=None,
            rate_limit_address=None,
        )
        self.url = self.call(self._serve(create_app(self.settings)))
        self.agents: list[FakeAgent] = []
        for room in AGENT_ROOMS:
            self.call(self._agent(room))

    def call(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=30)

    async def _serve(self, app: Any) -> str:
        served = ServedApp(app)
        self.servers.append(served)
        return await served.start()

    async def _agent(self, room: str) -> None:
        lb = await self.hub.connect(room, "agent", kind=rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
        agent = FakeAgent(lb)
        agent.start()
        self.agents.append(agent)

    def close(self) -> None:
        async def stop() -> None:
            for agent in self.agents:
                await agent.room.disconnect()
            await asyncio.gather(*(s.stop() for s in self.servers))
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def bg() -> Iterator[BackgroundStack]:
    stack = BackgroundStack()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def doc(bg: BackgroundStack) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(bg.url + "/openapi.json").json()
    return document


@pytest.fixture(scope="module")
def http(bg: BackgroundStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bg.url, timeout=10) as client:
        yield client


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Inline the document's $refs so the schema stands alone."""
    text = json.dumps(schema)
    for name, sub in doc["components"]["schemas"].items():
        text = text.replace(json.dumps({"$ref": f"#/components/schemas/{name}"}), json.dumps(sub))
    resolved: dict[str, Any] = json.loads(text)
    return resolved


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for the JSON Schema subset the document uses (hypothesis-jsonschema does not
    work with current hypothesis): const, enum, oneOf, object/string/integer/null."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 80))
    if kind == "object":
        properties = schema.get("properties")
        if not properties:
            return st.dictionaries(st.text(max_size=8), json_values, max_size=4)
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"schema not covered by the test strategy: {schema}")


def _check_answer(doc: dict[str, Any], operation: dict[str, Any], resp: httpx.Response) -> None:
    responses = operation["responses"]
    assert str(resp.status_code) in responses, f"undocumented status {resp.status_code}"
    documented = responses[str(resp.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(resp.json(), _resolve(doc, schema))
    for header in documented.get("headers", {}):
        assert header.lower() in resp.headers, f"{resp.status_code} without {header}"


def test_the_document_is_well_formed(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
    post = doc["paths"]["/v1/end"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "text/plain"}


@PROPERTY_SETTINGS
@given(data=st.data())
def test_requests_from_the_schema_get_documented_answers(
    bg: BackgroundStack, doc: dict[str, Any], http: httpx.Client, data: st.DataObject
) -> None:
    operation = doc["paths"]["/v1/end"]["post"]
    body_schema = _resolve(doc, operation["requestBody"]["content"]["application/json"]["schema"])
    body = data.draw(from_schema(body_schema), label="body")
    if data.draw(st.booleans(), label="agent room"):
        body["room"] = data.draw(st.sampled_from(AGENT_ROOMS))
    identity = body.get("initiator") or "cust"
    if data.draw(st.booleans(), label="mismatched initiator"):
        identity = "cust"
    content_type = data.draw(st.sampled_from(["application/json", "text/plain"]))
    before = len(bg.double.calls)
    try:
        token = livekit_token(identity, body["room"])
    except ValueError:
        token = "x"
    resp = http.post(
        "/v1/end",
        content=json.dumps(body),
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )
    _check_answer(doc, operation, resp)
    new_calls = bg.double.calls[before:]
    if resp.status_code >= 300:
        assert not [c for c in new_calls if c.mutating], resp.text
    if resp.status_code == 200:
        assert resp.json()["status"] == "already_ended"
    if resp.status_code == 202:
        assert resp.json()["id"] == body["id"]


@PROPERTY_SETTINGS
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"type": st.just("end.request"), "v": json_values, "id": json_values},
            optional={"room": json_values, "reason": json_values, "token": json_values},
        ).map(lambda v: json.dumps(v).encode()),
    ),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "text/plain; charset=utf-8", "application/xml", ""]
    ),
    authorization=st.sampled_from([None, "Bearer x", "Basic y", "garbage"]),
)
def test_arbitrary_input_gets_documented_errors(
    bg: BackgroundStack,
    doc: dict[str, Any],
    http: httpx.Client,
    raw: bytes,
    content_type: str,
    authorization: str | None,
) -> None:
    operation = doc["paths"]["/v1/end"]["post"]
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization:
        headers["Authorization"] = authorization
    before = len(bg.double.calls)
    resp = http.post("/v1/end", content=raw, headers=headers)
    assert resp.status_code in (400, 401, 403, 415), resp.text
    _check_answer(doc, operation, resp)
    assert bg.double.calls[before:] == []


@PROPERTY_SETTINGS
@given(
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-.", max_size=20),
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST"]),
)
def test_other_routes_answer_json_errors(
    bg: BackgroundStack, doc: dict[str, Any], http: httpx.Client, path: str, method: str
) -> None:
    target = "/" + path
    resp = http.request(method, target)
    documented = doc["paths"].get(target, {}).get(method.lower())
    if documented is not None:
        assert str(resp.status_code) in documented["responses"]
        return
    assert resp.status_code in (404, 405)
    jsonschema.validate(resp.json(), doc["components"]["schemas"]["Error"])
