"""A bootstrap bundle installs under a prefix, twice, and its units pass ``systemd-analyze``.

``install.sh`` runs with ``PREFIX`` pointing into the test's directory, so it
creates no user, calls no systemctl and never writes to the real ``/etc``. Every
absolute path the configs name exists afterwards under that prefix, with the
mode install.sh gave it; a second run leaves the same tree.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from app.bootstrap.files import vipmon_unit
from app.cli import main
from tests.deploy.test_systemd import UNIT_DIR, VENV_VIPMON, verify

HOSTS = ["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", "--witness", "w=10.0.1.9"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bs") / "out"
    assert main(["bootstrap", "--cluster", "prod", *HOSTS, "--out", str(path)]) == 0
    return path


def install(bundle: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PREFIX": str(root)}
    return subprocess.run(
        ["sh", str(bundle / "install.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (
            stat.S_IMODE(p.stat().st_mode),
            p.read_bytes() if p.is_file() else b"",
        )
        for p in sorted(root.rglob("*"))
    }


def named_paths(text: str) -> set[str]:
    return set(re.findall(r"(/(?:etc|var)/[\w./-]+)", text))


@pytest.mark.parametrize("host", ["n1", "w"])
def test_install_under_a_prefix_is_idempotent_and_places_every_named_path(out, tmp_path, host):
    root = tmp_path / "root"
    done = install(out / host, root)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first = tree(root)
    done = install(out / host, root)
    assert done.returncode == 0, done.stderr
    assert tree(root) == first
    named = set()
    for config in ("etcd.conf.yml", "vipmon.toml", "vipmon.service", "vipmon-etcd.service"):
        if (out / host / config).exists():
            named |= named_paths((out / host / config).read_text())
    named.discard("/var/lib/vipmon")  # the unused embedded store's StateDirectory
    assert named, "the configs name installed paths"
    for path in named:
        assert (root / path.lstrip("/")).exists(), f"{path} is named but not installed"
    for path, (mode, data) in first.items():
        if b"PRIVATE KEY" in data or path.endswith(("vipmon.toml", "admin.token")):
            assert mode == 0o600, path
    assert first["var/lib/vipmon-etcd"][0] == 0o700
    assert ("etc/vipmon/vipmon.toml" in first) == (host != "w")


def test_install_refuses_an_unknown_argument(out, tmp_path):
    done = install(out / "n1", tmp_path / "root", "--bogus")
    assert done.returncode == 2
    assert "unknown argument: --bogus" in done.stderr
    assert not (tmp_path / "root").exists()


def unit_copy(out: Path, tmp: Path, name: str) -> Path:
    text = (out / "n1" / name).read_text()
    if name == "vipmon.service":
        assert VENV_VIPMON.exists(), VENV_VIPMON
        text = text.replace("ExecStart=/opt/vipmon/bin/vipmon ", f"ExecStart={VENV_VIPMON} ")
    (tmp / name).write_text(text)
    return tmp


@pytest.mark.parametrize("name", ["vipmon.service", "vipmon-etcd.service"])
def test_bootstrap_units_verify_with_empty_stderr(out, tmp_path, name):
    if name == "vipmon-etcd.service" and not Path("/usr/bin/etcd").exists():
        pytest.fail("/usr/bin/etcd is missing: install Debian's etcd-server (make system-deps)")
    done = verify(unit_copy(out, tmp_path, name), name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_vipmon_unit_is_the_shipped_one_with_a_fixed_user_and_the_config():
    """Every [Service] line of deploy/systemd/vipmon.service is kept, but for the user
    and where the settings come from."""
    shipped = (UNIT_DIR / "vipmon.service").read_text()
    ours = vipmon_unit()
    service = shipped.split("[Service]", 1)[1].split("[Install]", 1)[0]
    settings = [ln for ln in service.splitlines() if ln and not ln.startswith("#")]
    replaced = {"DynamicUser=yes", "ExecStart=/opt/vipmon/bin/vipmon run",
                "EnvironmentFile=-/etc/vipmon/vipmon.env"}  # fmt: skip
    assert replaced <= set(settings)
    for line in settings:
        if line not in replaced:
            assert f"\n{line}\n" in ours, line
    for line in (
        "User=vipmon",
        "ExecStart=/opt/vipmon/bin/vipmon run --config /etc/vipmon/vipmon.toml",
    ):
        assert f"\n{line}\n" in ours
    assert "DynamicUser" not in ours
