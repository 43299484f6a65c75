"""Writing the output directory: one bundle per host, the admin directory, and reading it back.

Layout of ``DIR``::

    DIR/<host>/   what that host installs (install.sh places it; see app.bootstrap.files)
    DIR/admin/    the CA and its key, the admin's client certificate, etcd's root and
                  vipmon passwords, the admin token, plan.json: never copied to a host
    DIR/adc/      the load balancer's config, when one was asked for

Every file holding a secret is created with mode 0600, and so are the
directories that are not a host's (``admin`` is 0700). No host bundle ever
holds the CA's key or etcd's root password.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.bootstrap import files, pki
from app.bootstrap.install import install_script
from app.bootstrap.plan import BootstrapError, Host, Plan

ADMIN = "admin"
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Secrets:
    """The passwords of etcd's ``root`` and ``vipmon`` users, and the admin API's token."""

    root_password: str
    vipmon_password: str
    admin_token: str

    @classmethod
    def create(cls) -> Secrets:
        return cls(*(secrets.token_urlsafe(24) for _ in range(3)))


_SECRET_FILES = ("etcd-root.password", "etcd-vipmon.password", "admin.token")


def prepare_out(out: Path, force: bool) -> None:
    """Make ``out`` (mode 0700), or BootstrapError on ``--out`` if it exists without ``force``.

    With ``force``, an existing ``out`` is removed only if it is empty or an
    earlier output (it has ``admin/plan.json``): never someone's other files.
    """
    if out.exists() or out.is_symlink():
        if not force:
            raise BootstrapError("--out", f"{out} exists; give --force to replace it")
        if not out.is_dir() or out.is_symlink():
            raise BootstrapError("--out", f"{out} is not a directory")
        if any(out.iterdir()) and not (out / ADMIN / PLAN_FILE).is_file():
            raise BootstrapError(
                "--out", f"{out} holds files that are not a vipmon bootstrap output; not replacing"
            )
        shutil.rmtree(out)
    try:
        out.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise BootstrapError("--out", f"cannot create {out}: {exc.strerror or exc}") from None


def _write(path: Path, data: bytes | str, mode: int) -> None:
    raw = data.encode() if isinstance(data, str) else data
    if mode & 0o077 == 0:
        pki.write_private(path, raw)
    else:
        path.write_bytes(raw)
        path.chmod(mode)


def write_admin(out: Path, plan: Plan, ca: pki.CA, secret: Secrets) -> None:
    """``DIR/admin``: the CA, the admin client certificate, the secrets and the plan."""
    admin = out / ADMIN
    admin.mkdir(mode=0o700, exist_ok=True)
    _write(admin / "ca.crt", ca.cert_pem, 0o644)
    _write(admin / "ca.key", ca.key_pem, 0o600)
    client = pki.client_pair(ca)
    _write(admin / "admin.crt", client.cert, 0o644)
    _write(admin / "admin.key", client.key, 0o600)
    values = (secret.root_password, secret.vipmon_password, secret.admin_token)
    for name, value in zip(_SECRET_FILES, values, strict=True):
        _write(admin / name, value + "\n", 0o600)
    save_plan(out, plan)


def save_plan(out: Path, plan: Plan) -> None:
    _write(out / ADMIN / PLAN_FILE, plan.to_json(), 0o644)


def load_admin(out: Path) -> tuple[Plan, pki.CA, Secrets]:
    """The plan, CA and secrets kept in ``DIR/admin``; BootstrapError on ``--out`` if unusable."""
    admin = out / ADMIN
    try:
        plan = Plan.from_json((admin / PLAN_FILE).read_text())
        ca = pki.CA.load((admin / "ca.crt").read_bytes(), (admin / "ca.key").read_bytes())
        values = [(admin / name).read_text().strip() for name in _SECRET_FILES]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BootstrapError("--out", f"{admin} is not a usable admin directory: {exc}") from None
    return plan, ca, Secrets(*values)


def write_host(
    out: Path,
    plan: Plan,
    host: Host,
    ca: pki.CA,
    secret: Secrets,
    *,
    state: str = "new",
    etcd_ca: bytes | None = None,
) -> Path:
    """Write ``DIR/<host>/`` (replacing it) and return it.

    ``state``: etcd's ``initial-cluster-state`` of a member. ``etcd_ca``: the
    CA of external etcd's server certificates, when it is not ours.
    """
    bundle = out / host.name
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(mode=0o700)
    content: dict[str, bytes | str] = {"ca.crt": ca.cert_pem}
    if host.member:
        member = pki.member_pair(ca, host.name, host.address)
        content |= {
            files.ETCD_CONFIG: files.etcd_config(plan, host, state),
            "member.crt": member.cert,
            "member.key": member.key,
            files.ETCD_UNIT: files.etcd_unit(),
        }
    if host.node:
        api, client = pki.api_pair(ca, host.name, host.address), pki.client_pair(ca)
        has_ca = etcd_ca is not None
        content |= {
            files.VIPMON_CONFIG: files.vipmon_config(
                plan, host, secret.vipmon_password, etcd_ca=has_ca
            ),
            "api.crt": api.cert,
            "api.key": api.key,
            "etcd-client.crt": client.cert,
            "etcd-client.key": client.key,
            "admin.token": secret.admin_token + "\n",
            files.VIPMON_UNIT: files.vipmon_unit(),
        }
        if etcd_ca is not None:
            content[files.ETCD_CA] = etcd_ca
    placed = files.placements(host, etcd_ca=etcd_ca is not None)
    for placement in placed:
        _write(bundle / placement.name, content[placement.name], placement.mode)
    _write(bundle / "install.sh", install_script(plan.cluster, host, placed), 0o755)
    return bundle
