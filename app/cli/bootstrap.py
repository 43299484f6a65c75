"""``vipmon bootstrap``: the files that make bare hosts a secured cluster (:mod:`app.bootstrap`).

* ``vipmon bootstrap --cluster NAME --host n1=ADDR ... --out DIR``: one bundle per host,
  the admin directory, and the ADC's config with ``--adc``. Writes files, starts nothing.
* ``vipmon bootstrap auth --out DIR``: etcd's users and role, then ``auth enable``, on the
  running cluster.
* ``vipmon bootstrap add-host --out DIR --host n4=ADDR [--member] [--replace]``: one more
  bundle from the kept CA; for a vipmon node, ``DIR/adc/`` again with it (the ADC's
  flags are kept in ``DIR/admin/adc.json``).

Exit status: 0; 1 when the auth step fails against etcd; 2 with one line
``vipmon bootstrap: argument --X: reason`` for a bad flag (nothing is written then).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from app.adc.build import build as build_adc
from app.adc.model import AdcError
from app.bootstrap.plan import (
    API_PORT,
    MEMBER_COUNTS,
    BootstrapError,
    Host,
    Plan,
    make_plan,
    parse_host,
)
from app.cli.adc import add_parser as add_adc_parser
from app.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, OneLineParser, Subparsers
from app.http.tls import client_context

# app.bootstrap's bundle, pki and auth modules (cryptography, yaml: about 10 MB of RSS)
# are imported by the commands that use them, not here: every `vipmon run` builds this
# parser too.
ADC_KINDS = ("haproxy", "nginx", "caddy", "f5")
ADC_ARGS_FILE = "adc.json"  # in DIR/admin: --adc, --vip, --app-port, for add-host
_ADC_CA = {"haproxy": "/etc/haproxy/vipmon-ca.crt", "f5": "/Common/vipmon-ca.crt"}
_ADC_FILE = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf", "f5": "f5.tmsh"}


def add_parser(sub: Subparsers) -> None:
    """Add ``bootstrap`` and its steps ``auth`` and ``add-host`` to ``sub``."""
    p = sub.add_parser(
        "bootstrap",
        help="write the bundles that make hosts a secured cluster (starts nothing)",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    p.add_argument("--cluster", metavar="NAME", help="cluster name: vipmon's key namespace")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="a node: runs vipmon and, without --etcd-endpoint, an etcd member",
    )
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="with two --host: a host that runs only an etcd member",
    )
    p.add_argument(
        "--etcd-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="external etcd (https) instead of members on the hosts (repeatable)",
    )
    p.add_argument(
        "--etcd-ca",
        type=Path,
        metavar="FILE",
        help="with --etcd-endpoint: the CA of external etcd's certificates",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (must not exist)")
    p.add_argument("--force", action="store_true", help="replace an earlier output in --out")
    p.add_argument("--adc", choices=ADC_KINDS, help="also write this load balancer's config")
    p.add_argument("--vip", metavar="HOST:PORT", help="with --adc: where the ADC serves the VIP")
    p.add_argument("--app-port", type=int, metavar="N", help="with --adc: the application's port")
    p.set_defaults(func=generate)
    steps = p.add_subparsers(dest="step", metavar="{auth,add-host}")
    a = steps.add_parser("auth", help="enable etcd auth with the vipmon user and role")
    a.add_argument("--out", type=Path, required=True, metavar="DIR", help="the bootstrap output")
    a.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="etcd client URL to use (default: the plan's endpoints)",
    )
    a.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    a.set_defaults(func=auth)
    h = steps.add_parser("add-host", help="write the bundle of one more host from the kept CA")
    h.add_argument("--out", type=Path, required=True, metavar="DIR", help="the bootstrap output")
    h.add_argument("--host", required=True, metavar="NAME=ADDRESS", help="the new host")
    h.add_argument("--member", action="store_true", help="it runs an etcd member too")
    h.add_argument(
        "--replace",
        action="store_true",
        help="the host replaces the one of that name (a dead host's new machine)",
    )
    h.set_defaults(func=add_host)  # fmt: skip


def _usage(exc: BootstrapError) -> int:
    print(f"vipmon bootstrap: {exc}", file=sys.stderr)
    return EXIT_USAGE


def adc_files(plan: Plan, kind: str, vip: str | None, app_port: int | None) -> dict[str, str]:
    """``vipmon adc-config``'s output for these nodes, checking over TLS, by file name.

    HAProxy also gets its server-state seed, so that every server starts DOWN.
    BootstrapError names ``--adc``, ``--vip`` or ``--app-port``.
    """
    if vip is None or app_port is None:
        raise BootstrapError("--vip" if vip is None else "--app-port", "required with --adc")
    if kind == "caddy":
        raise BootstrapError(
            "--adc", "caddy checks vipmon over the application's transport and cannot check "
            "the bundles' HTTPS-only API; use haproxy, f5 or nginx",
        )  # fmt: skip
    argv = ["--vip", vip]
    for node in plan.nodes:
        argv += ["--node", f"{node.name}={node.url_host}:{app_port}/{API_PORT}"]
    if kind in _ADC_CA:
        argv += ["--tls", "--ca-file", _ADC_CA[kind]]
    targets = {_ADC_FILE[kind]: kind}
    if kind == "haproxy":
        targets["vipmon-servers.state"] = "haproxy-state"
    parser = OneLineParser(prog="vipmon")
    add_adc_parser(parser.add_subparsers())
    try:
        return {
            name: build_adc(parser.parse_args(["adc-config", target, *argv]))
            for name, target in targets.items()
        }
    except AdcError as exc:
        flag = {"--vip": "--vip", "--node": "--app-port"}.get(exc.argument, "--adc")
        raise BootstrapError(flag, exc.reason) from None


def _plan(args: argparse.Namespace) -> tuple[Plan, bytes | None, dict[str, str]]:
    if not args.cluster:
        raise BootstrapError("--cluster", "required")
    if args.out is None:
        raise BootstrapError("--out", "required")
    plan = make_plan(args.cluster, args.host, args.witness, args.etcd_endpoint)
    etcd_ca = None
    if args.etcd_ca is not None:
        if not plan.external:
            raise BootstrapError("--etcd-ca", "only with --etcd-endpoint")
        try:
            etcd_ca = args.etcd_ca.read_bytes()
        except OSError as exc:
            raise BootstrapError(
                "--etcd-ca", f"cannot read {args.etcd_ca}: {exc.strerror}"
            ) from None
    if args.adc is None:
        if args.vip is not None or args.app_port is not None:
            raise BootstrapError("--vip" if args.vip else "--app-port", "only with --adc")
        return plan, etcd_ca, {}
    return plan, etcd_ca, adc_files(plan, args.adc, args.vip, args.app_port)


def generate(args: argparse.Namespace) -> int:
    """Write every bundle, the admin directory and the ADC's config; exit status."""
    from app.bootstrap import bundle
    from app.bootstrap.pki import CA

    try:
        plan, etcd_ca, adc_text = _plan(args)
        bundle.prepare_out(args.out, args.force)
    except BootstrapError as exc:
        return _usage(exc)
    out: Path = args.out
    ca, secret = CA.create(plan.cluster), bundle.Secrets.create()
    bundle.write_admin(out, plan, ca, secret)
    for host in plan.hosts:
        bundle.write_host(out, plan, host, ca, secret, etcd_ca=etcd_ca)
        roles = (["etcd member"] if host.member else []) + (["vipmon node"] if host.node else [])
        print(f"wrote {out / host.name}/ ({', '.join(roles)})")
    if adc_text:
        _write_adc(out, adc_text, ca.cert_pem)
        adc = {"kind": args.adc, "vip": args.vip, "app_port": args.app_port}
        (out / bundle.ADMIN / ADC_ARGS_FILE).write_text(json.dumps(adc, indent=2) + "\n")
        print(f"wrote {out / 'adc'}/ ({args.adc})")
    print(f"wrote {out / 'admin'}/ (the CA's key and etcd's root password: keep it off the hosts)")
    print("next: copy each host's directory to it and run its install.sh as root; then")
    print(f"      vipmon bootstrap auth --out {shlex.quote(str(out))}")
    return EXIT_OK


def auth(args: argparse.Namespace) -> int:
    """``bootstrap auth``: 0 when auth is on and vipmon logs in, 1 if etcd refused a step."""
    from app.bootstrap import bundle
    from app.bootstrap.auth import AuthStepError, Gateway, enable_auth

    try:
        plan, _, secret = bundle.load_admin(args.out)
    except BootstrapError as exc:
        return _usage(exc)
    admin = args.out / bundle.ADMIN
    verify = client_context(admin / "ca.crt", admin / "admin.crt", admin / "admin.key")
    assert not isinstance(verify, bool)
    try:
        gateway = Gateway(args.endpoint or plan.endpoints, verify, args.timeout)
        try:
            lines = enable_auth(gateway, plan.cluster, secret.root_password, secret.vipmon_password)
        finally:
            gateway.close()
    except AuthStepError as exc:
        print(f"vipmon bootstrap auth: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for line in lines:
        print(f"{gateway.endpoint}: {line}")
    return EXIT_OK


def add_host(args: argparse.Namespace) -> int:
    """``bootstrap add-host``: one more bundle, the plan updated, and the steps to take."""
    from app.bootstrap import bundle

    try:
        plan, ca, secret = bundle.load_admin(args.out)
        host, new_plan = _grown(plan, args)
    except BootstrapError as exc:
        return _usage(exc)
    state = "existing" if host.member else "new"
    path = bundle.write_host(args.out, new_plan, host, ca, secret, state=state)
    bundle.save_plan(args.out, new_plan)
    print(f"wrote {path}/")
    adc_args = args.out / bundle.ADMIN / ADC_ARGS_FILE
    if host.node and adc_args.exists():
        # the load balancer must know the node before it can win: else a master no server
        # of the ADC points at, and the VIP serves nothing
        adc = json.loads(adc_args.read_text())
        texts = adc_files(new_plan, adc["kind"], adc["vip"], adc["app_port"])
        _write_adc(args.out, texts, ca.cert_pem)
        print(f"wrote {args.out / 'adc'}/ with {host.name}: load it into the load balancer")
        print(f"      before {host.name} starts")
    count = len(new_plan.members)
    if host.member and count not in MEMBER_COUNTS:
        print(
            f"warning: {count} etcd members need {count // 2 + 1} for a quorum: they survive "
            f"the loss of {(count - 1) // 2}, as {count - 1} do; add one more member",
            file=sys.stderr,
        )
    if host.member:
        admin = args.out / bundle.ADMIN
        others = ",".join(h.client_url for h in plan.members if h.name != host.name)
        password = f'"$(cat {admin}/etcd-root.password)"'
        etcdctl = (
            f"  etcdctl --endpoints {others} --cacert {admin}/ca.crt --cert {admin}/admin.crt \\\n"
            f"    --key {admin}/admin.key --user root --password {password} \\\n   "
        )
        if args.replace:
            print(f"first, from the admin host, remove the dead member {host.name} (its ID is")
            print("the first column of its row in `member list`), then add the new one:")
            print(f"{etcdctl} member list")
            print(f"{etcdctl} member remove <ID of {host.name}>")
        else:
            print("first, from the admin host, add the member to etcd:")
        print(f"{etcdctl} member add {host.name} --peer-urls {host.peer_url}")
    print(f"then copy {path}/ to {host.address} and run its install.sh as root")
    return EXIT_OK


def _write_adc(out: Path, texts: dict[str, str], ca_pem: bytes) -> None:
    (out / "adc").mkdir(mode=0o755, exist_ok=True)
    for name, text in texts.items():
        (out / "adc" / name).write_text(text)
    (out / "adc" / "ca.crt").write_bytes(ca_pem)


def _grown(plan: Plan, args: argparse.Namespace) -> tuple[Host, Plan]:
    host = parse_host(args.host, "--host")
    if args.member and plan.external:
        raise BootstrapError("--member", "this cluster uses external etcd")
    old = {h.name: h for h in plan.hosts}.get(host.name)
    if args.replace and old is None:
        raise BootstrapError("--host", f"no host named {host.name!r} to replace")
    if not args.replace and old is not None:
        raise BootstrapError("--host", f"duplicate name {host.name!r} (give --replace)")
    # A replacement keeps the roles of the host it replaces (a witness stays a witness).
    member = (args.member or (old is not None and old.member)) and not plan.external
    host = Host(host.name, host.address, member=member, node=old is None or old.node)
    others = [h for h in plan.hosts if h.name != host.name]
    for other in others:
        if other.address == host.address:
            raise BootstrapError("--host", f"duplicate address {host.address}")
    hosts = [host if h.name == host.name else h for h in plan.hosts]
    if not args.replace:
        hosts.append(host)
    return host, Plan(plan.cluster, tuple(hosts), plan.external)
