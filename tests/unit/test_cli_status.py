"""`vipmon status`: the per-node view, the cluster verdict and the table, from hand-made
/cluster and /role answers (app/status.py); the gathering against an in-process transport."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest

from app.cli import main
from app.status import build_report, gather, render
from app.status_views import UNREACHABLE

H1, H2, H3, H4 = "http://h1:8700", "http://h2:8700", "http://h3:8700", "http://h4:8700"
URLS = {"n1": H1, "n2": H2, "n3": H3}


def role(node: str, token: str = "STANDBY", term: int = 9, **over: Any) -> dict[str, Any]:
    """A /role answer as a node gives it; ``over`` replaces fields (``store_ok``, ``check``)."""
    leader = over.pop("leader", "n2")
    store_ok = over.pop("store_ok", True)
    backend = over.pop("backend", "etcd")
    store_version = over.pop("store_version", None)
    body: dict[str, Any] = {
        "node": node,
        "url": URLS.get(node, ""),
        "started_at": "2026-12-02T12:00:00Z",
        "role": token,
        "is_master": token == "MASTER",
        "term": term,
        "leader": {"id": leader, "url": URLS.get(leader, "")} if leader else None,
        "leader_unknown": False,
        "lease_remaining_ms": 1400 if token == "MASTER" else 0,
        "backend": {"name": backend, "reachable": store_ok}
        | ({"version": store_version} if store_version is not None else {}),
        "last_transition": None,
        "priority": 100,
        "eligible": True,
        "maintenance": False,
        "paused": False,
        "check": {"configured": False, "ok": True, "detail": "no local check"},
    }
    body.update(over)
    return body


def cluster(leader: str | None = "n2", term: int = 9) -> dict[str, Any]:
    """A /cluster answer: the leader key's holder is MASTER, every other member STANDBY."""
    members = [
        {
            "id": node,
            "url": URLS[node],
            "role": "MASTER" if node == leader else "STANDBY",
            "is_master": node == leader,
            "version": "0.1.0",
            "started_at": "2026-12-02T12:00:00Z",
            "eligible": True,
            "priority": 100,
            "maintenance": False,
            "check_ok": True,
        }
        for node in ("n1", "n2", "n3")
    ]
    return {"node": "n1", "leader": leader, "term": term, "paused": False, "members": members}


def report(roles: dict[str, Any], clusters: dict[str, Any] | None = None, seeds=(H1,)):
    return build_report(list(seeds), clusters or {H1: cluster()}, roles)


def rows(text: str) -> dict[str, list[str]]:
    """Table rows by node id (the first cell), header and cluster line left out."""
    table = text.split("\n\n")[0].splitlines()[1:]
    return {line.split()[0]: line.split() for line in table}


def test_one_master():
    r = report({H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3")})
    assert r.verdict.code == 0 and r.verdict.line == "master: n2 (term 9)"
    text = render(r)
    assert text.splitlines()[0].split() == [
        *("NODE", "ROLE", "TERM", "LEASE", "STORE", "MAINT", "PAUSED", "CHECK", "URL", "NOTE")
    ]
    table = rows(text)
    assert table["n2"] == ["n2", "MASTER", "9", "1.4s", "ok", "no", "no", "none", H2]
    assert table["n1"] == ["n1", "STANDBY", "9", "-", "ok", "no", "no", "none", H1]
    assert [row[1] for row in table.values()].count("MASTER") == 1
    assert text.splitlines()[-1] == "master: n2 (term 9)"


def test_no_master_because_paused():
    roles = {H1: role("n1", leader=None, term=0, paused=True)}
    roles |= {H3: role("n3", leader=None, term=0, paused=True)}
    clusters = {H1: {**cluster(leader=None, term=0), "members": cluster()["members"][::2]}}
    r = report(roles, clusters)
    assert r.verdict.code == 3
    assert r.verdict.line == (
        "no master: the cluster is paused (automatic failover is off until `vipmon resume`)"
    )
    assert rows(render(r))["n1"][6] == "yes"


def test_no_master_because_the_store_is_unreachable_everywhere():
    """The issue: /cluster still names the last leader, every node answers UNKNOWN."""
    roles = {
        H1: role("n1", "UNKNOWN", store_ok=False),
        H2: role("n2", "UNKNOWN", store_ok=False),
        H3: role("n3", "UNKNOWN", store_ok=False),
    }
    r = report(roles, {H1: cluster(leader="n3", term=7)})
    assert r.verdict.code == 3
    assert r.verdict.line == (
        "no master: the store is unreachable from every node that answered "
        "(etcd quorum lost or etcd down)"
    )
    table = rows(render(r))
    assert {row[1] for row in table.values()} == {"UNKNOWN"}
    assert {row[4] for row in table.values()} == {"unreachable"}
    assert "MASTER" not in render(r).split("\n\n")[0]


def test_no_master_because_the_leader_key_names_a_node_that_does_not_answer():
    roles = {H1: role("n1"), H2: "cannot connect: connection refused", H3: role("n3")}
    r = report(roles)
    assert r.verdict.code == 3
    assert r.verdict.line == (
        "no master: the leader key still names n2, which does not answer "
        "(its lease runs out within the TTL, then another node takes over)"
    )
    dead = rows(render(r))["n2"]
    assert dead[1] == UNREACHABLE and dead[8] == H2
    assert " ".join(dead[9:]) == "cannot connect: connection refused"


def test_a_leader_cut_off_from_the_store_answers_unknown():
    roles = {H1: role("n1"), H2: role("n2", "UNKNOWN", store_ok=False), H3: role("n3")}
    r = report(roles)
    assert r.verdict.code == 3
    assert r.verdict.line.startswith("no master: the leader key names n2, which answers UNKNOWN")
    assert r.verdict.line.endswith("; the store is unreachable from n2")


def test_a_dead_leader_while_paused_says_paused():
    roles = {H1: role("n1", paused=True), H2: "no answer within 2 s", H3: role("n3", paused=True)}
    r = report(roles)
    assert r.verdict.code == 3
    assert "the leader key still names n2, which does not answer" in r.verdict.line
    assert "no node takes over while paused" in r.verdict.line
    paused = "the cluster is paused (automatic failover is off until `vipmon resume`)"
    assert r.verdict.line.endswith("; " + paused)


def test_maintenance_shows_maintenance_though_cluster_says_standby():
    roles = {
        H1: role("n1", "MAINTENANCE", maintenance=True, eligible=False),
        H2: role("n2", "MASTER"),
        H3: role("n3"),
    }
    r = report(roles)
    assert r.verdict.code == 0
    row = rows(render(r))["n1"]
    assert row[1] == "MAINTENANCE" and row[5] == "yes"


def test_two_masters_are_a_split():
    roles = {H1: role("n1", "MASTER", term=8), H2: role("n2", "MASTER"), H3: role("n3")}
    r = report(roles)
    assert r.verdict.code == 4
    assert r.verdict.line.startswith("SPLIT: 2 nodes answer MASTER: n1 (term 8), n2 (term 9).")


def test_nobody_answers():
    r = report({H1: "cannot connect: connection refused"}, {H1: "cannot connect: refused"})
    assert r.verdict.code == 1 and r.verdict.line == "no master: no node answers"
    assert r.notes and "only the seeds are shown" in r.notes[0]


def test_no_eligible_node():
    roles = {
        H1: role("n1", "MAINTENANCE", leader=None, term=0, maintenance=True, eligible=False),
        H2: role("n2", leader=None, term=0, priority=0, eligible=False),
        H3: role(
            "n3",
            leader=None,
            term=0,
            eligible=False,
            check={"configured": True, "ok": False, "detail": "http 500 from /health"},
        ),
    }
    r = report(roles, {H1: cluster(leader=None, term=0)})
    assert r.verdict.code == 3
    assert r.verdict.line == (
        "no master: no eligible node (n1 in maintenance, n2 priority 0, n3 check failing)"
    )
    text = render(r)
    assert rows(text)["n3"][7] == "failing" and "check: http 500 from /health" in text


def test_an_election_in_progress():
    roles = {url: role(node, leader=None, term=0) for node, url in URLS.items()}
    r = report(roles, {H1: cluster(leader=None, term=0)})
    assert r.verdict.code == 3
    assert r.verdict.line == (
        "no master: an election is in progress (no node holds the leader key yet)"
    )


def test_draining_is_not_master():
    roles = {H1: role("n1"), H2: role("n2", "DRAINING", lease_remaining_ms=800), H3: role("n3")}
    r = report(roles)
    assert r.verdict.code == 3 and "n2 is DRAINING" in r.verdict.line
    assert rows(render(r))["n2"][1:4] == ["DRAINING", "9", "0.8s"]


def test_an_unreadable_leader_key():
    roles = {
        url: role(node, "UNKNOWN", leader=None, leader_unknown=True) for node, url in URLS.items()
    }
    r = report(roles)
    assert r.verdict.code == 3 and "cannot read" in r.verdict.line


def test_a_seed_not_listed_is_asked_and_shown_once():
    seed = "http://127.0.0.1:9999"  # n2 reached through another address
    roles = {H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3"), seed: role("n2", "MASTER")}
    r = report(roles, {seed: cluster()}, seeds=(seed,))
    assert [v.node for v in r.views] == ["n1", "n2", "n3"]
    assert r.verdict.code == 0 and r.listed_by == seed


def test_the_first_seed_that_answers_lists_the_members():
    dead = "http://127.0.0.1:9998"
    clusters = {dead: "cannot connect: connection refused", H1: cluster()}
    roles = {dead: "cannot connect: connection refused"}
    roles |= {H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3")}
    r = build_report([dead, H1], clusters, roles)
    assert r.listed_by == H1 and r.verdict.code == 0
    assert [(v.node, v.role) for v in r.views][-1] == ("?", UNREACHABLE)


def test_a_bad_role_answer_is_unreachable_not_a_crash():
    roles = {H1: {"node": "n1", "role": "BOSS"}, H2: role("n2", "MASTER"), H3: {"role": "STANDBY"}}
    r = report(roles)
    views = {v.node: v for v in r.views}
    assert views["n1"].role == UNREACHABLE and "'BOSS'" in views["n1"].error
    assert views["n3"].role == "STANDBY"  # the id /cluster lists, every other field defaulted
    assert r.verdict.code == 5 and r.verdict.line.endswith(", but n1 is UNREACHABLE")


def test_two_processes_with_one_node_id_are_two_rows_and_not_a_healthy_cluster():
    """Issue 20, finding 12: status folded them into one row and exited 0."""
    second = role("n1", url=H4, started_at="2026-12-02T12:05:00Z", eligible=False)
    roles = {H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3"), H4: second}
    r = report(roles, seeds=(H1, H4))
    assert sorted(v.url for v in r.views if v.node == "n1") == [H1, H4]
    assert r.verdict.code == 5
    assert r.verdict.line == (
        f"master: n2 (term 9), but node id n1 answers from 2 processes ({H1}, {H4}): "
        "give each node its own --node-id"
    )
    table = render(r).split("\n\n")[0].splitlines()[1:]
    n1 = [line for line in table if line.split()[0] == "n1"]
    assert len(n1) == 2 and all("node id n1 also answers at" in line for line in n1)


def test_one_process_reached_at_two_urls_is_one_row_even_without_a_listed_url():
    """A seed through another address and the advertise URL: the same url and start."""
    seed = "http://127.0.0.1:9999"
    roles = {H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3"), seed: role("n1")}
    r = report(roles, seeds=(seed, H1))
    assert [v.node for v in r.views] == ["n1", "n2", "n3"] and r.verdict.code == 0


def test_a_restarted_process_behind_the_same_url_is_another_process():
    seed = "http://127.0.0.1:9999"
    roles = {H1: role("n1"), H2: role("n2", "MASTER"), H3: role("n3")}
    roles[seed] = role("n1", started_at="2026-12-02T13:00:00Z")
    r = report(roles, seeds=(H1, seed))
    assert len([v for v in r.views if v.node == "n1"]) == 2 and r.verdict.code == 5


def test_an_older_node_without_its_url_in_role_is_folded_by_id_as_before():
    seed = "http://127.0.0.1:9999"
    old = {k: v for k, v in role("n1").items() if k not in ("url", "started_at")}
    roles = {H1: old, H2: role("n2", "MASTER"), H3: role("n3"), seed: old}
    r = report(roles, seeds=(seed, H1))
    assert [v.node for v in r.views] == ["n1", "n2", "n3"] and r.verdict.code == 0


# -- gathering, against an in-process transport ---------------------------------------


def _serve(answers: dict[str, list[Any]]) -> httpx.AsyncClient:
    """A client whose GETs are answered from ``answers[url]``, one per call, the last kept."""

    async def handler(request: httpx.Request) -> httpx.Response:
        queue = answers[str(request.url)]
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        if body == "hang":
            await asyncio.Event().wait()
        if isinstance(body, BaseException):
            raise body
        if isinstance(body, int):
            return httpx.Response(body, json={"detail": "Not Found"})
        return httpx.Response(200, json=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _gather(answers: dict[str, list[Any]], timeout: float = 1.0):
    async def go():
        async with _serve(answers) as client:
            return await gather(client, [H1], timeout)

    return asyncio.run(go())


def test_gather_asks_every_member_and_a_hung_one_is_unreachable():
    r = _gather(
        {
            H1 + "/cluster": [cluster()],
            H1 + "/role": [role("n1")],
            H2 + "/role": [role("n2", "MASTER")],
            H3 + "/role": ["hang"],
        },
        timeout=0.2,
    )
    views = {v.node: v for v in r.views}
    assert r.verdict.code == 5 and r.verdict.line == "master: n2 (term 9), but n3 is UNREACHABLE"
    assert views["n3"].role == UNREACHABLE and views["n3"].error == "no answer within 0.2 s"


def test_gather_asks_two_masters_again_before_it_calls_a_split():
    handover = {
        H1 + "/cluster": [cluster()],
        H1 + "/role": [role("n1", "MASTER", term=10, leader="n1"), role("n1", "MASTER", term=10)],
        H2 + "/role": [role("n2", "MASTER"), role("n2", leader="n1", term=10)],
        H3 + "/role": [role("n3")],
    }
    r = _gather(handover)
    assert r.verdict.code == 0 and r.verdict.line == "master: n1 (term 10)"
    split = {**handover, H2 + "/role": [role("n2", "MASTER")]}
    split[H1 + "/role"] = [role("n1", "MASTER", term=10)]
    assert _gather(split).verdict.code == 4


def test_gather_turns_socket_and_raw_tls_errors_into_unreachable_rows():
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    r = _gather(
        {
            H1 + "/cluster": [cluster()],
            H1 + "/role": [role("n1")],
            H2 + "/role": [ssl.SSLError(1, "tlsv1 alert unknown ca")],  # asyncio lets it through
            H3 + "/role": [refused],
        }
    )
    views = {v.node: v for v in r.views}
    assert views["n2"].role == UNREACHABLE and views["n2"].error.startswith("TLS: ")
    assert views["n3"].error == "cannot connect: connection refused"
    assert r.verdict.code == 3


def test_gather_reports_a_404_as_such():
    r = _gather({H1 + "/cluster": [404], H1 + "/role": [404]})
    assert r.verdict.code == 1
    assert [v.error for v in r.views] == ["answered 404, not 200"]


# -- the command line ------------------------------------------------------------------


def test_status_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        main(["status", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for line in (
        "0  exactly one node answers MASTER",
        "1  no node could be read",
        "2  usage error",
        "3  no master",
        "4  more than one node answers MASTER",
        "--watch",
        "DRAINING is not MASTER",
    ):
        assert line in text


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_status_refuses_a_bad_timeout_in_one_line(value: str, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["status", "--timeout", value])
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vipmon status: error: argument --timeout: ") and repr(value) in line


def test_status_refuses_a_second_url_with_a_path(capsys: pytest.CaptureFixture[str]):
    code = main(["status", "--url", "http://127.0.0.1:1", "--url", "http://h:2/monitor"])
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vipmon: invalid setting 'url': 'http://h:2/monitor' has a path")


def test_the_store_version_is_shown_and_one_with_lease_bugs_is_warned_about():
    old = "etcd 3.4.23"
    r = report(
        {
            H1: role("n1", store_version=old),
            H2: role("n2", "MASTER", store_version=old),
            H3: role("n3", store_version=old),
        }
    )
    assert r.verdict.code == 0
    lines = render(r).splitlines()
    at = lines.index("master: n2 (term 9)")
    assert lines[at + 1] == "store: etcd 3.4.23"
    assert lines[at + 2].startswith("warning: etcd 3.4.23 has the stale-leader lease bugs ")
    assert "#12528" in lines[at + 2] and "3.4.31" in lines[at + 2] and "3.5.13" in lines[at + 2]


def test_store_versions_that_differ_are_named_per_node_and_a_fixed_one_is_not_warned():
    r = report(
        {
            H1: role("n1", store_version="etcd 3.5.13"),
            H2: role("n2", "MASTER", store_version="etcd 3.5.13"),
            H3: role("n3"),  # an older node: no version in its /role
        }
    )
    text = render(r)
    assert "store: etcd 3.5.13 (n1, n2)" in text.splitlines()
    assert "warning" not in text


def test_a_listed_member_that_does_not_answer_is_not_a_healthy_cluster():
    """A dead seed is not a member (exit 0 above); a member that does not answer is."""
    roles = {H1: role("n1"), H2: role("n2", "MASTER"), H3: "cannot connect: connection refused"}
    r = report(roles)
    assert r.verdict.code == 5
    assert r.verdict.line == "master: n2 (term 9), but n3 is UNREACHABLE"
