"""deploy/container: the image is built (Debian base, ``--network none``) and run.

Containers use host networking and loopback ports only, and are removed by name.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support import podman as pm
from tests.support.nodes import wait_for
from tests.support.ports import free_port


def test_image_metadata(podman: pm.Podman, images: pm.Images):
    config = podman.inspect("image", images.vipmon)["Config"]
    print(f"image {images.vipmon}: {images.size_mb} MB on {images.base}")
    assert config["Entrypoint"] == ["vipmon"]
    assert config["Cmd"] == ["run"]
    assert config["User"] == "10001:10001"
    assert "8700/tcp" in config["ExposedPorts"]
    assert "/var/lib/vipmon" in config["Volumes"]
    # podman shows HEALTHCHECK (kept by --format docker) beside Config, docker inside it.
    image = podman.inspect("image", images.vipmon)
    probe = " ".join((image.get("Healthcheck") or config["Healthcheck"])["Test"])
    assert "/health/live" in probe
    assert "/monitor" not in probe


def _node(podman: pm.Podman, images: pm.Images, node: str, port: int, volume: str, *extra: str):
    return podman.container(
        pm.name(node),
        "--network",
        "host",
        "--read-only",
        "-v",
        f"{volume}:/var/lib/vipmon",
        "-e",
        f"VIPMON_NODE_ID={node}",
        "-e",
        "VIPMON_HOST=127.0.0.1",
        "-e",
        f"VIPMON_PORT={port}",
        *extra,
        images.vipmon,
    )


def _monitor(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/monitor", timeout=0.5).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.parametrize("init", [False, True], ids=["vipmon-pid1", "with-init"])
def test_sigterm_to_the_container_hands_over(podman: pm.Podman, images: pm.Images, init: bool):
    """Two containers share the embedded store on one volume; ``podman stop`` the master.

    The stopped one must exit 0 by its own SIGTERM handler (a kill after the timeout
    exits 137), and the other must take the role.
    """
    volume = pm.name(f"state-{int(init)}")
    extra = ("--init",) if init else ()
    ports = {"c1": free_port(), "c2": free_port()}
    try:
        podman.run("volume", "create", volume)
        with (
            _node(podman, images, "c1", ports["c1"], volume, *extra) as c1,
            _node(podman, images, "c2", ports["c2"], volume, *extra) as c2,
        ):
            names = {"c1": c1, "c2": c2}
            try:
                wait_for(
                    lambda: sorted(_monitor(p) for p in ports.values()) == [200, 503],
                    timeout=60,
                    interval=0.1,
                    what="one master among the containers",
                )
            except AssertionError as exc:
                seen = {n: _monitor(p) for n, p in ports.items()}
                logs = {n: podman.logs(c) for n, c in names.items()}
                raise AssertionError(f"{exc}; /monitor {seen}; logs {logs}") from None
            master = next(n for n, p in ports.items() if _monitor(p) == 200)
            other = "c2" if master == "c1" else "c1"
            pid1 = podman.run("exec", names[master], "cat", "/proc/1/cmdline").stdout.split("\0")
            assert pid1[0].endswith("-init") is init, pid1  # podman's catatonit with --init
            assert any(arg.endswith("vipmon") for arg in pid1), pid1
            assert podman.run("healthcheck", "run", names[master], check=False).returncode == 0
            live = httpx.get(f"http://127.0.0.1:{ports[other]}/health/live", timeout=1)
            assert live.status_code == 200

            podman.run("stop", "--time", "30", names[master], timeout=60)
            state = podman.inspect("container", names[master])["State"]
            logs = podman.logs(names[master])
            assert state["ExitCode"] == 0, logs
            assert "SIGTERM received: resigning" in logs
            wait_for(
                lambda: _monitor(ports[other]) == 200,
                timeout=15,
                interval=0.05,
                what=f"{other} to take over",
            )
    finally:
        podman.run("volume", "rm", "--force", volume, check=False)


# -- the kernel fence's prerequisites: nftables in the image, the capability at run time --


def test_image_carries_nft_and_libnftables(podman: pm.Podman, images: pm.Images):
    version = podman.run(*pm.isolated(images.vipmon, entrypoint="nft"), "--version")
    assert version.stdout.startswith("nftables v"), version.stdout
    # The interpreter vipmon runs on (the venv's python3 comes first on PATH) loads it.
    load = podman.run(
        *pm.isolated(images.vipmon, entrypoint="python3"),
        "-c",
        "import ctypes, sys; ctypes.CDLL('libnftables.so.1'); print(sys.executable)",
    )
    assert load.stdout.strip() == "/opt/vipmon/bin/python3"


@pytest.mark.parametrize("cap_add", [False, True], ids=["no-cap", "cap-add-NET_ADMIN"])
def test_cap_add_net_admin_reaches_the_image_user(
    podman: pm.Podman, images: pm.Images, cap_add: bool
):
    """``--cap-add NET_ADMIN`` is all the image's uid 10001 needs to write nftables.

    podman passes an added capability to a non-root user as an ambient one; without it,
    libnftables fails as vipmon's fence would. The table goes into the container's own
    network namespace and disappears with it.
    """
    run_args = ("--cap-add", "NET_ADMIN") if cap_add else ()
    result = pm.libnftables(
        podman,
        *pm.isolated(images.vipmon, *run_args, entrypoint="python3"),
        commands="add table inet vipmon_probe\nlist tables",
    )
    print(result)
    assert result["uid"] == 10001
    if cap_add:
        assert result["cap_eff"] == pm.CAP_NET_ADMIN  # that one and no other
        assert result["rc"] == 0, result["error"]
        assert "table inet vipmon_probe" in result["output"]
    else:
        assert result["cap_eff"] == 0
        assert result["rc"] != 0
        assert "Operation not permitted" in result["error"]
