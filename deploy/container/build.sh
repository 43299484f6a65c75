#!/bin/sh
# Build the vipmon image with podman or docker, whichever is installed.
#
#   deploy/container/build.sh image            # FROM $BASE_IMAGE (default python:3.12-slim)
#   deploy/container/build.sh base [PACKAGES]  # a Debian base made locally with mmdebstrap
#   deploy/container/build.sh conf             # print the path of the podman config it uses
#
# The build runs with --network none: the wheels of vipmon and its dependencies are made
# on the host first (pip wheel), copied in, and installed with pip --no-index. nftables
# comes from the base (build.sh base puts it there); on a base without it, such as
# python:3.12-slim, the build installs it with apt-get and needs the Debian mirror.
#
# Environment: IMAGE (default localhost/vipmon:<version>), BASE_IMAGE, ENGINE (podman or
# docker), PYTHON (the host interpreter that makes the wheels), BUILD_DIR (default
# build/container), CONTAINERS_CONF (podman; generated in BUILD_DIR when unset).
set -eu

cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-$PWD/build/container}
PYTHON=${PYTHON:-python3}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.12-slim}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${IMAGE:-localhost/vipmon:$VERSION}

if [ -z "${ENGINE:-}" ]; then
    if command -v podman >/dev/null 2>&1; then ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then ENGINE=docker
    else echo "build.sh: neither podman nor docker is installed (make system-deps installs podman)" >&2; exit 1
    fi
fi

# podman here needs runc (crun fails on hybrid cgroups) and ulimits the host allows:
# its default nofile (1048576) is above the usual hard limit, so containers fail in setrlimit.
podman_conf() {
    if [ -z "${CONTAINERS_CONF:-}" ]; then
        mkdir -p "$BUILD_DIR"
        CONTAINERS_CONF=$BUILD_DIR/containers.conf
        nofile=$(ulimit -Hn)
        [ "$nofile" = unlimited ] && nofile=1048576
        cat > "$CONTAINERS_CONF.tmp" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
        mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
    fi
    export CONTAINERS_CONF
}

[ "$ENGINE" = podman ] && podman_conf

case "${1:-image}" in
conf)
    echo "${CONTAINERS_CONF:-}"
    ;;
base)
    # A Debian base from Debian's own packages, for machines without a container registry.
    # nftables (nft and libnftables1) is in it for the kernel fence.
    name=${2:-localhost/vipmon-base:bookworm-nft}
    packages=${3:-python3,python3-venv,ca-certificates,nftables}
    if "$ENGINE" image inspect "$name" >/dev/null 2>&1; then
        echo "$name exists"
        exit 0
    fi
    mkdir -p "$BUILD_DIR"
    rootfs=$BUILD_DIR/rootfs-$$.tar
    trap 'rm -f "$rootfs"' EXIT
    mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$rootfs"
    if ! out=$("$ENGINE" import --change 'CMD ["/bin/bash"]' "$rootfs" "$name" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    echo "$name built"
    ;;
image)
    context=$BUILD_DIR/context
    wheels=$context/wheels
    rm -rf "$context"
    mkdir -p "$wheels"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$wheels" .
    # podman writes OCI images by default, and OCI has no HEALTHCHECK: ask for Docker's.
    format=""
    # --layers=false: keep no intermediate images of the build stage behind.
    [ "$ENGINE" = podman ] && format="--format docker --layers=false"
    # The image carries nftables for the kernel fence. A base that has it already (build.sh
    # base) keeps the build off the network; any other base lets the Containerfile's
    # apt-get reach the Debian mirror (pip still installs from the wheels only).
    network="--network none"
    if ! "$ENGINE" run --rm --network none --entrypoint /bin/sh "$BASE_IMAGE" \
            -c 'command -v nft' >/dev/null 2>&1; then
        network=""
        echo "build.sh: $BASE_IMAGE has no nft; the build installs nftables from the network" >&2
    fi
    # shellcheck disable=SC2086
    "$ENGINE" build --quiet $network $format \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" \
        -f deploy/container/Containerfile -t "$IMAGE" "$context" >/dev/null
    size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
    echo "$IMAGE $(( size / 1000000 )) MB (base $BASE_IMAGE)"
    ;;
*)
    echo "usage: build.sh [image | base [NAME [PACKAGES]] | conf]" >&2
    exit 2
    ;;
esac
