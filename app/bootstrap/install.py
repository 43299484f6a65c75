"""``install.sh``: the POSIX shell script that installs one host's bundle.

The script is made from :func:`app.bootstrap.files.placements`, so it installs
exactly the files the configs name, at the paths they name. It is idempotent:
a second run puts the same files in place and creates nothing twice.
``PREFIX=/root/dir ./install.sh`` (or ``--no-systemd``) installs only the files,
under that root, and leaves users and systemd alone.
"""

from __future__ import annotations

import shlex

from app.bootstrap.files import ETCD_UNIT, VIPMON_UNIT, Placement
from app.bootstrap.plan import (
    CONFIG_DIR,
    ETCD_BIN,
    ETCD_CONFIG_DIR,
    ETCD_DATA_DIR,
    VIPMON_BIN,
    Host,
)

_HEAD = """\
#!/bin/sh
# Installs the vipmon bundle of host {name} (cluster {cluster}); made by `vipmon bootstrap`.
#   sudo ./install.sh                creates the users, installs the files, enables and
#                                    starts the units
#   sudo ./install.sh --no-systemd   the same, without systemctl
#   PREFIX=/some/root ./install.sh   only the files, under /some/root: no users, no systemctl
# Running it again installs the same files again and changes nothing else; after a change
# of files, restart the units yourself (systemctl restart vipmon: a master hands over).
set -eu
cd "$(dirname "$0")"
PREFIX="${{PREFIX:-}}"
SYSTEMD=yes
for arg in "$@"; do
    case "$arg" in
        --no-systemd) SYSTEMD=no ;;
        *) echo "install.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done
OWNERS=yes
if [ -n "$PREFIX" ]; then SYSTEMD=no; OWNERS=no; fi

user() {{  # user NAME: a system user and group, once
    [ "$OWNERS" = yes ] || return 0
    id -u "$1" >/dev/null 2>&1 && return 0
    useradd --system --user-group --no-create-home --home-dir /nonexistent \\
        --shell /usr/sbin/nologin "$1"
}}
place_dir() {{  # place_dir MODE OWNER DIR
    install -d -m "$1" "$PREFIX$3"
    if [ "$OWNERS" = yes ]; then chown "$2:$2" "$PREFIX$3"; fi
}}
place() {{  # place MODE OWNER FILE DEST
    install -m "$1" "$3" "$PREFIX$4"
    if [ "$OWNERS" = yes ]; then chown "$2:$2" "$PREFIX$4"; fi
}}
"""


def install_script(cluster: str, host: Host, files: list[Placement]) -> str:
    """The text of ``host``'s ``install.sh``."""
    lines = [_HEAD.format(name=host.name, cluster=cluster)]
    needs = [(host.member, ETCD_BIN, "apt-get install etcd-server")]
    needs += [
        (host.node, VIPMON_BIN, "python3 -m venv /opt/vipmon && /opt/vipmon/bin/pip install vipmon")
    ]
    for wanted, binary, how in needs:
        if wanted:
            lines.append(
                f'if [ "$SYSTEMD" = yes ] && [ ! -x {binary} ]; then\n'
                f'    echo "install.sh: {binary} is missing: {how}" >&2; exit 1\nfi'
            )
    users = (["vipmon-etcd"] if host.member else []) + (["vipmon"] if host.node else [])
    lines += [f"user {u}" for u in users]
    lines.append(f"place_dir 0755 root {CONFIG_DIR}")
    if host.member:
        lines.append(f"place_dir 0755 root {ETCD_CONFIG_DIR}")
        lines.append(f"place_dir 0700 vipmon-etcd {ETCD_DATA_DIR}")
    lines.append("place_dir 0755 root /etc/systemd/system")
    for f in files:
        lines.append(f"place {f.mode:04o} {f.owner} {shlex.quote(f.name)} {shlex.quote(f.path)}")
    units = ([ETCD_UNIT] if host.member else []) + ([VIPMON_UNIT] if host.node else [])
    lines.append('if [ "$SYSTEMD" = yes ]; then')
    lines.append("    systemctl daemon-reload")
    for unit in units:
        lines.append(f"    systemctl enable {unit}")
        # --no-block: a new etcd member is ready only once its peers have started too.
        lines.append(f"    systemctl start --no-block {unit}")
    lines.append("fi")
    where = "${PREFIX:-/}"
    lines.append(f'echo "installed the bundle of {host.name} under {where}"')
    return "\n".join(lines) + "\n"
