"""``vipmon bootstrap``: bad input is refused in one line, and the files it writes are right.

Validation: each bad input exits 2 with one line naming the flag, and writes nothing.
Files: etcd's config parsed as YAML, ``vipmon.toml`` loaded by the settings code, the
certificates (SANs, usages, empty subject, chain to the CA), and the secrets check
(:func:`leaks`): no bundle holds the CA's key, the root password, or a key others can read.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.cli import main
from app.settings import load_settings

THREE = ["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", "--host", "n3=10.0.1.3"]
TWO_PLUS_WITNESS = ["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", "--witness", "w=10.0.1.9"]


def bootstrap(out: Path, *flags: str, cluster: str = "prod") -> int:
    return main(["bootstrap", "--cluster", cluster, *flags, "--out", str(out)])


BAD = [
    (["--host", "n1=10.0.1.1", "--host", "n1=10.0.1.2", "--host", "n3=10.0.1.3"],
     "--host", "duplicate name 'n1'"),
    (["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.1", "--host", "n3=10.0.1.3"],
     "--host", "duplicate address 10.0.1.1"),
    (["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2"], "--host", "2 etcd members"),
    ([*THREE, "--host", "n4=10.0.1.4"], "--host", "4 etcd members"),
    ([*THREE, "--witness", "w=10.0.1.9"], "--witness", "with 3 nodes give no witness"),
    (["--host", "n1=10.0.1.300"], "--host", "'10.0.1.300' is not an IPv4 or IPv6 address"),
    (["--host", "n1"], "--host", "'n1' is not NAME=ADDRESS"),
    (["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", "--witness", "w=nowhere"],
     "--witness", "'nowhere' is not an IPv4 or IPv6 address"),
    (["--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", "--witness", "n2=10.0.1.9"],
     "--witness", "duplicate name 'n2'"),
    ([*THREE, "--etcd-endpoint", "http://10.0.2.1:2379"], "--etcd-endpoint", "https"),
    ([*THREE, "--adc", "haproxy"], "--vip", "required with --adc"),
    ([*THREE, "--adc", "caddy", "--vip", "10.0.1.100:80", "--app-port", "8080"], "--adc", "caddy"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "flag", "why"), BAD, ids=[b[2] for b in BAD])
def test_bad_input_exits_2_with_one_line_naming_the_flag(tmp_path, capsys, flags, flag, why):
    out = tmp_path / "out"
    assert bootstrap(out, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"vipmon bootstrap: argument {flag}: "), err
    assert why in err
    assert not out.exists(), "nothing is written on bad input"


def test_an_existing_out_needs_force_and_force_replaces_only_an_earlier_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert bootstrap(out, *THREE) == 0
    first_ca = (out / "admin" / "ca.crt").read_bytes()
    capsys.readouterr()
    assert bootstrap(out, *THREE) == 2
    err = capsys.readouterr().err
    assert err == f"vipmon bootstrap: argument --out: {out} exists; give --force to replace it\n"
    assert bootstrap(out, *THREE, "--force") == 0
    assert (out / "admin" / "ca.crt").read_bytes() != first_ca
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert bootstrap(other, *THREE, "--force") == 2
    assert "not a vipmon bootstrap output" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bs") / "out"
    flags = [*THREE, "--adc", "haproxy", "--vip", "10.0.1.100:80", "--app-port", "8080"]
    assert bootstrap(out, *flags) == 0
    return out


@pytest.fixture(scope="module")
def witness(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bs") / "out"
    assert bootstrap(out, *TWO_PLUS_WITNESS) == 0
    return out


def test_etcd_config_is_etcds_format_with_tls_everywhere(three):
    config = yaml.safe_load((three / "n2" / "etcd.conf.yml").read_text())
    assert config["name"] == "n2"
    assert config["data-dir"] == "/var/lib/vipmon-etcd"
    assert config["listen-client-urls"] == "https://10.0.1.2:2379"
    assert config["advertise-client-urls"] == "https://10.0.1.2:2379"
    assert config["listen-peer-urls"] == config["initial-advertise-peer-urls"]
    assert config["initial-advertise-peer-urls"] == "https://10.0.1.2:2380"
    assert config["initial-cluster"] == (
        "n1=https://10.0.1.1:2380,n2=https://10.0.1.2:2380,n3=https://10.0.1.3:2380"
    )
    assert config["initial-cluster-state"] == "new"
    assert config["initial-cluster-token"] == "vipmon-prod"
    assert config["enable-grpc-gateway"] is True  # off by default in a config file
    for side in ("client-transport-security", "peer-transport-security"):
        assert config[side] == {
            "cert-file": "/etc/vipmon/etcd/member.crt",
            "key-file": "/etc/vipmon/etcd/member.key",
            "trusted-ca-file": "/etc/vipmon/ca.crt",
            "client-cert-auth": True,
        }


def test_vipmon_toml_loads_through_the_settings(three):
    path = three / "n3" / "vipmon.toml"
    raw = tomllib.loads(path.read_text())
    password = (three / "admin" / "etcd-vipmon.password").read_text().strip()
    assert raw["etcd_password"] == password
    settings = load_settings(config_file=path, env={})
    assert settings.node_id == "n3"
    assert settings.cluster == "prod"
    assert settings.backend == "etcd"
    assert settings.etcd_endpoints == [f"https://10.0.1.{i}:2379" for i in (1, 2, 3)]
    assert settings.effective_advertise_url == "https://10.0.1.3:8700"
    assert settings.etcd_username == "vipmon"
    assert str(settings.etcd_key_file) == "/etc/vipmon/etcd-client.key"
    assert str(settings.tls_cert_file) == "/etc/vipmon/api.crt"


def test_two_nodes_and_a_witness(witness):
    assert sorted(p.name for p in witness.iterdir()) == ["admin", "n1", "n2", "w"]
    w = sorted(p.name for p in (witness / "w").iterdir())
    assert w == ["ca.crt", "etcd.conf.yml", "install.sh", "member.crt", "member.key",
                 "vipmon-etcd.service"]  # fmt: skip
    config = yaml.safe_load((witness / "w" / "etcd.conf.yml").read_text())
    assert config["initial-cluster"].count("=https://") == 3
    settings = load_settings(config_file=witness / "n1" / "vipmon.toml", env={})
    assert settings.etcd_endpoints[-1] == "https://10.0.1.9:2379"


def test_external_etcd_gives_no_members(tmp_path):
    out = tmp_path / "out"
    urls = ["--etcd-endpoint", "https://10.0.2.1:2379", "--etcd-endpoint", "https://10.0.2.2:2379"]
    assert bootstrap(out, "--host", "n1=10.0.1.1", "--host", "n2=10.0.1.2", *urls) == 0
    assert not (out / "n1" / "etcd.conf.yml").exists()
    settings = load_settings(config_file=out / "n2" / "vipmon.toml", env={})
    assert settings.etcd_endpoints == ["https://10.0.2.1:2379", "https://10.0.2.2:2379"]


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_ca_with_the_right_names_and_usages(three):
    ca = cert(three / "admin" / "ca.crt")
    member, api = cert(three / "n1" / "member.crt"), cert(three / "n1" / "api.crt")
    client = cert(three / "n1" / "etcd-client.crt")
    for leaf in (member, api, client, cert(three / "admin" / "admin.crt")):
        leaf.verify_directly_issued_by(ca)
    assert cert(three / "n2" / "ca.crt") == ca
    sans = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.1.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    eku = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    api_sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.1.1" in [str(ip) for ip in api_sans.get_values_for_type(x509.IPAddress)]
    # etcd's gateway answers HTTP 400 to a client certificate with a CN once auth is on.
    assert client.subject == x509.Name([])
    assert cert(three / "admin" / "admin.crt").subject == x509.Name([])
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_adc_config_is_adc_configs_output(three):
    text = (three / "adc" / "haproxy.cfg").read_text()
    assert "server n1 10.0.1.1:8080" in text
    assert "--tls" in text and "check-ssl" in text
    assert (three / "adc" / "ca.crt").read_bytes() == (three / "admin" / "ca.crt").read_bytes()


# -- secrets ----------------------------------------------------------------------


def leaks(out: Path) -> list[str]:
    """Every problem of the host bundles in ``out``: the CA's key or root password in a
    bundle, a private key or a secret readable by others."""
    admin = out / "admin"
    ca_key = (admin / "ca.key").read_bytes().strip()
    root = (admin / "etcd-root.password").read_bytes().strip()
    secrets = [(admin / n).read_bytes().strip() for n in ("etcd-vipmon.password", "admin.token")]
    problems = []
    for bundle in (p for p in out.iterdir() if p.is_dir() and p.name not in ("admin", "adc")):
        for path in sorted(bundle.rglob("*")):
            data = path.read_bytes()
            mode = stat.S_IMODE(path.stat().st_mode)
            if ca_key in data:
                problems.append(f"{path}: holds the CA's key")
            if root in data:
                problems.append(f"{path}: holds etcd's root password")
            secret = b"PRIVATE KEY" in data or any(s in data for s in secrets)
            if secret and mode & 0o077:
                problems.append(f"{path}: a secret with mode {mode:04o}")
    return problems


def test_no_bundle_holds_the_ca_key_or_a_key_others_can_read(three, witness):
    assert leaks(three) == []
    assert leaks(witness) == []
    for key in (three / "n1").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((three / "admin" / "ca.key").stat().st_mode) == 0o600


def test_the_leak_check_can_fail(tmp_path):
    out = tmp_path / "out"
    assert bootstrap(out, "--host", "n1=10.0.1.1") == 0
    assert leaks(out) == []
    os.chmod(out / "n1" / "api.key", 0o644)
    (out / "n1" / "extra.pem").write_bytes((out / "admin" / "ca.key").read_bytes())
    os.chmod(out / "n1" / "extra.pem", 0o600)
    found = leaks(out)
    assert any("api.key: a secret with mode 0644" in p for p in found)
    assert any("extra.pem: holds the CA's key" in p for p in found)


# -- add-host ---------------------------------------------------------------------


def test_add_host_joins_a_member_from_the_kept_ca_and_warns_of_an_even_count(tmp_path, capsys):
    out = tmp_path / "out"
    assert bootstrap(out, *THREE) == 0
    capsys.readouterr()
    assert (
        main(["bootstrap", "add-host", "--out", str(out), "--host", "n4=10.0.1.4", "--member"]) == 0
    )
    said = capsys.readouterr()
    assert said.err.count("\n") == 1 and said.err.startswith("warning: 4 etcd members"), said.err
    assert "member add n4 --peer-urls https://10.0.1.4:2380" in said.out
    config = yaml.safe_load((out / "n4" / "etcd.conf.yml").read_text())
    assert config["initial-cluster-state"] == "existing"
    assert config["initial-cluster"].endswith(",n4=https://10.0.1.4:2380")
    assert config["initial-cluster"].count("=https://") == 4
    cert(out / "n4" / "member.crt").verify_directly_issued_by(cert(out / "admin" / "ca.crt"))
    assert '"name": "n4"' in (out / "admin" / "plan.json").read_text()
    assert leaks(out) == []
    assert main(["bootstrap", "add-host", "--out", str(out), "--host", "n4=10.0.1.5"]) == 2
    err = capsys.readouterr().err
    assert err == "vipmon bootstrap: argument --host: duplicate name 'n4' (give --replace)\n"
    assert main(["bootstrap", "add-host", "--out", str(out), "--host", "n5=10.0.1.4"]) == 2
    assert "argument --host: duplicate address 10.0.1.4" in capsys.readouterr().err


def test_add_host_of_a_node_rewrites_the_adc_config_with_it(three, tmp_path, capsys):
    # Regression: add-host left adc/ as it was, so a new node that won the election was
    # a master no server of the load balancer pointed at, and the VIP served nothing.
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(three), str(out)], check=True, timeout=30)
    assert main(["bootstrap", "add-host", "--out", str(out), "--host", "n4=10.0.1.4"]) == 0
    assert "wrote " + str(out / "adc") + "/ with n4" in capsys.readouterr().out
    text = (out / "adc" / "haproxy.cfg").read_text()
    assert "server n4 10.0.1.4:8080 port 8700" in text and "server n1 10.0.1.1:8080" in text
    assert "--vip 10.0.1.100:80" in text and "check-ssl" in text
    assert " n4 10.0.1.4 0 " in (out / "adc" / "vipmon-servers.state").read_text()  # DOWN
    argv = ["bootstrap", "add-host", "--out", str(out), "--host", "n3=10.0.1.13", "--replace"]
    assert main(argv) == 0
    assert "server n3 10.0.1.13:8080" in (out / "adc" / "haproxy.cfg").read_text()


def test_add_host_without_member_and_replacing_a_witness(witness, tmp_path, capsys):
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(witness), str(out)], check=True, timeout=30)
    assert main(["bootstrap", "add-host", "--out", str(out), "--host", "n3=10.0.1.3"]) == 0
    assert not (out / "n3" / "etcd.conf.yml").exists()
    assert (out / "n3" / "vipmon.toml").exists()
    said = capsys.readouterr().out
    assert "member add" not in said
    assert not (out / "adc").exists() and "adc" not in said  # written only with --adc
    argv = ["bootstrap", "add-host", "--out", str(out), "--host", "w=10.0.1.10", "--replace"]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert said.err == ""
    assert "member remove <ID of w>" in said.out
    assert "member add w --peer-urls https://10.0.1.10:2380" in said.out
    assert not (out / "w" / "vipmon.toml").exists(), "a witness stays a witness"
    assert yaml.safe_load((out / "w" / "etcd.conf.yml").read_text())["initial-cluster-state"] == (
        "existing"
    )


def test_the_parser_every_vipmon_run_builds_does_not_load_the_bootstrap_libraries():
    """cryptography and yaml cost a node about 10 MB of RSS; only bootstrap needs them."""
    code = (
        "import sys, app.cli, app.server\n"
        "app.cli.build_parser()\n"
        "heavy = ('cryptography', 'yaml', 'app.bootstrap.pki')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
