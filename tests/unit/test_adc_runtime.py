"""Parsing HAProxy's ``show servers state`` answer."""

from app.adc.runtime import parse_servers_state

ANSWER = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight
3 be 1 n1 127.0.0.1 2 0 1 1 6 15 3 3 6 0 0 0 - 19001 - 0 0 - - 0
3 be 2 n2 127.0.0.1 0 0 1 1 9 13 2 0 6 0 0 0 - 19002 - 0 0 - - 0
3 be 3 n3 127.0.0.1 3 0 1 1 6 16 4 3 6 0 0 0 - 19003 - 0 0 - - 0
3 be 4 n4 127.0.0.1 2 8 1 1 6 15 3 3 6 0 0 0 - 19004 - 0 0 - - 0
3 be 5 n5 127.0.0.1 0 1 1 1 6 15 3 3 6 0 0 0 - 19005 - 0 0 - - 0

"""


def test_columns_six_and_seven():
    states = parse_servers_state(ANSWER)
    assert {n: (s.op_state, s.admin_state) for n, s in states.items()} == {
        "n1": (2, 0),
        "n2": (0, 0),
        "n3": (3, 0),
        "n4": (2, 8),
        "n5": (0, 1),
    }


def test_up_serving_and_labels():
    states = parse_servers_state(ANSWER)
    assert [n for n, s in states.items() if s.up] == ["n1", "n4"]
    assert [n for n, s in states.items() if s.serving] == ["n1"]
    assert [s.label for s in states.values()] == ["UP", "DOWN", "NOLB", "DRAIN", "MAINT"]


def test_empty_or_error_answers_give_no_servers():
    assert parse_servers_state("") == {}
    assert parse_servers_state("Can't find backend.\n") == {}
