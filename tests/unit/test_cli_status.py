"""`vipmon status` renders /cluster and /role as a table."""

from app.cli import format_status


def test_status_table_marks_the_master_and_its_term():
    cluster = {
        "leader": "n2",
        "term": 12,
        "members": [
            {"id": "n1", "role": "STANDBY", "is_master": False, "url": "http://h1:8700"},
            {"id": "n2", "role": "MASTER", "is_master": True, "url": "http://h2:8700"},
        ],
    }
    text = format_status(cluster, {"node": "n1", "role": "STANDBY"})
    lines = text.splitlines()
    assert lines[0].split() == ["MEMBER", "ROLE", "TERM", "URL"]
    assert lines[1].split() == ["n1", "STANDBY", "http://h1:8700"]
    assert lines[2].split() == ["n2", "MASTER", "12", "http://h2:8700"]
    assert lines[-1] == "leader: n2  term: 12  asked: n1 (STANDBY)"


def test_status_without_a_master():
    text = format_status(
        {"leader": None, "term": 0, "members": []}, {"node": "n1", "role": "UNKNOWN"}
    )
    assert text.splitlines()[-1] == "leader: none  term: 0  asked: n1 (UNKNOWN)"
