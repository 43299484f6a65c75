"""The etcd JSON-gateway wire format, against ``httpx.MockTransport`` only.

The store sends through :class:`tests.support.via_httpx.ViaHttpx`, which hands each
request to the fake gateway's handler; transport failures a handler raises come out
as :class:`app.store.http1.TransportError`, as from the real connection pool.

Every reply here is shaped like what etcd 3.4.23's gateway was seen to send:
int64 as strings, zero fields left out, unary errors
as ``{"error", "message", "code"}``, stream errors as
``{"error": {"grpc_code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import (
    SettingsError,
    StoreAuthError,
    StoreError,
    StoreNoLeader,
    StoreProtocolError,
    StoreUnavailable,
)
from app.store.base import EventKind, KeyValue, WatchEvent
from app.store.etcd import EtcdStore, prefix_range_end
from app.store.etcd_version import lease_bug_warning
from app.store.http1 import TransportError
from tests.support.via_httpx import ViaHttpx

A, B = "http://a.test:2379", "http://b.test:2379"
HEADER = {"cluster_id": "1", "member_id": "2", "revision": "17", "raft_term": "3"}
NO_LEADER = {"error": "etcdserver: no leader", "message": "etcdserver: no leader", "code": 14}
REFUSED = {
    "error": "etcdserver: authentication failed, invalid user ID or password",
    "message": "etcdserver: authentication failed, invalid user ID or password",
    "code": 3,
}
BAD_TOKEN = {
    "error": "etcdserver: invalid auth token",
    "message": "etcdserver: invalid auth token",
    "code": 16,
}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def reply(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


def lines(*objs: Any) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


class Stalled(httpx.AsyncByteStream):
    """A response body that sends ``first`` and then nothing, until closed."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


Route = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]


@dataclass
class Sent:
    host: str
    path: str
    headers: httpx.Headers
    body: Any


@dataclass
class Gateway:
    """A fake gateway: ``routes`` maps a path to a reply or a list of replies (one per call)."""

    routes: dict[str, Any] = field(default_factory=dict)
    version: str = "3.4.23"
    down: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append(Sent(request.url.host, request.url.path, request.headers, body))
        if request.url.host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/version" and "/version" not in self.routes:
            return reply({"etcdserver": self.version, "etcdcluster": "3.4.0"})
        route = self.routes.get(request.url.path)
        if route is None:
            return reply({"error": "not found", "message": "Not Found", "code": 5}, 404)
        if isinstance(route, list):
            route = route.pop(0) if len(route) > 1 else route[0]
        if isinstance(route, httpx.Response):
            return route
        result = route(request)
        return await result if not isinstance(result, httpx.Response) else result

    def posts(self, path: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.path != "/version" and (path is None or s.path == path)]

    def store(self, endpoints: tuple[str, ...] = (A,), **kwargs: Any) -> EtcdStore:
        kwargs.setdefault("timeout", 0.5)
        return EtcdStore(list(endpoints), transport=ViaHttpx(httpx.MockTransport(self)), **kwargs)


def run(store: EtcdStore, call: Callable[[EtcdStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await call(store)
        finally:
            await store.close()

    return asyncio.run(main())


# -- encoding and field spelling ---------------------------------------------


def test_grant_spells_TTL_and_parses_int64_strings() -> None:
    gw = Gateway(
        {"/v3/lease/grant": reply({"header": HEADER, "ID": "4111120252750176006", "TTL": "5"})}
    )
    grant = run(gw.store(), lambda s: s.grant(3))
    assert gw.posts()[0].body == {"TTL": 3}
    assert (grant.lease_id, grant.ttl) == (4111120252750176006, 5.0)


QUORUM_READ = {"/v3/kv/range": reply({"header": HEADER})}


def test_keepalive_is_one_post_spelling_ID_then_a_quorum_read_on_the_same_member() -> None:
    stream = lines(
        {"result": {"header": HEADER, "ID": "42", "TTL": "2"}},
        {"result": {"header": HEADER, "ID": "42", "TTL": "9"}},
    )
    gw = Gateway({"/v3/lease/keepalive": httpx.Response(200, text=stream), **QUORUM_READ})
    assert run(gw.store(confirm_key="/vipmon/c/leader"), lambda s: s.keepalive(42)) == 2.0
    assert [(p.host, p.path, p.body) for p in gw.posts()] == [
        ("a.test", "/v3/lease/keepalive", {"ID": "42"}),
        ("a.test", "/v3/kv/range", {"key": b64("/vipmon/c/leader"), "count_only": True}),
    ]
    assert "serializable" not in gw.posts()[1].body  # linearizable: it needs a quorum


def test_keepalive_of_an_expired_lease_has_no_TTL_and_returns_zero() -> None:
    gw = Gateway(
        {"/v3/lease/keepalive": reply({"result": {"header": HEADER, "ID": "42"}}), **QUORUM_READ}
    )
    assert run(gw.store(), lambda s: s.keepalive(42)) == 0.0


def test_a_keepalive_without_a_quorum_is_not_a_renewal() -> None:
    """Finding 5: a leader without quorum kept renewing; its linearizable read fails."""
    renewed = reply({"result": {"header": HEADER, "ID": "42", "TTL": "2"}})
    gw = Gateway({"/v3/lease/keepalive": renewed, "/v3/kv/range": reply(NO_LEADER, 503)})
    with pytest.raises(StoreUnavailable):
        run(gw.store(), lambda s: s.keepalive(42))


def test_a_raft_term_change_between_keepalive_and_read_leaves_it_unconfirmed() -> None:
    renewed = reply({"result": {"header": HEADER, "ID": "42", "TTL": "2"}})
    later = reply({"header": {**HEADER, "raft_term": "4"}})
    gw = Gateway({"/v3/lease/keepalive": renewed, "/v3/kv/range": later})
    with pytest.raises(StoreUnavailable, match="not confirmed"):
        run(gw.store(), lambda s: s.keepalive(42))


def test_an_unconfirmed_pair_moves_to_the_next_member_as_a_pair() -> None:
    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return reply(NO_LEADER, 503)
        return reply({"header": HEADER})

    renewed = reply({"result": {"header": HEADER, "ID": "42", "TTL": "2"}})
    gw = Gateway({"/v3/lease/keepalive": renewed, "/v3/kv/range": by_host})
    assert run(gw.store((A, B)), lambda s: s.keepalive(42)) == 2.0
    assert [(p.host, p.path) for p in gw.posts()] == [
        ("a.test", "/v3/lease/keepalive"),
        ("a.test", "/v3/kv/range"),
        ("b.test", "/v3/lease/keepalive"),
        ("b.test", "/v3/kv/range"),
    ]


def test_acquire_sends_a_base64_create_compare_and_wins() -> None:
    won = {"header": HEADER, "succeeded": True, "responses": [{"response_put": {}}]}
    gw = Gateway({"/v3/kv/txn": reply(won)})
    result = run(gw.store(), lambda s: s.acquire("/vipmon/leader", b"\x00me", 42))
    key = b64("/vipmon/leader")
    assert gw.posts()[0].body == {
        "compare": [{"target": "CREATE", "result": "EQUAL", "key": key, "create_revision": "0"}],
        "success": [{"request_put": {"key": key, "value": b64(b"\x00me"), "lease": "42"}}],
        "failure": [{"request_range": {"key": key}}],
    }
    assert (result.won, result.create_revision, result.revision) == (True, 17, 17)


def test_acquire_without_succeeded_is_a_lost_race_returning_the_holder() -> None:
    holder = {
        "key": b64("/vipmon/leader"),
        "create_revision": "9",
        "mod_revision": "11",
        "version": "2",
        "value": b64(b"\xffnot json"),
        "lease": "77",
    }
    lost = {"header": HEADER, "responses": [{"response_range": {"kvs": [holder], "count": "1"}}]}
    gw = Gateway({"/v3/kv/txn": reply(lost)})
    result = run(gw.store(), lambda s: s.acquire("/vipmon/leader", b"me", 42))
    assert not result.won
    assert result.create_revision == 9 and result.revision == 17
    assert result.holder == KeyValue("/vipmon/leader", b"\xffnot json", 9, 11, 77)


def test_acquire_with_a_lease_etcd_forgot_loses_and_reads_the_holder() -> None:
    gone = {"error": "etcdserver: requested lease not found", "code": 5,
            "message": "etcdserver: requested lease not found"}  # fmt: skip
    gw = Gateway({"/v3/kv/txn": reply(gone, 404), "/v3/kv/range": reply({"header": HEADER})})
    result = run(gw.store(), lambda s: s.acquire("/k", b"me", 42))
    assert (result.won, result.holder, result.revision) == (False, None, 17)


DELETED_ONE = {"response_delete_range": {"deleted": "1"}}


@pytest.mark.parametrize(
    ("answer", "deleted"),
    [
        ({"header": HEADER}, False),
        ({"header": HEADER, "succeeded": True, "responses": [DELETED_ONE]}, True),
    ],
)
def test_resign_compares_our_create_revision(answer: dict[str, Any], deleted: bool) -> None:
    gw = Gateway({"/v3/kv/txn": reply(answer)})
    assert run(gw.store(), lambda s: s.resign("/k", 9)) is deleted
    key = b64("/k")
    assert gw.posts()[0].body == {
        "compare": [{"target": "CREATE", "result": "EQUAL", "key": key, "create_revision": "9"}],
        "success": [{"request_delete_range": {"key": key}}],
    }


def test_put_sends_the_lease_only_when_there_is_one() -> None:
    gw = Gateway({"/v3/kv/put": reply({"header": HEADER})})

    async def both(s: EtcdStore) -> None:
        await s.put("/m/x", b"1", 42)
        await s.put("/m/y", b"2", 0)

    run(gw.store(), both)
    assert [p.body for p in gw.posts()] == [
        {"key": b64("/m/x"), "value": b64(b"1"), "lease": "42"},
        {"key": b64("/m/y"), "value": b64(b"2")},
    ]


def test_get_of_a_missing_key_returns_none_and_the_revision() -> None:
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER})})
    assert run(gw.store(), lambda s: s.get("/k")) == (None, 17)
    assert gw.posts()[0].body == {"key": b64("/k")}


def test_get_prefix_ranges_to_last_byte_plus_one_and_sorts_by_key() -> None:
    kvs = [
        {
            "key": b64("/m/b"),
            "value": b64(b"\x80\x81"),
            "create_revision": "5",
            "mod_revision": "5",
        },
        {"key": b64("/m/a"), "create_revision": "4", "mod_revision": "6", "lease": "3"},
    ]
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER, "kvs": kvs, "count": "2"})})
    got, revision = run(gw.store(), lambda s: s.get_prefix("/m/"))
    assert got == [KeyValue("/m/a", b"", 4, 6, 3), KeyValue("/m/b", b"\x80\x81", 5, 5, 0)]
    assert revision == int(HEADER["revision"])
    body = gw.posts()[0].body
    assert (body["key"], body["range_end"]) == (b64("/m/"), b64("/m0"))


def test_prefix_range_end_carries_over_0xff() -> None:
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\x00"


# -- path prefix and headers ---------------------------------------------------


@pytest.mark.parametrize(
    ("version", "prefix"),
    [("3.2.32", "/v3alpha"), ("3.3.27", "/v3beta"), ("3.4.23", "/v3"), ("3.5.13", "/v3")],
)
def test_path_prefix_comes_from_version_once(version: str, prefix: str) -> None:
    gw = Gateway({f"{prefix}/kv/range": reply({"header": HEADER})}, version=version)

    async def twice(s: EtcdStore) -> None:
        await s.get("/k")
        await s.get("/k")

    run(gw.store(), twice)
    assert [s.path for s in gw.sent] == ["/version", f"{prefix}/kv/range", f"{prefix}/kv/range"]


def test_version_failure_is_unavailable_and_is_asked_again_next_call() -> None:
    gw = Gateway({
        "/version": [reply({}, 500), reply({"etcdserver": "3.4.23"})],
        "/v3/kv/range": reply({"header": HEADER}),
    })  # fmt: skip

    async def two_calls(s: EtcdStore) -> tuple[type[BaseException], Any]:
        with pytest.raises(StoreUnavailable) as first:
            await s.get("/k")
        return first.type, await s.get("/k")

    assert run(gw.store(), two_calls) == (StoreUnavailable, (None, 17))
    assert [s.path for s in gw.sent] == ["/version", "/version", "/v3/kv/range"]


def test_every_request_carries_the_hasleader_header() -> None:
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER})})
    run(gw.store(), lambda s: s.get("/k"))
    assert len(gw.sent) == 2
    assert all(s.headers.get("grpc-metadata-hasleader") == "true" for s in gw.sent)


# -- failures and endpoint rotation ----------------------------------------------


def test_no_leader_503_raises_store_no_leader() -> None:
    gw = Gateway({"/v3/kv/range": reply(NO_LEADER, 503)})
    with pytest.raises(StoreNoLeader):
        run(gw.store(), lambda s: s.get("/k"))


def test_no_leader_in_a_stream_error_raises_store_no_leader() -> None:
    err = {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader",
                     "http_status": "Service Unavailable"}}  # fmt: skip
    gw = Gateway({"/v3/lease/keepalive": reply(err, 503), **QUORUM_READ})
    with pytest.raises(StoreNoLeader):
        run(gw.store(), lambda s: s.keepalive(42))


def test_connect_error_rotates_to_the_next_endpoint_and_stays_there() -> None:
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER})}, down={"a.test"})

    async def twice(s: EtcdStore) -> list[Any]:
        return [await s.get("/k"), await s.get("/k")]

    assert run(gw.store((A, B)), twice) == [(None, 17), (None, 17)]
    assert [(s.host, s.path) for s in gw.sent] == [
        ("a.test", "/version"),
        ("b.test", "/version"),
        ("b.test", "/v3/kv/range"),
        ("b.test", "/v3/kv/range"),
    ]


def test_5xx_rotates_to_the_next_endpoint() -> None:
    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return reply({"error": "context deadline exceeded", "code": 2}, 500)
        return reply({"header": HEADER, "ID": "5", "TTL": "2"})

    gw = Gateway({"/v3/lease/grant": by_host})
    grant = run(gw.store((A, B)), lambda s: s.grant(2))
    assert grant.lease_id == 5
    assert [s.host for s in gw.posts()] == ["a.test", "b.test"]


def test_a_stalled_endpoint_uses_up_the_call_and_the_next_call_starts_elsewhere() -> None:
    """Finding 6: each try had its own timeout, so one call could last timeout x endpoints."""

    async def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            await asyncio.sleep(3600)
        return reply({"result": {"header": HEADER, "ID": "42", "TTL": "4"}})

    gw = Gateway({"/v3/lease/keepalive": by_host, **QUORUM_READ})

    async def twice(s: EtcdStore) -> list[Any]:
        results: list[Any] = []
        for _ in range(2):
            try:
                results.append(await s.keepalive(42))
            except StoreUnavailable as exc:
                results.append(type(exc).__name__)
        return results

    assert run(gw.store((A, B), timeout=0.1), twice) == ["StoreUnavailable", 4.0]
    assert [(s.host, s.path) for s in gw.posts()] == [
        ("a.test", "/v3/lease/keepalive"),  # the whole first call's time went here
        ("b.test", "/v3/lease/keepalive"),
        ("b.test", "/v3/kv/range"),
    ]


def test_all_endpoints_down_raises_unavailable_trying_each_once() -> None:
    gw = Gateway(down={"a.test", "b.test"})
    with pytest.raises(StoreUnavailable) as caught:
        run(gw.store((A, B)), lambda s: s.get("/k"))
    assert not isinstance(caught.value, StoreNoLeader)
    assert isinstance(caught.value.__cause__, TransportError)
    assert isinstance(caught.value.__cause__.__cause__, httpx.ConnectError)
    assert [s.host for s in gw.sent] == ["a.test", "b.test"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b'["a list"]',
        json.dumps({"header": HEADER, "kvs": "not a list"}).encode(),
        json.dumps({"header": HEADER, "kvs": [{"key": "%%%not base64"}]}).encode(),
        json.dumps({"header": {"revision": "seventeen"}}).encode(),
        json.dumps({"kvs": []}).encode(),
    ],
)
def test_a_reply_that_is_not_what_we_expect_is_a_protocol_error(body: bytes) -> None:
    gw = Gateway({"/v3/kv/range": httpx.Response(200, content=body)})
    with pytest.raises(StoreProtocolError):
        run(gw.store(), lambda s: s.get("/k"))


def test_revoke_of_an_unknown_lease_is_not_an_error_but_other_4xx_are() -> None:
    gone = {"error": "etcdserver: requested lease not found", "code": 5,
            "message": "etcdserver: requested lease not found"}  # fmt: skip
    invalid = {"error": "bad", "message": "etcdserver: bad request", "code": 3}
    gw = Gateway({"/v3/lease/revoke": [reply(gone, 404), reply(invalid, 400)]})

    async def twice(s: EtcdStore) -> None:
        await s.revoke(42)
        with pytest.raises(StoreProtocolError):
            await s.revoke(42)

    run(gw.store(), twice)
    assert [p.body for p in gw.posts()] == [{"ID": "42"}, {"ID": "42"}]


# -- auth -----------------------------------------------------------------------------


def test_token_is_sent_raw_and_renewed_once_on_401(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok = {"header": HEADER}
    gw = Gateway(
        {
            "/v3/auth/authenticate": [reply({"token": "tok1.5"}), reply({"token": "tok2.9"})],
            "/v3/kv/range": [reply(ok), reply(BAD_TOKEN, 401), reply(ok)],
        }
    )

    async def twice(s: EtcdStore) -> None:
        await s.get("/k")
        await s.get("/k")

    run(gw.store(username="root", password="s3cret"), twice)
    sent = [(p.path, p.headers.get("authorization")) for p in gw.posts()]
    assert sent == [
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tok1.5"),
        ("/v3/kv/range", "tok1.5"),
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tok2.9"),
    ]
    assert gw.posts()[0].body == {"name": "root", "password": "s3cret"}
    assert "s3cret" not in caplog.text and "tok1" not in caplog.text


def test_refused_credentials_raise_store_auth_error() -> None:
    gw = Gateway({"/v3/auth/authenticate": reply(REFUSED, 400)})
    with pytest.raises(StoreAuthError) as caught:
        run(gw.store(username="root", password="wrong"), lambda s: s.get("/k"))
    assert "wrong" not in str(caught.value)
    assert [p.path for p in gw.posts()] == ["/v3/auth/authenticate"]


@pytest.mark.parametrize("token", ["", "tok.1\r\nX-Injected: yes", "tök€n.1"])
def test_a_token_that_cannot_go_into_a_header_is_a_protocol_error(token: str) -> None:
    gw = Gateway({"/v3/auth/authenticate": reply({"header": HEADER, "token": token})})
    with pytest.raises(StoreProtocolError, match="token"):
        run(gw.store(username="root", password="pw"), lambda s: s.get("/k"))
    assert [p.path for p in gw.posts()] == ["/v3/auth/authenticate"]


def test_a_fresh_token_rejected_again_raises_store_auth_error() -> None:
    gw = Gateway({
        "/v3/auth/authenticate": reply({"header": HEADER, "token": "tok.1"}),
        "/v3/kv/range": reply(BAD_TOKEN, 401),
    })  # fmt: skip
    with pytest.raises(StoreAuthError):
        run(gw.store(username="root", password="pw"), lambda s: s.get("/k"))
    assert [p.path for p in gw.posts()].count("/v3/kv/range") == 2


def _error(message: str, code: int) -> dict[str, Any]:
    return {"error": message, "message": message, "code": code}


def test_a_node_that_started_before_auth_was_enabled_authenticates_once_it_is() -> None:
    """Auth off at start: no token. Once an operator enables it, a request with no token
    and a client certificate with an empty subject is denied; the node must then log in
    (the host world caught nodes denied for ever, every renewal failing)."""
    gw = Gateway({
        "/v3/auth/authenticate": [
            reply(_error("etcdserver: authentication is not enabled", 9), 400),
            reply({"header": HEADER, "token": "tok.2"}),
        ],
        "/v3/kv/range": [
            reply({"header": HEADER, "count": "0"}),
            reply(_error("etcdserver: permission denied", 7), 403),
            reply({"header": HEADER, "count": "0"}),
        ],
    })  # fmt: skip

    async def before_and_after(s: EtcdStore) -> None:
        await s.get("/k")  # auth still off
        await s.get("/k")  # auth on since: denied, logs in, sent again

    run(gw.store(username="vipmon", password="pw"), before_and_after)
    sent = [(p.path, p.headers.get("authorization")) for p in gw.posts()]
    assert sent == [
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", None),
        ("/v3/kv/range", None),
        ("/v3/auth/authenticate", None),
        ("/v3/kv/range", "tok.2"),
    ]


def test_a_request_denied_with_a_token_is_an_auth_error_at_once() -> None:
    gw = Gateway({
        "/v3/auth/authenticate": reply({"header": HEADER, "token": "tok.1"}),
        "/v3/kv/range": reply(_error("etcdserver: permission denied", 7), 403),
    })  # fmt: skip
    with pytest.raises(StoreAuthError, match="permission denied"):
        run(gw.store(username="vipmon", password="pw"), lambda s: s.get("/k"))
    assert [p.path for p in gw.posts()].count("/v3/auth/authenticate") == 1


# -- watch -------------------------------------------------------------------------------


def test_watch_skips_created_and_returns_a_delete_with_prev_kv() -> None:
    old = {"key": b64("/k"), "create_revision": "9", "mod_revision": "11",
           "version": "2", "value": b64(b"old"), "lease": "77"}  # fmt: skip
    stream = lines(
        {"result": {"header": HEADER, "created": True}},
        {"result": {"header": HEADER, "events": [
            {"type": "DELETE", "kv": {"key": b64("/k"), "mod_revision": "18"}, "prev_kv": old},
            {"kv": {"key": b64("/k"), "create_revision": "19", "mod_revision": "19",
                    "version": "1", "value": b64(b"new")}},
        ]}},
    )  # fmt: skip
    gw = Gateway({"/v3/watch": httpx.Response(200, text=stream)})
    events = run(gw.store(), lambda s: s.watch("/k", 12, timeout=2.0))
    assert events == [
        WatchEvent(EventKind.DELETE, KeyValue("/k", b"old", 9, 11, 77), 18),
        WatchEvent(EventKind.PUT, KeyValue("/k", b"new", 19, 19, 0), 19),
    ]
    assert gw.posts()[0].body == {
        "create_request": {"key": b64("/k"), "start_revision": "12", "prev_kv": True}
    }


def test_watch_of_a_compacted_revision_returns_nothing() -> None:
    stream = lines(
        {"result": {"header": HEADER, "created": True}},
        {"result": {"header": HEADER, "canceled": True, "compact_revision": "15"}},
    )
    gw = Gateway({"/v3/watch": httpx.Response(200, text=stream)})
    assert run(gw.store(), lambda s: s.watch("/k", 2, timeout=2.0)) == []


def test_watch_returns_nothing_when_the_time_runs_out_and_closes_the_stream() -> None:
    body = Stalled(lines({"result": {"header": HEADER, "created": True}}).encode())
    gw = Gateway({"/v3/watch": httpx.Response(200, stream=body)})
    assert run(gw.store(timeout=1.0), lambda s: s.watch("/k", 2, timeout=0.2)) == []
    assert body.closed


@pytest.mark.parametrize(("store_timeout", "watch_timeout"), [(0.1, 0.3), (0.3, 0.1)])
def test_a_watch_never_created_is_unavailable_unless_the_watch_time_ran_out_first(
    store_timeout: float, watch_timeout: float
) -> None:
    stalled = Stalled()
    gw = Gateway({"/v3/watch": httpx.Response(200, stream=stalled)})
    store = gw.store(timeout=store_timeout)
    if store_timeout < watch_timeout:
        with pytest.raises(StoreUnavailable):
            run(store, lambda s: s.watch("/k", 2, watch_timeout))
    else:
        assert run(store, lambda s: s.watch("/k", 2, watch_timeout)) == []
    assert stalled.closed


def test_watch_moves_on_when_an_endpoint_never_creates_it() -> None:
    stalled = Stalled()
    event = {"kv": {"key": b64("/k"), "create_revision": "3", "mod_revision": "3"}}
    answer = lines({"result": {"header": HEADER, "events": [event]}})

    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return httpx.Response(200, stream=stalled)
        return httpx.Response(200, text=answer)

    gw = Gateway({"/v3/watch": by_host})
    events = run(gw.store((A, B), timeout=0.1), lambda s: s.watch("/k", 2, timeout=5.0))
    assert [(e.kind, e.revision) for e in events] == [(EventKind.PUT, 3)]
    assert stalled.closed


def test_watch_renews_a_rejected_token() -> None:
    reason = "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
    rejected = lines(
        {
            "result": {
                "header": HEADER,
                "watch_id": "-1",
                "created": True,
                "canceled": True,
                "cancel_reason": reason,
            }
        }
    )
    quiet = lines({"result": {"header": HEADER, "canceled": True}})
    gw = Gateway({
        "/v3/auth/authenticate": [reply({"token": "t.1"}), reply({"token": "t.2"})],
        "/v3/watch": [httpx.Response(200, text=rejected), httpx.Response(200, text=quiet)],
    })  # fmt: skip
    assert run(gw.store(username="u", password="p"), lambda s: s.watch("/k", 2, 1.0)) == []
    assert [p.headers.get("authorization") for p in gw.posts("/v3/watch")] == ["t.1", "t.2"]


# -- nothing but StoreError escapes ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["header", "revision", "kvs", "key", "value", "result", "TTL", "ID",
                         "succeeded", "responses", "response_range", "error", "code"]),
        inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 400, 401, 404, 500, 503]),
    body=st.one_of(st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode())),
    op=st.sampled_from(["grant", "keepalive", "acquire", "get", "get_prefix", "resign"]),
)
def test_any_reply_yields_a_result_or_a_store_error(status: int, body: bytes, op: str) -> None:
    def any_reply(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/authenticate":
            return reply({"token": "t.1"})
        return httpx.Response(status, content=body)

    calls: dict[str, Callable[[EtcdStore], Awaitable[Any]]] = {
        "grant": lambda s: s.grant(2),
        "keepalive": lambda s: s.keepalive(1),
        "acquire": lambda s: s.acquire("/k", b"v", 1),
        "get": lambda s: s.get("/k"),
        "get_prefix": lambda s: s.get_prefix("/k"),
        "resign": lambda s: s.resign("/k", 1),
    }
    gw = Gateway({f"/v3{p}": any_reply for p in ("/lease/grant", "/lease/keepalive", "/kv/txn",
                                                  "/kv/range", "/auth/authenticate")})  # fmt: skip
    with contextlib.suppress(StoreError):
        run(gw.store(username="u", password="p"), calls[op])


@pytest.mark.parametrize(
    ("endpoints", "tls"),
    [([], {}), (["ftp://x:1"], {}), (["https://x:2379"], {"ca_file": "/nonexistent/ca.pem"})],
)
def test_bad_settings_are_refused_at_construction(
    endpoints: list[str], tls: dict[str, str]
) -> None:
    with pytest.raises(SettingsError):
        EtcdStore(endpoints, timeout=1.0, **tls)


# -- TLS and auth failures, in an operator's words -----------------------------


def _tls_error(cls: type[ssl.SSLError], reason: str, text: str) -> ssl.SSLError:
    """An ssl error shaped like the ssl module's own (it sets these attributes in C)."""
    error = cls(1, f"[SSL: {reason}] {text} (_ssl.c:1006)")
    error.reason = reason  # type: ignore[misc]
    return error


def _raising(exc: BaseException) -> Route:
    def route(request: httpx.Request) -> httpx.Response:
        raise exc

    return route


def test_an_unknown_server_ca_names_the_endpoint_and_the_verify_failure() -> None:
    verify = _tls_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", "failed")
    verify.verify_message = "unable to get local issuer certificate"  # type: ignore[attr-defined]
    connect = httpx.ConnectError("certificate verify failed")
    connect.__cause__ = verify
    gw = Gateway({"/version": _raising(connect)})
    with pytest.raises(StoreUnavailable) as caught:
        run(gw.store(), lambda s: s.get("/k"))
    assert str(caught.value).startswith(
        f"etcd {A}: TLS: certificate verify failed: unable to get local issuer certificate"
    )


def test_a_refused_client_certificate_is_an_auth_error() -> None:
    # etcd's TLS 1.3 alert arrives after the handshake, on the first read: the
    # transport error is chained to the ssl module's error.
    alert = _tls_error(ssl.SSLError, "SSLV3_ALERT_BAD_CERTIFICATE", "sslv3 alert bad certificate")
    gw = Gateway({"/version": _raising(alert)})
    with pytest.raises(StoreAuthError) as caught:
        run(gw.store((A, B)), lambda s: s.get("/k"))
    assert str(caught.value).startswith(
        f'etcd {B}: refused our client certificate (TLS alert "bad certificate")'
    )


def test_a_client_certificate_with_a_common_name_is_an_auth_error() -> None:
    # etcd 3.4 answers this in plain text, not JSON, when auth is on.
    text = b"CommonName of client sending a request against gateway will be ignored and not used"
    gw = Gateway({"/v3/auth/authenticate": httpx.Response(400, content=text)})
    with pytest.raises(StoreAuthError, match=f"etcd {A}: refused our client certificate: it has"):
        run(gw.store(username="vipmon", password="pw"), lambda s: s.get("/k"))


def test_refused_credentials_name_the_endpoint_and_the_user() -> None:
    gw = Gateway({"/v3/auth/authenticate": reply(REFUSED, 400)})
    with pytest.raises(StoreAuthError) as caught:
        run(gw.store(username="vipmon", password="wrong"), lambda s: s.get("/k"))
    assert str(caught.value) == (
        f"etcd {A}: refused the credentials of user 'vipmon': "
        "authentication failed, invalid user ID or password"
    )


# -- the server's version and its known lease bugs ------------------------------------


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("3.2.32", True),
        ("3.3.27", True),
        ("3.4.23", True),
        ("3.4.30", True),
        ("3.4.31", False),
        ("3.4.34", False),
        ("3.5.0", True),
        ("3.5.12", True),
        ("3.5.13", False),
        ("3.5.17", False),
        ("3.6.0", False),
        ("3.6.0-rc.1", False),
        ("4.0.0", False),
        ("3.5.0-alpha.0", True),
    ],
)
def test_which_etcd_versions_have_the_stale_leader_lease_bugs(version: str, affected: bool) -> None:
    warning = lease_bug_warning(version)
    assert bool(warning) is affected
    if affected:
        assert version in warning and "#12528" in warning and "#15247" in warning
        assert "3.4.31" in warning and "3.5.13" in warning


@pytest.mark.parametrize("version", ["", "three", "3", "3.x.1", "v3.4.23"])
def test_a_version_that_cannot_be_read_is_said_so_not_called_safe(version: str) -> None:
    assert "cannot tell" in lease_bug_warning(version)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_affected_version_is_warned_once_and_shown_as_the_server_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER})}, version="3.4.23")
    store = gw.store()
    assert store.server_version == ""  # nothing read yet, and reading it does no I/O

    async def three(s: EtcdStore) -> str:
        for _ in range(3):
            await s.get("/k")
        return s.server_version

    with caplog.at_level(logging.INFO, logger="app.store.etcd_client"):
        assert run(store, three) == "etcd 3.4.23"
    [line] = warnings_of(caplog)
    assert "3.4.23" in line and "#12528" in line and "#15247" in line
    assert "3.4.31" in line and "3.5.13" in line


@pytest.mark.parametrize("version", ["3.4.31", "3.5.13", "3.6.1"])
def test_a_fixed_version_is_logged_at_info_without_a_warning(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    gw = Gateway({"/v3/kv/range": reply({"header": HEADER})}, version=version)
    with caplog.at_level(logging.INFO, logger="app.store.etcd_client"):
        run(gw.store(), lambda s: s.get("/k"))
    assert warnings_of(caplog) == []
    assert any(version in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_the_version_is_read_again_after_a_failover_and_a_downgrade_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On reconnect (the next endpoint after a failure) /version is read again."""
    versions = {"a.test": "3.5.13", "b.test": "3.4.23"}
    failing = {"a.test"}

    def version(request: httpx.Request) -> httpx.Response:
        return reply({"etcdserver": versions[request.url.host], "etcdcluster": "3.4.0"})

    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host in failing:
            failing.discard(request.url.host)
            return reply({"error": "etcdserver: request timed out", "code": 14}, 503)
        return reply({"header": HEADER})

    gw = Gateway({"/version": version, "/v3/kv/range": by_host})
    store = gw.store((A, B))

    async def calls(s: EtcdStore) -> list[str]:
        seen = []
        await s.get("/k")  # a: /version, then the range fails; b: /version, range
        seen.append(s.server_version)
        await s.get("/k")
        seen.append(s.server_version)
        return seen

    failing.clear()
    with caplog.at_level(logging.INFO, logger="app.store.etcd_client"):
        assert run(store, lambda s: s.get("/k")) == (None, 17)
    assert store.server_version == "etcd 3.5.13" and warnings_of(caplog) == []

    caplog.clear()
    gw.sent.clear()
    failing.add("a.test")
    store = gw.store((A, B))
    with caplog.at_level(logging.INFO, logger="app.store.etcd_client"):
        assert run(store, calls) == ["etcd 3.4.23", "etcd 3.4.23"]
    assert [(s.host, s.path) for s in gw.sent] == [
        ("a.test", "/version"),
        ("a.test", "/v3/kv/range"),
        ("b.test", "/version"),
        ("b.test", "/v3/kv/range"),
        ("b.test", "/v3/kv/range"),
    ]
    [line] = warnings_of(caplog)
    assert "3.4.23" in line and "b.test" in line
