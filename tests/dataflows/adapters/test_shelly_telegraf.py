"""Shelly and Telegraf on payloads from their documentation.

Shelly Gen1: https://shelly-api-docs.shelly.cloud/gen1/#shelly-plug-plugs-mqtt
(``shellies/shellyplug-s-<deviceid>/relay/0/power`` in W, ``.../relay/0/energy`` "in
Watt-minute", ``.../relay/0`` ``on``/``off``/``overpower``, retained ``.../online``
``true``/``false``) and the H&T's ``sensor/temperature``. Gen2/Gen3:
https://shelly-api-docs.shelly.cloud/gen2/General/Notifications (``<id>/events/rpc``,
``NotifyStatus`` with ``params.ts``, components ``switch:0`` ...) and the Switch
component's status (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch:
``apower``, ``voltage``, ``current``, ``aenergy.total`` in Wh, ``temperature.tC``).

Telegraf: the JSON serializer's examples
(https://docs.influxdata.com/telegraf/v1/data_formats/output/json/: ``{"fields":
{"field_1": 30, ...}, "name": "docker", "tags": {"host": "raynor"}, "timestamp":
1458229140}`` and the ``metrics`` batch form), ``outputs.mqtt`` topics
(https://docs.influxdata.com/telegraf/v1/output-plugins/mqtt/) and line protocol
(https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/).
"""

from __future__ import annotations

import pytest
from adapter_kit import NOW, one, rows, run, units

from dataflows.adapters.lineproto import LineError, parse_lines

PLUG = "shellies/shellyplug-s-C18B12"


def shelly(**options: object):
    return one("shelly", site="home", **options)


def test_shelly_gen1_power_energy_and_relay():
    aset = shelly()
    power = run(aset, f"{PLUG}/relay/0/power", "49.97")
    assert rows(power) == {("relay:0", "power"): 49.97}
    assert (power.telemetry[0].device, power.telemetry[0].t_us) == ("shellyplug-s-C18B12", [NOW])
    energy = run(aset, f"{PLUG}/relay/0/energy", "600")
    assert rows(energy) == {("relay:0", "energy"): 10.0}  # 600 Watt-minutes
    assert units(energy) == {("relay:0", "energy"): "Wh"}
    assert rows(run(aset, f"{PLUG}/relay/0", "on")) == {("relay:0", "state"): 1.0}
    over = run(aset, f"{PLUG}/relay/0", "overpower")
    assert over.ok
    assert not over.telemetry
    assert "not a number" in (over.ignored or "")


def test_gen1_values_of_one_device_in_one_millisecond_never_share_a_sequence():
    # The gateway's source gives every message its own arrival microsecond; a device
    # that publishes its values together lands many in one millisecond, even with the
    # same topic and payload (the old 20 hashed bits collided there).
    aset = shelly()
    tails = ["relay/0/power", "relay/0/energy", "sensor/temperature", "sensor/humidity"]
    ms = NOW // 1000 * 1000
    sequences = set()
    for k in range(1000):
        result = run(aset, f"{PLUG}/{tails[k % 4]}", "21.5", at=ms + k)
        sequences.add(result.telemetry[0].sequence)
    assert len(sequences) == 1000
    # ... and a redelivery stamped with its first arrival gets the same sequence and id.
    again = run(aset, f"{PLUG}/relay/0/power", "21.5", at=ms)
    first = run(aset, f"{PLUG}/relay/0/power", "21.5", at=ms)
    assert (again.telemetry[0].sequence, again.telemetry[0].event_id) == (
        first.telemetry[0].sequence,
        first.telemetry[0].event_id,
    )


def test_shelly_gen1_decimal_comma_and_fahrenheit_setting():
    aset = shelly()
    assert rows(run(aset, f"{PLUG}/relay/0/power", "49,97")) == {("relay:0", "power"): 49.97}
    ht = shelly(gen1_temperature_unit="F")
    result = run(ht, "shellies/shellyht-AB12CD/sensor/temperature", "71.6")
    assert rows(result)[("sensor", "temperature")] == pytest.approx(22.0)
    assert units(result)[("sensor", "temperature")] == "°C"
    assert (
        rows(run(ht, "shellies/shellyht-AB12CD/sensor/humidity", "41"))[("sensor", "humidity")]
        == 41
    )


def test_shelly_online_flags():
    aset = shelly()
    assert [s.online for s in run(aset, f"{PLUG}/online", "true").status] == [True]
    assert [s.online for s in run(aset, f"{PLUG}/online", "false").status] == [False]
    bad = run(aset, f"{PLUG}/online", "yes")
    assert "online payload must be true or false" in bad.errors[0].text
    assert {f.filter for _, f in aset.filters() if not f.shared} == {
        "shellies/+/online",
        "+/online",
    }


NOTIFY = (
    '{"src":"shellyplus1pm-441793d69718","dst":"shellyplus1pm-441793d69718/events",'
    '"method":"NotifyStatus","params":{"ts":1760000000.12,"switch:0":{"id":0,"apower":8.9,'
    '"voltage":230.1,"current":0.039,"aenergy":{"total":1234.567,"by_minute":[0,0,0],'
    '"minute_ts":1760000000},"temperature":{"tC":45.1,"tF":113.2}}}}'
)


def test_shelly_gen2_notify_status_switch():
    aset = shelly(gen2_prefixes=["+"])
    result = run(aset, "shellyplus1pm-441793d69718/events/rpc", NOTIFY)
    assert result.ok
    assert rows(result) == {
        ("switch:0", "power"): 8.9,
        ("switch:0", "voltage"): 230.1,
        ("switch:0", "current"): 0.039,
        ("switch:0", "energy"): 1234.567,
        ("switch:0", "temperature"): 45.1,
    }
    assert units(result)[("switch:0", "energy")] == "Wh"
    [tel] = result.telemetry
    assert tel.t_us[0] == 1_760_000_000_120_000  # params.ts
    again = run(aset, "shellyplus1pm-441793d69718/events/rpc", NOTIFY, NOW + 9_000_000)
    assert again.telemetry[0].sequence == tel.sequence  # payload-timed: a redelivery dedupes


def test_shelly_gen2_full_status_sensors_and_status_topic():
    aset = shelly()
    full = (
        '{"src":"shellyhtg3-84fce63f8e4c","method":"NotifyFullStatus","params":{"ts":1760000000,'
        '"temperature:0":{"id":0,"tC":21.4,"tF":70.5},"humidity:0":{"id":0,"rh":48.2},'
        '"devicepower:0":{"id":0,"battery":{"V":5.9,"percent":87},"external":{"present":false}},'
        '"sys":{"uptime":120,"unixtime":1760000000}}}'
    )
    got = rows(run(aset, "shellyhtg3-84fce63f8e4c/events/rpc", full))
    assert got[("temperature:0", "temperature")] == 21.4
    assert got[("humidity:0", "humidity")] == 48.2
    assert got[("devicepower:0", "battery")] == 87.0
    assert got[("devicepower:0", "voltage")] == 5.9
    assert got[("sys", "uptime")] == 120.0
    status = run(
        aset, "shellyplus1pm-441793d69718/status/switch:0", '{"id":0,"apower":3.5,"output":true}'
    )
    assert rows(status) == {("switch:0", "power"): 3.5, ("switch:0", "state"): 1.0}
    assert set(status.telemetry[0].t_us) == {NOW}
    event = run(
        aset, "shellyplus1pm-441793d69718/events/rpc", '{"method":"NotifyEvent","params":{}}'
    )
    assert event.ok
    assert event.ignored


def test_shelly_gen2_device_from_src():
    aset = shelly(gen2_prefixes=["home/shelly/+"], device_from="src")
    topic = "home/shelly/kitchen/events/rpc"
    assert aset.route_key(topic) == "shelly:2:home/shelly/kitchen"
    assert run(aset, topic, NOTIFY).telemetry[0].device == "shellyplus1pm-441793d69718"


# -- Telegraf --------------------------------------------------------------------------


def tg(**options: object):
    return one("telegraf", site="dc1", **options)


def test_telegraf_line_protocol_many_lines_and_tags():
    payload = (
        "cpu,cpu=cpu0,host=web01 usage_idle=98.5,usage_user=1.2 1760000000000000000\n"
        "cpu,cpu=cpu1,host=web01 usage_idle=97.5 1760000000000000000\n"
        "mem,host=web01 used_percent=41.2,available=8123456789i 1760000000000000000\n"
    )
    result = run(tg(), "telegraf/web01/cpu", payload)
    [tel] = result.telemetry
    assert (tel.site, tel.device) == ("dc1", "web01")
    assert rows(result) == {
        ("cpu.cpu0", "usage_idle"): 98.5,
        ("cpu.cpu0", "usage_user"): 1.2,
        ("cpu.cpu1", "usage_idle"): 97.5,
        ("mem", "used_percent"): 41.2,
        ("mem", "available"): 8123456789.0,
    }
    assert set(tel.t_us) == {1_760_000_000_000_000}


@pytest.mark.parametrize(
    ("stamp", "precision", "expected"),
    [
        ("1760000000", "auto", 1_760_000_000_000_000),
        ("1760000000123", "auto", 1_760_000_000_123_000),
        ("1760000000123456", "auto", 1_760_000_000_123_456),
        ("1760000000123456789", "auto", 1_760_000_000_123_457),
        ("1760000000123", "ms", 1_760_000_000_123_000),
    ],
)
def test_telegraf_timestamp_precision(stamp: str, precision: str, expected: int):
    result = run(tg(precision=precision), "telegraf/h/m", f"m,host=h v=1 {stamp}")
    assert result.telemetry[0].t_us == [expected]


def test_telegraf_site_tag_sensor_tags_and_device_from_topic():
    aset = tg(site_tag="site", sensor_tags=["path"])
    payload = 'disk,path=/data,site=plant\\ 2,fstype=ext4 free=1i,label="big"'
    result = run(aset, "telegraf/nas/disk", payload)
    [tel] = result.telemetry
    assert (tel.site, tel.device) == ("plant 2", "nas")  # no host tag: the topic's host
    assert rows(result) == {("disk._data", "free"): 1.0}  # '/' sanitised; string skipped
    assert result.skipped == 1
    assert tel.t_us == [NOW]


def test_telegraf_bad_line_keeps_the_good_ones_and_names_the_line():
    payload = "m,host=a v=1 1760000000\nm,host=a v=oops 1760000000\nm,host=a w=2 1760000000\n"
    result = run(tg(), "telegraf/a/m", payload)
    assert rows(result) == {("m", "v"): 1.0, ("m", "w"): 2.0}
    [error] = result.errors
    assert "line 2" in error.text
    assert "'oops'" in error.text


def test_telegraf_json_single_and_batch():
    single = (
        '{"fields":{"field_1":30,"field_2":4,"field_N":59,"n_images":660},"name":"docker",'
        '"tags":{"host":"raynor"},"timestamp":1458229140}'
    )
    result = run(tg(), "telegraf/raynor/docker", single)
    [tel] = result.telemetry
    assert tel.device == "raynor"
    assert tel.t_us[0] == 1_458_229_140_000_000
    assert rows(result)[("docker", "n_images")] == 660.0
    batch = (
        '{"metrics":[{"fields":{"load1":0.5},"name":"system","tags":{"host":"a"},"timestamp":1760000000},'
        '{"fields":{"load1":1.5},"name":"system","tags":{"host":"b"},"timestamp":1760000000}]}'
    )
    both = run(tg(), "telegraf/a", batch)
    assert sorted((t.device, t.value[0]) for t in both.telemetry) == [("a", 0.5), ("b", 1.5)]


def test_line_protocol_escapes_and_types():
    text = (
        'weather\\ station,loc=us\\,west,id=a\\=b temp=82.5,ok=t,n=-3i,u=7u,s="a \\"q\\", b" 1\n'
        "# a comment\n\n"
        "m v=1\n"
    )
    parsed = [p for _, p in parse_lines(text)]
    first = parsed[0]
    assert not isinstance(first, LineError)
    assert first.measurement == "weather station"
    assert first.tags == {"loc": "us,west", "id": "a=b"}
    assert first.fields == {"temp": 82.5, "ok": True, "n": -3, "u": 7, "s": 'a "q", b'}
    assert first.timestamp == 1
    assert not isinstance(parsed[1], LineError)
    assert parsed[1].timestamp is None
    for bad in ("m", "m v=", "m,t v=1", 'm s="open', "m v=1 x", "m v=1u2"):
        [(_, got)] = parse_lines(bad)
        assert isinstance(got, LineError), bad
