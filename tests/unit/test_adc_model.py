"""Parsing the topology arguments of ``vipmon adc-config``."""

import pytest

from app.adc.model import AdcError, AdcNode, Endpoint, parse_endpoint, parse_node, parse_nodes


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("10.0.0.1:8080", "10.0.0.1", 8080, "10.0.0.1:8080"),
        ("node-1.example.com:80", "node-1.example.com", 80, "node-1.example.com:80"),
        ("[2001:db8::1]:443", "2001:db8::1", 443, "[2001:db8::1]:443"),
    ],
)
def test_endpoints(text, host, port, shown):
    endpoint = parse_endpoint(text, "--vip")
    assert endpoint == Endpoint(host, port)
    assert str(endpoint) == shown


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.1", "not HOST:PORT"),
        (":80", "not HOST:PORT"),
        ("10.0.0.1:0", "not a port number"),
        ("10.0.0.1:65536", "not a port number"),
        ("10.0.0.1:http", "not a port number"),
        ("2001:db8::1:80", "[ADDR]:PORT"),
        ("[2001:db8::1:80", "[ADDR]:PORT"),
        ("[not-v6]:80", "not an IPv6 address"),
        ("bad host:80", "not a host name"),
    ],
)
def test_bad_endpoints_name_the_argument(text, reason):
    with pytest.raises(AdcError) as info:
        parse_endpoint(text, "--vip")
    assert info.value.argument == "--vip"
    assert reason in info.value.reason


def test_node_with_and_without_monitor_port():
    assert parse_node("n1=10.0.0.1:8080", 8700) == AdcNode("n1", Endpoint("10.0.0.1", 8080), 8700)
    node = parse_node("n2=10.0.0.2:8080/8701", 8700)
    assert node.monitor == Endpoint("10.0.0.2", 8701)


@pytest.mark.parametrize(
    ("texts", "reason"),
    [
        ([], "at least one node"),
        (["10.0.0.1:8080"], "NAME=HOST:PORT"),
        (["=10.0.0.1:8080"], "1 to 63 characters"),
        (["n 1=10.0.0.1:8080"], "1 to 63 characters"),
        (["n1=10.0.0.1:8080/x"], "not a port number"),
        (["n1=10.0.0.1:8080", "n1=10.0.0.2:8080"], "given twice"),
        (["n1=10.0.0.1:8080", "n2=10.0.0.1:8080"], "given twice"),
    ],
)
def test_bad_nodes(texts, reason):
    with pytest.raises(AdcError) as info:
        parse_nodes(texts, 8700)
    assert info.value.argument == "--node"
    assert reason in info.value.reason
