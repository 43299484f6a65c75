"""deploy/prometheus: the rules pass ``promtool check`` and their own ``promtool test
rules`` cases, every alert points to a runbook section of the README, and the Grafana
dashboard has what an import needs. (The dashboard's queries run against a real
Prometheus in tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.prometheus import PROM, REPO, RULES, dashboard

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool from Debian's prometheus (make system-deps)"
)
ALERTS = {
    "VipmonNoMaster",
    "VipmonSplitBrain",
    "VipmonFailoversTooFrequent",
    "VipmonStoreUnreachable",
    "VipmonRenewLatencyHigh",
    "VipmonMaintenanceLeftOn",
    "VipmonPausedLeftOn",
    "VipmonNoStandbyCanTakeOver",
    "VipmonNodeDown",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROM, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@needs_promtool
def test_promtool_checks_the_rules_and_the_scrape_config():
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", "scrape.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass():
    files = sorted(p.name for p in (PROM / "tests").glob("*.yml"))
    run = promtool("test", "rules", *(f"tests/{name}" for name in files))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("SUCCESS") == len(files)


def test_every_alert_is_tested_firing_and_quiet():
    """Each alert has a case where it fires and one where it must stay quiet."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


def test_every_alert_has_a_runbook_section_in_the_readme():
    readme = (REPO / "README.md").read_text()
    anchors = {
        "#" + heading_anchor(line.lstrip("#").strip())
        for line in readme.splitlines()
        if line.startswith("#")
    }
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == ALERTS
    for rule in alerts:
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"README.md#alert-{rule['alert'].lower()}"
        assert runbook.removeprefix("README.md") in anchors, runbook
        assert rule["labels"]["severity"] in {"page", "warning"}


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def test_the_dashboard_has_what_a_grafana_import_needs():
    d = dashboard()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    (source,) = d["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    (cluster,) = d["templating"]["list"]
    assert cluster["name"] == "cluster" and "vipmon_info" in cluster["definition"]
    ids = [p["id"] for p in d["panels"]]
    assert len(set(ids)) == len(ids)
    kinds = {p["type"] for p in d["panels"]}
    required = {r["id"] for r in d["__requires"] if r["type"] == "panel"}
    assert kinds <= required
    for panel in d["panels"]:
        assert panel["title"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["expr"].strip()
    shown = {p["title"] for p in d["panels"]}
    assert {"Role per node", "Term", "Failover gaps (last hour)", "Store errors"} <= shown
