"""Write readings, aggregates and alarm points straight into InfluxDB for view tests.

The alarm points follow the documented schema (ARCHITECTURE.md: ``alarms`` with tags
site, device, metric, rule, severity, state and fields alarm_id, value, threshold,
message), so the views are tested before the gateway writes alarms itself.

Reading what is stored: name measurements through the client's layout
(``f"SELECT ... FROM {q.layout.aggregates}"``, :class:`~gateway.influx.layout.StorageLayout`),
never bare, so that a test reads the retention policy the gateway wrote to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from gateway.influx.layout import StorageLayout
from gateway.influx.lineprotocol import escape_tag, field_string
from gateway.influx.rejections import measurement_of
from gateway.influx.setup import setup_influx
from gateway.settings import InfluxSettings


def ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


def write(influx: InfluxSettings, lines: list[str]) -> None:
    """Write ``lines`` (ns) as the gateway would: database and retention policies made
    as at its start, each line in its measurement's policy."""
    report = setup_influx(influx)
    assert report.ok, report.to_text()
    layout = StorageLayout.of(influx)
    by_policy: dict[str | None, list[str]] = {}
    for line in lines:
        by_policy.setdefault(layout.policy(measurement_of(line)), []).append(line)
    with httpx.Client(base_url=influx.url, timeout=30) as http:
        for policy, batch in by_policy.items():
            params = {"db": influx.database} | ({} if policy is None else {"rp": policy})
            for i in range(0, len(batch), 5000):
                resp = http.post("/write", params=params, content="\n".join(batch[i : i + 5000]))
                assert resp.status_code == 204, resp.text


def reading_line(
    site: str, device: str, sensor: str, metric: str, value: float, when: datetime
) -> str:
    return (
        f"readings,device={escape_tag(device)},metric={escape_tag(metric)},"
        f"sensor={escape_tag(sensor)},site={escape_tag(site)}"
        f" value={float(value)!r},seq=1i {ns(when)}"
    )


def aggregate_line(
    site: str, device: str, sensor: str, metric: str, window: str, mean: float, when: datetime
) -> str:
    return (
        f"aggregates,device={escape_tag(device)},metric={escape_tag(metric)},"
        f"sensor={escape_tag(sensor)},site={escape_tag(site)},window={window}"
        f" count=10i,mean={mean!r},min={mean - 1!r},max={mean + 1!r},first={mean!r},last={mean!r}"
        f" {ns(when)}"
    )


def alarm_line(
    *,
    site: str,
    device: str,
    metric: str,
    rule: str,
    severity: str,
    state: str,
    alarm_id: str,
    when: datetime,
    value: float = 99.0,
    threshold: float = 50.0,
    message: str = "too hot",
) -> str:
    return (
        f"alarms,device={escape_tag(device)},metric={escape_tag(metric)},rule={escape_tag(rule)},"
        f"severity={severity},site={escape_tag(site)},state={state}"
        f" alarm_id={field_string(alarm_id)},value={value!r},threshold={threshold!r},"
        f"message={field_string(message)} {ns(when)}"
    )
