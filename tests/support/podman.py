"""podman for the deploy tests: its config, the images, and what a test started.

* :func:`engine` gives a :class:`Podman` whose calls carry a generated
  ``CONTAINERS_CONF`` (runc, and ulimits this host allows), made by
  ``deploy/container/build.sh conf``, the same recipe ``make image`` uses.
* :func:`build_images` makes the Debian bases once (kept while ``podman image
  exists`` finds them) and builds the vipmon image with ``--network none`` from
  wheels made on the host.
* :func:`libnftables` runs, inside a container, what the kernel fence does: load
  ``libnftables.so.1`` with ctypes and send it commands; it answers with the result
  and the process's uid and effective capabilities.
* Containers, pods and volumes are named ``vipmon-test-<run>-...`` and removed by
  name in the tests' ``finally``; nothing is matched by pattern.

When podman is missing or cannot run here, the tests FAIL with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import REPO, wait_for

BUILD_SH = REPO / "deploy" / "container" / "build.sh"
BASE_IMAGE = "localhost/vipmon-base:bookworm-nft"
TOOLS_IMAGE = "localhost/vipmon-tools:bookworm"
TOOLS_PACKAGES = "etcd-server,haproxy"
RUN_ID = uuid.uuid4().hex[:8]


def name(suffix: str) -> str:
    """A container/pod/volume name unique to this test run."""
    return f"vipmon-test-{RUN_ID}-{suffix}"


@dataclass(frozen=True)
class Podman:
    """The podman binary with the environment every call needs."""

    binary: str
    env: dict[str, str]
    build_dir: Path

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}"
            )
        return done

    def inspect(self, kind: str, ref: str) -> dict[str, Any]:
        data = json.loads(self.run(kind, "inspect", ref).stdout)
        return dict(data[0])

    def logs(self, container: str) -> str:
        done = self.run("logs", container, check=False, timeout=30)
        return (done.stdout + done.stderr)[-4000:]

    def remove(self, *containers: str) -> None:
        """``podman rm -f -v`` each container by name; missing ones are fine."""
        for container in containers:
            self.run("rm", "-f", "-v", "--time", "2", container, check=False, timeout=60)

    @contextlib.contextmanager
    def container(self, container: str, *run_args: str) -> Iterator[str]:
        """``podman run -d --name container run_args``; removed by name afterwards."""
        try:
            self.run("run", "-d", "--name", container, *run_args)
            yield container
        finally:
            self.remove(container)


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (Debian package {package}; `make system-deps`)")
    return path


def engine(build_dir: Path) -> Podman:
    """podman with its generated config in ``build_dir``; fails the test if it cannot run."""
    binary = _require("podman", "podman")
    _require("runc", "runc")
    env = {k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"}
    env["BUILD_DIR"] = str(build_dir)
    done = subprocess.run(
        ["sh", str(BUILD_SH), "conf"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    env["CONTAINERS_CONF"] = done.stdout.strip()
    podman = Podman(binary, env, build_dir)
    info = podman.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        pytest.fail(f"podman cannot run on this machine: {info.stderr.strip()[-2000:]}")
    return podman


def _build(podman: Podman, *args: str, extra_env: dict[str, str] | None = None) -> str:
    env = dict(podman.env, PYTHON=sys.executable, **(extra_env or {}))
    done = subprocess.run(
        ["sh", str(BUILD_SH), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"build.sh {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Images:
    vipmon: str
    base: str
    tools: str
    size_mb: int


def build_images(podman: Podman) -> Images:
    """The Debian bases (kept between runs) and this run's vipmon image."""
    _require("mmdebstrap", "mmdebstrap")
    began = time.monotonic()
    bases = [
        subprocess.Popen(
            ["sh", str(BUILD_SH), "base", image, *packages],
            env=podman.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for image, packages in ((BASE_IMAGE, []), (TOOLS_IMAGE, [TOOLS_PACKAGES]))
    ]
    for proc in bases:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"build.sh base: {err[-3000:]}"
        print(out.strip())
    bases_done = time.monotonic()
    image = f"localhost/vipmon-test:{RUN_ID}"
    line = _build(podman, "image", extra_env={"IMAGE": image, "BASE_IMAGE": BASE_IMAGE})
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(f"{line}; bases {bases_done - began:.1f} s, image {time.monotonic() - bases_done:.1f} s")
    return Images(image, BASE_IMAGE, TOOLS_IMAGE, size // 1_000_000)


CAP_NET_ADMIN = 1 << 12


def isolated(image: str, *run_args: str, entrypoint: str | None = None) -> tuple[str, ...]:
    """``podman run --rm`` arguments for a throw-away container of ``image``.

    ``--network none`` gives it a network namespace of its own, so nftables changes made
    in it never reach the host's ruleset; read-only root, no healthcheck timers.
    """
    override = ("--entrypoint", entrypoint) if entrypoint else ()
    return (
        "run",
        "--rm",
        "--no-healthcheck",
        "--network",
        "none",
        "--read-only",
        *run_args,
        *override,
        image,
    )


# The image's own binding (app.fence.kernel.open_context), without Libnftables' own
# capability check: the probe reports what the kernel itself answers.
_LIBNFTABLES_PROBE = """
import json, os, sys
from app.fence.kernel import open_context
lib, ctx = open_context()
rc = lib.nft_run_cmd_from_buffer(ctx, sys.argv[1].encode())
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status") if ":\\t" in line)
print(json.dumps({
    "rc": rc,
    "output": (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(),
    "error": (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(),
    "uid": os.getuid(),
    "cap_eff": int(status["CapEff"], 16),
}))
"""


def libnftables(podman: Podman, *prefix: str, commands: str) -> dict[str, Any]:
    """Run ``commands`` through libnftables in a container: ``podman *prefix python3 ...``.

    ``prefix`` is ``run --rm ... --entrypoint python3 IMAGE`` or ``exec CONTAINER python3``.
    Returns ``rc`` (0 on success), ``output``, ``error``, ``uid`` and ``cap_eff`` (the
    process's effective capability mask). Only ever point it at a network namespace the
    test owns (``--network none``, a pod): never the host's.
    """
    done = podman.run(*prefix, "-c", _LIBNFTABLES_PROBE, commands, timeout=60)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def wait_http(url: str, *, status: int = 200, timeout: float = 30) -> None:
    """Poll ``url`` until it answers ``status``."""
    import httpx

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code == status
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=timeout, interval=0.1, what=f"{url} to answer {status}")
