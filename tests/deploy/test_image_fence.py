"""deploy/container with the kernel fence: ``vipmon run --fence-port`` in the image.

Without ``--cap-add NET_ADMIN`` vipmon refuses to start (exit 2, one line naming
``fence_port``); with it, the node becomes master, its table ``inet vipmon_<cluster>``
is in the container's network namespace, and the fenced port accepts the master's
connections. Every container runs with ``--network none``: a namespace of its own,
never the host's ruleset. Containers are removed by name.
"""

from __future__ import annotations

from tests.support import podman as pm
from tests.support.nodes import wait_for

CLUSTER = "fencetest"
APP_PORT = 8080
# The tmpfs state directory: U gives it to the image's user (uid 10001); podman's own
# tmpfs belongs to root, and vipmon refused it (state_dir: Permission denied).
NODE = (
    "--tmpfs",
    "/var/lib/vipmon:rw,U",
    "-e",
    f"VIPMON_CLUSTER={CLUSTER}",
    "-e",
    "VIPMON_HOST=127.0.0.1",
)
RUN_FENCED = ("run", "--node-id", "f1", "--backend", "local", "--fence-port", str(APP_PORT))

# Inside the container: is /monitor 200? Can a client connect to a listener on the port?
MONITOR = (
    "import urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen('http://127.0.0.1:8700/monitor', timeout=1).status)\n"
    "except Exception as exc:\n"
    "    print(getattr(exc, 'code', 0))\n"
)
CONNECT = (
    "import socket, sys\n"
    "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2).close()\n"
    "    print('accepted')\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__)\n"
)


def test_without_net_admin_vipmon_refuses_to_fence(podman: pm.Podman, images: pm.Images):
    done = podman.run(*pm.isolated(images.vipmon, *NODE), *RUN_FENCED, check=False, timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    print(lines)
    assert done.returncode == 2, lines
    assert len(lines) == 1, lines
    assert "fence_port" in lines[0]
    assert "unrecognized arguments" not in lines[0]  # the flag exists: a reason, not a usage


def test_with_net_admin_the_master_fences_in_its_own_namespace(
    podman: pm.Podman, images: pm.Images
):
    run_args = ("--no-healthcheck", "--network", "none", "--read-only", *NODE)
    with podman.container(
        pm.name("fence"), *run_args, "--cap-add", "NET_ADMIN", images.vipmon, *RUN_FENCED
    ) as ctr:

        def monitor() -> str:
            done = podman.run("exec", ctr, "python3", "-c", MONITOR, check=False, timeout=30)
            return done.stdout.strip()

        try:
            wait_for(lambda: monitor() == "200", timeout=30, interval=0.2, what="master")
        except AssertionError:
            print(podman.logs(ctr))
            raise
        table = podman.run("exec", ctr, "nft", "list", "table", "inet", f"vipmon_{CLUSTER}")
        assert str(APP_PORT) in table.stdout, table.stdout
        status = podman.run("exec", ctr, "vipmon", "fence", "status", "--cluster", CLUSTER)
        assert str(APP_PORT) in status.stdout, status.stdout
        app = podman.run("exec", ctr, "python3", "-c", CONNECT, str(APP_PORT))
        assert app.stdout.strip() == "accepted"
        podman.run("stop", "--time", "30", ctr, timeout=60)
        state = podman.inspect("container", ctr)["State"]
        assert state["ExitCode"] == 0, podman.logs(ctr)
