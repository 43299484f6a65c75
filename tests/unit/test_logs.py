"""configure_logging: the text line, the JSON object, the extra fields."""

import json
import logging
import re

import pytest

from app.logs import configure_logging
from app.role import Role


@pytest.fixture(autouse=True)
def restore_logging():
    """Take away the handlers configure_logging added; pytest's own come and go by phase."""
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    levels = (root.level, httpx_logger.level)
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(levels[0])
    httpx_logger.setLevel(levels[1])


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_text_format_names_the_node(capsys):
    """Issue 20: nodes run side by side in one terminal; each line says which one wrote it."""
    configure_logging("info", "text", "n2")
    logging.getLogger("vipmon.test").info("role %s -> %s", "STANDBY", "MASTER")
    [line] = lines(capsys)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} n2 INFO vipmon\.test: role STANDBY -> MASTER",
        line,
    )


def test_json_format_with_extra_fields(capsys):
    configure_logging("info", "json", "n2")
    logging.getLogger("vipmon.election").info(
        "role %s -> %s",
        "STANDBY",
        "MASTER",
        extra={
            "event": "transition",
            "node": "n1",
            "term": 42,
            "from_role": Role.STANDBY,
            "to_role": Role.MASTER,
            "reason": "acquired the leader key",
            "unlisted": "left out",
        },
    )
    [line] = lines(capsys)
    record = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("ts"))
    assert record == {
        "level": "INFO",
        "node_id": "n2",
        "logger": "vipmon.election",
        "msg": "role STANDBY -> MASTER",
        "event": "transition",
        "node": "n1",
        "term": 42,
        "from_role": "STANDBY",
        "to_role": "MASTER",
        "reason": "acquired the leader key",
    }


def test_json_hook_fields_and_exceptions(capsys):
    configure_logging("debug", "json", "n1")
    log = logging.getLogger("vipmon.hooks")
    log.warning("hook exited", extra={"hook": "on_master", "exit_code": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("hook crashed")
    first, second = (json.loads(line) for line in lines(capsys))
    assert (first["hook"], first["exit_code"], first["level"]) == ("on_master", 3, "WARNING")
    assert "exit_code" not in second
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]


def test_level_filters_and_httpx_is_quiet(capsys):
    configure_logging("warning", "json", "n1")
    logging.getLogger("vipmon.x").info("hidden")
    logging.getLogger("vipmon.x").warning("shown")
    assert [json.loads(line)["msg"] for line in lines(capsys)] == ["shown"]
    configure_logging("debug", "text", "n1")
    logging.getLogger("httpx").info("HTTP Request: POST http://etcd/v3/lease/keepalive")
    logging.getLogger("vipmon.x").debug("shown too")
    assert [line.rsplit(": ", 1)[1] for line in lines(capsys)] == ["shown too"]
    assert logging.getLogger("httpx").level == logging.WARNING


def test_reconfiguring_does_not_duplicate_lines(capsys):
    configure_logging("info", "text", "n1")
    configure_logging("info", "json", "n1")
    logging.getLogger("vipmon.x").info("once")
    assert len(lines(capsys)) == 1
