"""Every InfluxQL query of the Grafana provisioning runs on the real influxd and returns data.

The data is simulated end to end: the demo fleet publishes over MQTT, the real gateway
flow stores readings, aggregates and a dead letter; alarm points (raised,
acknowledged, cleared) are written in the documented schema. Grafana's macros and the
dashboards' variables are substituted as Grafana does for InfluxQL.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.mqtt import MqttLink, MqttSettings
from gateway.influx.layout import StorageLayout
from gateway.settings import InfluxSettings
from gateway.views import Views
from simulators.demo import start_demo_fleet
from tests.integration.gateway_kit import RunningGateway
from tests.integration.views_kit import alarm_line, write
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
_VAR = {"raw": "rp_raw", "aggregates": "rp_aggregates", "deadletters": "rp_deadletters"}
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def all_queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) for every panel target, annotation and query variable."""
    out = []
    panels = list(doc["panels"])
    while panels:
        p = panels.pop(0)
        panels.extend(p.get("panels", []))
        for t in p.get("targets", []):
            assert t.get("rawQuery") is True, f"panel {p['title']!r}: use raw InfluxQL"
            out.append((f"panel {p['title']!r} {t['refId']}", t["query"]))
    for a in doc["annotations"]["list"]:
        if a.get("builtIn"):
            continue
        out.append((f"annotation {a['name']!r}", a["query"]))
    for v in doc["templating"]["list"]:
        if v["type"] == "query":
            out.append((f"variable {v['name']!r}", v["query"]))
    return out


def constants(doc: dict[str, Any]) -> dict[str, str]:
    """The dashboard's constant variables (the retention policies), by name."""
    return {v["name"]: v["query"] for v in doc["templating"]["list"] if v["type"] == "constant"}


def substitute(query: str, values: dict[str, str]) -> str:
    q = query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "10s")
    for name in sorted(values, key=len, reverse=True):
        q = q.replace(f"${name}", values[name])
    left = re.findall(r"\$\w+", q)
    assert not left, f"unsubstituted {left} in {query!r}"
    return q


def test_provisioning_files_are_consistent() -> None:
    # No YAML parser among the dependencies: check the few lines that matter.
    ds = (GRAFANA / "provisioning/datasources/sensorgate.yaml").read_text()
    for line in (
        "type: influxdb",
        "uid: sensorgate-influx",
        "url: ${SENSORGATE_INFLUX_URL}",
        "dbName: ${SENSORGATE_INFLUX_DATABASE}",
    ):
        assert re.search(rf"^\s+{re.escape(line)}$", ds, re.M), line
    prov = (GRAFANA / "provisioning/dashboards/sensorgate.yaml").read_text()
    assert re.search(r"^\s+type: file$", prov, re.M)
    assert "path: /var/lib/grafana/dashboards/sensorgate" in prov
    uids = set()
    assert {p.stem for p in DASHBOARDS} == {"fleet", "device", "alarms"}
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        uids.add(doc["uid"])
        text = path.read_text()
        assert '"uid": "sensorgate-influx"' in text
        assert not re.search(r'"uid": "(?!sensorgate-influx|sensorgate-|-- Grafana --)', text)
        annotations = [a for a in doc["annotations"]["list"] if not a.get("builtIn")]
        assert annotations, f"{path.name}: no alarm annotation"
        # Every measurement is read in its retention policy, named by a hidden constant
        # that defaults to the gateway's own policy name.
        layout = StorageLayout.of(InfluxSettings())
        policies = {
            "rp_raw": "readings",
            "rp_aggregates": "aggregates",
            "rp_deadletters": "deadletters",
        }
        for name, value in constants(doc).items():
            assert value == layout.policy(policies[name]), (path.name, name)
        for where, query in all_queries(doc):
            for m in re.finditer(r'FROM "(\$?\w*)"\."(\w+)"|FROM "(\w+)"', query):
                assert m.group(3) is None, f"{path.name} {where}: {m.group(0)} has no policy"
                assert m.group(1) == f"${_VAR[layout.policy(m.group(2))]}", (path.name, where)
    assert len(uids) == 3


def test_every_grafana_query_returns_data(running_gateway: RunningGateway) -> None:
    settings = running_gateway.settings
    mqtt = MqttSettings(host=settings.mqtt.host, port=settings.mqtt.port)
    fleet = start_demo_fleet(mqtt, settings.topics, devices=3, interval_s=1.0)
    try:
        with MqttLink(mqtt) as link:
            link.publish(settings.topics.telemetry("demo", "demo-001"), b"not json").wait(5)
        now = datetime.now(UTC)
        lines = []
        for i, (state, severity) in enumerate(
            [
                ("active", "critical"),
                ("acknowledged", "critical"),
                ("cleared", "critical"),
                ("active", "warning"),
            ]
        ):
            lines.append(
                alarm_line(
                    site="demo",
                    device="demo-001",
                    metric="temperature",
                    rule="temp-high",
                    severity=severity,
                    state=state,
                    alarm_id=f"g{severity}",
                    when=now - timedelta(minutes=5 - i),
                )
            )
        write(settings.influx, lines)
        q = running_gateway.query
        wait_for(
            lambda: (
                bool(
                    q.query(
                        f'SELECT count("mean") FROM {q.layout.aggregates}'
                        " WHERE \"device\" = 'demo-001' AND \"window\" = '10s'"
                    )
                )
                and bool(q.query(f'SELECT count("size") FROM {q.layout.deadletters}'))
                and len(Views(q).fleet()) == 3
            ),
            90,
            "readings, aggregates and a dead letter",
        )
    finally:
        fleet.stop()

    choices = [
        {"site": "demo", "device": "demo-001", "window": "10s", "severity": "critical"},
        {"site": ".*", "device": ".*", "window": ".*", "severity": ".*"},  # "All"
    ]
    ran = 0
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for where, query in all_queries(doc):
            for values in choices:
                statement = substitute(query, {**constants(doc), **values})
                rows = q.query(statement)
                assert rows, f"{path.name} {where} returned nothing: {statement}"
                ran += 1
    assert ran >= 2 * 20
    fleet = json.loads((GRAFANA / "dashboards" / "fleet.json").read_text())
    (reporting,) = [p for p in fleet["panels"] if p["title"] == "Devices reporting"]
    rows = q.query(substitute(reporting["targets"][0]["query"], {**constants(fleet), **choices[0]}))
    assert rows[0]["count"] == 3
