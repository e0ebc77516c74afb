"""GET /metrics and the HTTP request metrics of the API (embedded stack, in process)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pigeon import metrics
from pigeon.bootstrap import Pigeon
from pigeon.metrics.families import make_families
from pigeon.metrics.lag import PartitionLag
from pigeon.metrics.state import State, StoreBacklog, state_families
from pigeon.metrics.summary import RecentRates
from tests.support import embedded_pigeon

NOTIFICATIONS = "/v1/notifications"
ONE_NOTIFICATION = "/v1/notifications/{notification_id}"


@pytest.fixture
async def pigeon(tmp_path: Path) -> AsyncIterator[Pigeon]:
    """Pigeon on the embedded stack, metrics on, started."""
    metrics.enable()
    async with embedded_pigeon(tmp_path) as app:
        yield app


@pytest.fixture
async def http(pigeon: Pigeon) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real API, in process."""
    transport = httpx.ASGITransport(app=pigeon.api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def requests(method: str, route: str, status: int) -> float:
    """How many requests this process has timed with these labels."""
    registry = metrics.registry()
    assert registry is not None
    labels = {"method": method, "route": route, "status": str(status)}
    return registry.get_sample_value("pigeon_http_request_duration_seconds_count", labels) or 0.0


async def test_requests_are_counted_by_route_template_and_status(
    pigeon: Pigeon, http: httpx.AsyncClient
) -> None:
    """A fast-path send, a routed 404 with an id in its path and an unknown path are each
    counted once under their route template (never the raw path) and status."""
    _, key = await pigeon.store.create_api_key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    before = (
        requests("POST", NOTIFICATIONS, 202),
        requests("GET", ONE_NOTIFICATION, 404),
        requests("GET", "<unmatched>", 404),
    )
    sent = await http.post(
        NOTIFICATIONS, json={"channel": "sms", "to": "+14155550100", "body": "hi"}, headers=auth
    )
    assert sent.status_code == 202
    missing = await http.get(f"{NOTIFICATIONS}/ntf_nothing_here", headers=auth)
    assert missing.status_code == 404
    nowhere = await http.get("/no/such/path/12345")
    assert nowhere.status_code == 404
    assert requests("POST", NOTIFICATIONS, 202) == before[0] + 1
    assert requests("GET", ONE_NOTIFICATION, 404) == before[1] + 1
    assert requests("GET", "<unmatched>", 404) == before[2] + 1
    assert requests("GET", "/no/such/path/12345", 404) == 0


async def test_metrics_are_prometheus_text_without_auth_and_not_in_the_openapi_schema(
    pigeon: Pigeon, http: httpx.AsyncClient
) -> None:
    """/metrics answers every family in Prometheus text with no API key; the schema omits it."""
    _, key = await pigeon.store.create_api_key("acme")
    accepted = await http.post(
        NOTIFICATIONS,
        json={"channel": "sms", "to": "+14155550101", "body": "hi"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert accepted.status_code == 202
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["pigeon_http_request_duration_seconds"].type == "histogram"
    assert families["pigeon_notifications"].type == "counter"
    assert families["pigeon_consumer_lag_messages"].type == "gauge"
    assert families["pigeon_dead_letters_waiting"].samples[0].value == 0
    accepted_total = [
        s.value
        for s in families["pigeon_notifications"].samples
        if s.name == "pigeon_notifications_total" and s.labels["status"] == "accepted"
    ]
    assert accepted_total and accepted_total[0] >= 1
    schema = (await http.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_the_snapshot_gives_lag_and_rates_as_python_data(
    pigeon: Pigeon, http: httpx.AsyncClient
) -> None:
    """The endpoint's snapshot (what the console reads) has every group's lag per
    partition, and a second look has rates over the time since the first."""
    endpoint = pigeon.metrics_endpoint()
    first = await endpoint.snapshot()
    groups = {item.group for item in first.lags}
    assert {"sms-sender", "usage-meter", "status-projector", "dead-letter-recorder"} <= groups
    assert all(item.lag == 0 for item in first.lags)
    assert first.window_seconds == 0  # nothing to compare with yet
    second = await endpoint.snapshot()
    assert second.window_seconds > 0
    assert set(second.rates) >= {"accepted", "delivered", "failed", "http_requests"}


def _base(name: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        name = name.removesuffix(suffix)
    return name


def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones() -> None:
    """docs/metrics.md lists exactly the metrics Pigeon makes, and every metric the Grafana
    dashboard queries is one of them."""
    families = make_families(CollectorRegistry())
    made = {_base(getattr(families, f.name)._name) for f in dataclasses.fields(families)}
    state = State([PartitionLag("g", "t", 0, 1)], StoreBacklog(0, 0, 0.0))
    made |= {f.name for f in state_families(state)}
    made |= {f.name for f in RecentRates().families({"accepted": 1.0})}
    docs = Path(__file__).parents[2] / "docs"
    documented = {
        _base(name)
        for name in re.findall(r"^\| `(pigeon_[a-z_]+)`", (docs / "metrics.md").read_text(), re.M)
    }
    assert documented == made
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    queried = {
        _base(name)
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        for name in re.findall(r"pigeon_[a-z_]+", target["expr"])
    }
    assert queried and queried <= made
