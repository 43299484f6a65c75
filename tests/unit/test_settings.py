"""Settings: validated once, refused with the field and the reason."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import SettingsError
from app.settings import load_settings, unknown_variables
from tests.support.nodes import REPO


def refused(cli=None, env=None, config=None) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(cli or {}, config, env=env or {})
    return info.value


def test_defaults():
    s = load_settings({}, env={})
    assert (s.backend, s.port, s.lease_ttl, s.lease_margin, s.cluster) == (
        "local",
        8700,
        2,
        0.5,
        "vipmon",
    )
    assert s.effective_renew_interval == 0.5
    assert s.effective_store_timeout == 0.5


@pytest.mark.parametrize(
    ("cli", "field", "words"),
    [
        ({"backend": "zookeeper"}, "backend", "'local' or 'etcd'"),
        ({"lease_ttl": "1"}, "lease_ttl", "no room"),
        ({"lease_ttl": "2", "lease_margin": "2"}, "lease_margin", "no validity"),
        ({"lease_ttl": "2", "renew_interval": "1.2"}, "lease_ttl", "renew_interval"),
        ({"etcd_endpoints": "127.0.0.1:2379"}, "etcd_endpoints", "not an http"),
        ({"etcd_endpoints": "http://h:99999"}, "etcd_endpoints", "bad port"),
        ({"port": "0"}, "port", "greater than or equal to 1"),
        ({"node_id": "bad id!"}, "node_id", "characters"),
        ({"etcd_cert_file": "/c.pem"}, "etcd_cert_file", "etcd_key_file"),
        ({"advertise_url": "n1:8700"}, "advertise_url", "not an http"),
    ],
)
def test_bad_values_name_the_field_and_the_reason(cli, field, words):
    err = refused(cli)
    assert err.field == field
    assert words in err.reason


def test_env_and_cli_precedence(tmp_path: Path):
    cfg = tmp_path / "vipmon.toml"
    cfg.write_text('cluster = "from-file"\nport = 9000\nlease-ttl = 4\n')
    s = load_settings({"port": "9100"}, cfg, env={"VIPMON_CLUSTER": "from-env"})
    assert (s.cluster, s.port, s.lease_ttl) == ("from-env", 9100, 4)


def test_env_splits_endpoints():
    s = load_settings({}, env={"VIPMON_ETCD_ENDPOINTS": "http://a:1, https://b:2/"})
    assert s.etcd_endpoints == ["http://a:1", "https://b:2"]


def test_yaml_config(tmp_path: Path):
    cfg = tmp_path / "vipmon.yaml"
    cfg.write_text("backend: etcd\netcd_endpoints: [http://127.0.0.1:2379]\n")
    assert load_settings({}, cfg, env={}).backend == "etcd"


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("missing.toml", None, "cannot read"),
        ("bad.toml", "port = [", "not valid"),
        ("bad.yaml", "- a\n- b\n", "mapping"),
        ("vipmon.ini", "port=1", ".toml, .yaml"),
        ("typo.toml", "prot = 1", "unknown setting"),
    ],
)
def test_bad_config_files(tmp_path: Path, name, text, words):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    err = refused(config=path)
    assert words in err.reason


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "app", "run", "--backend", "zookeeper"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "vipmon: invalid setting 'backend': Input should be 'local' or 'etcd'"
    ]


def test_cli_refuses_a_state_dir_it_cannot_create(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "run",
            "--state-dir",
            str(blocker / "sub"),
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "invalid setting 'state_dir'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("host", "field"),
    [("256.1.1.1", "host"), ("192.0.2.7", "host"), ("127.0.0.1", "port")],
)
def test_a_bind_failure_names_the_field_at_fault(tmp_path: Path, host: str, field: str):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]  # taken: only the last case gets as far as the port
    try:
        args = ["run", "--host", host, "--port", str(port), "--state-dir", str(tmp_path / "s")]
        proc = subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        taken.close()
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vipmon: invalid setting '{field}': cannot listen on {host}:{port}")


def test_an_unknown_vipmon_variable_is_named_with_a_near_match():
    lines = unknown_variables(
        {"VIPMON_LEASE_TLL": "5", "VIPMON_PORT": "1", "VIPMON_ROLE": "MASTER", "HOME": "/"}
    )
    assert lines == [
        "environment variable VIPMON_LEASE_TLL names no setting and is ignored;"
        " did you mean VIPMON_LEASE_TTL?"
    ]


def test_the_variables_hooks_receive_are_not_called_unknown():
    """A hook that runs ``vipmon`` inherits VIPMON_ROLE and the rest: none may be warned about."""
    from app.hooks import HookRunner
    from app.role import Role

    runner = HookRunner(load_settings({"node_id": "n1", "on_master": "true"}, env={}))
    hook = runner._hook("on_master", "true", Role.STANDBY, Role.MASTER, 7, "why")
    given = {k: v for k, v in hook.env.items() if k.startswith("VIPMON_")}
    assert len(given) == 7
    assert unknown_variables(given) == []


TOKEN_A, TOKEN_B = "a" * 20, "b" * 20


def test_a_token_file_flag_sets_the_token_variable_aside(tmp_path: Path):
    """Issue 20: an exported VIPMON_ADMIN_TOKEN must not make --admin-token-file exit 2."""
    token = tmp_path / "token"
    token.write_text(TOKEN_A + "\n")
    s = load_settings({"admin_token_file": str(token)}, env={"VIPMON_ADMIN_TOKEN": TOKEN_B})
    assert s.admin_token is None
    assert s.read_admin_token() == TOKEN_A
    assert s.set_aside == (
        "VIPMON_ADMIN_TOKEN is ignored: --admin-token-file is given "
        "(flags beat the environment, which beats the config file)",
    )


def test_a_token_flag_sets_the_token_file_variable_aside(tmp_path: Path):
    s = load_settings(
        {"admin_token": TOKEN_A}, env={"VIPMON_ADMIN_TOKEN_FILE": str(tmp_path / "none")}
    )
    assert (s.read_admin_token(), s.admin_token_file) == (TOKEN_A, None)
    assert [line.split(":")[0] for line in s.set_aside] == ["VIPMON_ADMIN_TOKEN_FILE is ignored"]


def test_a_variable_sets_the_config_file_key_aside(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(TOKEN_A)
    cfg = tmp_path / "vipmon.toml"
    cfg.write_text(f'admin-token = "{TOKEN_B}"\n')
    s = load_settings({}, cfg, env={"VIPMON_ADMIN_TOKEN_FILE": str(token)})
    assert (s.read_admin_token(), s.admin_token) == (TOKEN_A, None)
    assert s.set_aside == (
        f"admin_token in {cfg} is ignored: VIPMON_ADMIN_TOKEN_FILE is set "
        "(flags beat the environment, which beats the config file)",
    )


def test_both_of_a_pair_from_one_source_are_still_refused(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text(TOKEN_A)
    err = refused(env={"VIPMON_ADMIN_TOKEN": TOKEN_B, "VIPMON_ADMIN_TOKEN_FILE": str(token)})
    assert (err.field, err.reason) == ("admin_token_file", "give the token or the file, not both")
    assert load_settings({}, env={"VIPMON_ADMIN_TOKEN": TOKEN_B}).set_aside == ()


def test_run_with_the_token_variable_and_the_file_flag_logs_one_info_line(tmp_path: Path):
    """The README's CLI users export VIPMON_ADMIN_TOKEN; `vipmon run --admin-token-file` wins.

    The node is stopped by a port already taken, once it is past the settings and logging.
    """
    token = tmp_path / "token"
    token.write_text(TOKEN_A)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        args = ["run", "--host", "127.0.0.1", "--port", str(port), "--node-id", "n1"]
        args += ["--state-dir", str(tmp_path / "s"), "--admin-token-file", str(token)]
        proc = subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", "VIPMON_ADMIN_TOKEN": TOKEN_B},
        )
    finally:
        taken.close()
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("vipmon: invalid setting 'port': cannot listen on")
    notes = [line for line in lines if "VIPMON_ADMIN_TOKEN" in line]
    assert len(notes) == 1 and " INFO " in notes[0]
    assert notes[0].endswith(
        "VIPMON_ADMIN_TOKEN is ignored: --admin-token-file is given "
        "(flags beat the environment, which beats the config file)"
    )
    assert TOKEN_B not in proc.stderr and TOKEN_A not in proc.stderr
