"""The committed spec is exactly what the app serves."""

from app.http.spec import render_spec
from tests.support.nodes import REPO


def test_committed_spec_matches_the_app():
    committed = (REPO / "openapi" / "openapi.json").read_text()
    assert committed == render_spec(), "run `vipmon openapi` and commit openapi/openapi.json"


def test_spec_lists_every_endpoint_and_method():
    import json

    paths = json.loads(render_spec())["paths"]
    for path in ("/monitor", "/", "/monitor/standby"):
        assert {"get", "head", "options"} <= set(paths[path])
    for path in ("/role", "/cluster", "/health/live", "/health/ready"):
        assert "get" in paths[path]
    assert set(paths["/ui"]) == {"get"}
    assert set(paths["/ui"]["get"]["responses"]["200"]["content"]) == {"text/html"}
