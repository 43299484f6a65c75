"""A real open-source nginx for tests: a minimal nginx.conf around a generated snippet.

nginx runs with ``master_process off`` so that it is one process, stopped by
its PID; its pid file, logs and temp paths live in the test's directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.support.haproxy import Foreground

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_WRAPPER = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {snippet};
}}
"""

_PLUS_ONLY = re.compile(
    r"^\s*health_check\b[^;]*;\s*$|^match\s+\S+\s*\{.*?^\}\s*$", re.MULTILINE | re.DOTALL
)


def wrap(workdir: Path, snippet_text: str) -> Path:
    """Write the snippet and a full nginx.conf including it; return the conf path."""
    snippet = workdir / "vipmon.conf"
    snippet.write_text(snippet_text)
    conf = workdir / "nginx.conf"
    conf.write_text(_WRAPPER.format(dir=workdir, snippet=snippet))
    return conf


def strip_plus_only(text: str) -> str:
    """Drop the NGINX Plus directives (``health_check``, ``match {}``) open-source nginx lacks."""
    return _PLUS_ONLY.sub("", text)


def check_config(workdir: Path, snippet_text: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on the snippet wrapped in a full config: returncode 0 when valid."""
    conf = wrap(workdir, snippet_text)
    return subprocess.run(
        [NGINX, "-t", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class Nginx(Foreground):
    """One nginx process serving ``snippet_text``; ``url`` is the VIP it listens on."""

    name = "nginx"

    def __init__(self, workdir: Path, snippet_text: str, url: str) -> None:
        conf = wrap(workdir, snippet_text)
        self.argv = [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        self.log_path = workdir / "nginx.out"
        self.error_log = workdir / "error.log"
        self.url = url

    def ready(self) -> bool:
        try:
            httpx.get(self.url + "/monitor", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def logs(self) -> list[Path]:
        return [self.log_path, self.error_log]
