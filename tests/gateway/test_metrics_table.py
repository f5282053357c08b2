"""GatewayMetrics is built from its table: every declared metric exists and is exposed."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.observability.metrics import METRICS, GatewayMetrics


def test_every_declared_metric_is_made_from_the_table() -> None:
    metrics = GatewayMetrics()
    declared = {
        name
        for name, kind in GatewayMetrics.__annotations__.items()
        if kind in ("Counter", "Gauge", "Histogram")
    }
    assert declared == {spec.attr for spec in METRICS}
    for spec in METRICS:
        made = getattr(metrics, spec.attr)
        assert isinstance(made, spec.kind)
        assert isinstance(made, Counter | Gauge | Histogram)


def test_the_exposition_names_every_metric() -> None:
    metrics = GatewayMetrics()
    metrics.messages_in.inc(2)
    metrics.deadletters.labels("bad_json").inc()
    text = metrics.render().decode()
    assert "sensorgate_messages_in_total 2.0" in text
    assert 'sensorgate_deadletters_total{reason="bad_json"} 1.0' in text
    for spec in METRICS:
        assert f"# HELP {spec.name}" in text
