"""Zigbee2MQTT and Tasmota on payloads from their documentation.

Zigbee2MQTT: device pages (https://www.zigbee2mqtt.io/devices/WSDCGQ11LM.html: an Aqara
temperature/humidity/pressure sensor publishes temperature, humidity, pressure, battery,
voltage in mV and linkquality; https://www.zigbee2mqtt.io/devices/MCCGQ11LM.html: a
contact sensor publishes booleans), availability
(https://www.zigbee2mqtt.io/guide/configuration/device-availability.html: retained
``zigbee2mqtt/[FRIENDLY_NAME]/availability``, ``{"state":"online"}``, or the legacy
plain ``online``/``offline``) and ``advanced.last_seen``.

Tasmota: https://tasmota.github.io/docs/AM2301/ (``{"Time":"2019-01-01T00:00:00",
"AM2301":{"Temperature":24.6,"Humidity":58.2},"TempUnit":"C"}``),
https://tasmota.github.io/docs/DS18x20/ (``DS18B20-1`` ... with ``Id``),
https://tasmota.github.io/docs/BME280/, the ENERGY object of power-monitoring plugs
(https://tasmota.github.io/docs/Power-Monitoring-Calibration/), ``tele/%topic%/STATE``
with ``Wifi`` (https://tasmota.github.io/docs/MQTT/) and the retained ``LWT``
``Online``/``Offline``.
"""

from __future__ import annotations

import pytest
from adapter_kit import NOW, one, rows, run, units

AQARA = (
    '{"battery":91,"humidity":51.32,"linkquality":96,"pressure":1008.4,'
    '"temperature":22.6,"voltage":2985}'
)


def z2m(**options: object):
    return one("zigbee2mqtt", site="home", **options)


def test_z2m_state_readings_units_and_arrival_time():
    result = run(z2m(), "zigbee2mqtt/living_room", AQARA)
    assert result.ok
    [tel] = result.telemetry
    assert (tel.site, tel.device) == ("home", "living_room")
    assert rows(result) == {
        ("zigbee", "battery"): 91.0,
        ("zigbee", "humidity"): 51.32,
        ("zigbee", "linkquality"): 96.0,
        ("zigbee", "pressure"): 1008.4,
        ("zigbee", "temperature"): 22.6,
        ("zigbee", "voltage"): 2985.0,
    }
    got = units(result)
    assert got[("zigbee", "voltage")] == "mV"  # a battery device
    assert got[("zigbee", "temperature")] == "°C"
    assert got[("zigbee", "pressure")] == "hPa"
    assert set(tel.t_us) == {NOW}


def test_z2m_booleans_and_enums_as_configured():
    contact = '{"battery":100,"battery_low":false,"contact":true,"linkquality":150,"tamper":false}'
    numbers = rows(run(z2m(), "zigbee2mqtt/door", contact))
    assert numbers[("zigbee", "contact")] == 1.0
    assert numbers[("zigbee", "tamper")] == 0.0
    skipped = run(z2m(booleans="skip"), "zigbee2mqtt/door", contact)
    assert ("zigbee", "contact") not in rows(skipped)
    assert skipped.skipped == 3
    plug = (
        '{"state":"ON","power":12.3,"energy":1.23,"voltage":230,"current":0.05,'
        '"power_on_behavior":"off"}'
    )
    result = run(z2m(enums={"state": {"ON": 1, "OFF": 0}}), "zigbee2mqtt/plug", plug)
    got = rows(result)
    assert got[("zigbee", "state")] == 1.0
    assert units(result)[("zigbee", "voltage")] == "V"  # mains: no battery field
    assert ("zigbee", "power_on_behavior") not in got
    assert result.skipped == 1


def test_z2m_availability_json_and_legacy_string_and_bridge_state():
    aset = z2m()
    for payload, online in (('{"state":"online"}', True), ("offline", False), ("online", True)):
        result = run(aset, "zigbee2mqtt/living_room/availability", payload)
        assert [(s.device, s.online) for s in result.status] == [("living_room", online)]
        assert result.status[0].t_us == NOW
    bridge = run(aset, "zigbee2mqtt/bridge/state", '{"state":"offline"}')
    assert [(s.device, s.online) for s in bridge.status] == [("bridge", False)]
    bad = run(aset, "zigbee2mqtt/living_room/availability", "maybe")
    assert "availability payload must be" in bad.errors[0].text


def test_z2m_last_seen_dates_the_readings_and_makes_redelivery_idempotent():
    payload = '{"temperature":20.5,"last_seen":"2025-10-09T08:50:00.123Z"}'
    aset = z2m()
    first = run(aset, "zigbee2mqtt/t1", payload).telemetry[0]
    again = run(aset, "zigbee2mqtt/t1", payload, NOW + 60_000_000).telemetry[0]
    assert first.t_us == [1_760_000_000_000_000 - 199_877_000]
    assert (first.sequence, first.event_id) == (again.sequence, again.event_id)
    epoch_ms = run(aset, "zigbee2mqtt/t1", '{"temperature":20.5,"last_seen":1760000000000}')
    assert epoch_ms.telemetry[0].t_us == [1_760_000_000_000_000]


def test_z2m_arrival_timed_redelivery_is_a_new_message():
    aset = z2m()
    first = run(aset, "zigbee2mqtt/t1", AQARA).telemetry[0]
    again = run(aset, "zigbee2mqtt/t1", AQARA, NOW + 5_000_000).telemetry[0]
    assert again.sequence > first.sequence
    assert again.event_id != first.event_id


def test_z2m_quirks_nbsp_and_decimal_comma():
    nbsp = b'{"temperature":\xc2\xa021.5,\xc2\xa0"humidity":"49,97"}'
    result = run(z2m(), "zigbee2mqtt/t1", nbsp)
    assert rows(result) == {("zigbee", "temperature"): 21.5, ("zigbee", "humidity"): 49.97}
    refused = run(z2m(decimal_comma=False), "zigbee2mqtt/t1", '{"humidity":"49,97"}')
    assert not refused.telemetry
    assert refused.skipped == 1


def test_z2m_bad_payloads_are_adapter_errors():
    aset = z2m()
    not_json = run(aset, "zigbee2mqtt/t1", "temperature=21")
    assert "payload is not JSON" in not_json.errors[0].text
    array = run(aset, "zigbee2mqtt/t1", "[1,2]")
    assert "expected a JSON object" in array.errors[0].text
    assert all(e.reason.value == "adapter_error" for e in not_json.errors + array.errors)


def test_z2m_nested_names_route_and_ignore_requests():
    aset = z2m(nested_names=True)
    assert aset.route_key("zigbee2mqtt/living room/lamp") == "zigbee2mqtt:living room/lamp"
    assert (
        aset.route_key("zigbee2mqtt/living room/lamp/availability")
        == "zigbee2mqtt:living room/lamp"
    )
    result = run(aset, "zigbee2mqtt/living room/lamp", '{"brightness":254}')
    assert result.telemetry[0].device == "living room_lamp"  # '/' sanitised
    assert run(aset, "zigbee2mqtt/living room/lamp/set", '{"state":"ON"}').ignored
    assert run(aset, "zigbee2mqtt/bridge/logging", '{"level":"info"}').ignored
    flat = z2m()
    assert flat.route_key("zigbee2mqtt/a/b") is None  # not subscribed without nested names
    assert [f.shared for _, f in flat.filters()] == [True, False, False]


def test_z2m_refuse_policy_names_the_bad_id():
    aset = z2m(ids="refuse", nested_names=True)
    result = run(aset, "zigbee2mqtt/living room/lamp", '{"brightness":254}')
    assert "is not an acceptable id" in result.errors[0].text


def test_z2m_devices_table_maps_site_and_device():
    aset = z2m(devices={"0x00158d0001a2b3c4": "flat/kitchen-th"})
    tel = run(aset, "zigbee2mqtt/0x00158d0001a2b3c4", AQARA).telemetry[0]
    assert (tel.site, tel.device) == ("flat", "kitchen-th")


# -- Tasmota ---------------------------------------------------------------------------


def tas(**options: object):
    return one("tasmota", site="home", **options)


def test_tasmota_am2301_sensor_with_local_time():
    aset = tas(timezone="Europe/Berlin")
    payload = (
        '{"Time":"2025-10-09T10:50:00","AM2301":{"Temperature":24.6,"Humidity":58.2},'
        '"TempUnit":"C"}'
    )
    result = run(aset, "tele/sonoff-th/SENSOR", payload)
    [tel] = result.telemetry
    assert (tel.site, tel.device) == ("home", "sonoff-th")
    assert rows(result) == {("AM2301", "temperature"): 24.6, ("AM2301", "humidity"): 58.2}
    assert tel.t_us == [1_759_999_800_000_000] * 2  # 10:50 CEST = 08:50Z


def test_tasmota_fahrenheit_converted_and_pressure_unit_stated():
    payload = (
        '{"Time":"2025-10-09T08:50:00","BME280":{"Temperature":71.6,"Humidity":41.3,'
        '"DewPoint":46.4,"Pressure":760.1},"PressureUnit":"mmHg","TempUnit":"F"}'
    )
    result = run(tas(), "tele/weather/SENSOR", payload)
    got, unit = rows(result), units(result)
    assert got[("BME280", "temperature")] == pytest.approx(22.0)
    assert got[("BME280", "dew_point")] == pytest.approx(8.0)
    assert unit[("BME280", "temperature")] == "°C"
    assert (got[("BME280", "pressure")], unit[("BME280", "pressure")]) == (760.1, "mmHg")


def test_tasmota_ds18b20_by_index_or_by_id():
    payload = (
        '{"Time":"2025-10-09T08:50:00","DS18B20-1":{"Id":"01144A0CB2AA","Temperature":22.4},'
        '"DS18B20-2":{"Id":"0316A279F3FF","Temperature":23.1},"TempUnit":"C"}'
    )
    assert set(rows(run(tas(), "tele/boiler/SENSOR", payload))) == {
        ("DS18B20-1", "temperature"),
        ("DS18B20-2", "temperature"),
    }
    assert set(rows(run(tas(ds18b20_by_id=True), "tele/boiler/SENSOR", payload))) == {
        ("01144A0CB2AA", "temperature"),
        ("0316A279F3FF", "temperature"),
    }


def test_tasmota_energy_with_three_phase_arrays():
    payload = (
        '{"Time":"2025-10-09T08:50:00","ENERGY":{"TotalStartTime":"2025-01-01T00:00:00",'
        '"Total":0.003,"Yesterday":0.0,"Today":0.003,"Period":0,"Power":4,"ApparentPower":10,'
        '"ReactivePower":9,"Factor":0.42,"Voltage":[228,230,231],"Current":0.044}}'
    )
    result = run(tas(), "tele/plug/SENSOR", payload)
    got, unit = rows(result), units(result)
    assert got[("ENERGY", "energy")] == 0.003
    assert unit[("ENERGY", "energy")] == "kWh"
    assert got[("ENERGY", "power")] == 4.0
    assert unit[("ENERGY", "power")] == "W"
    assert got[("ENERGY", "power_factor")] == 0.42
    assert [got[("ENERGY", f"voltage_{i}")] for i in (1, 2, 3)] == [228.0, 230.0, 231.0]
    assert result.skipped == 1  # TotalStartTime


def test_tasmota_state_wifi_and_relay():
    payload = (
        '{"Time":"2024-02-24T22:20:38","Uptime":"0T00:10:11","UptimeSec":611,"Heap":24,'
        '"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER":"OFF",'
        '"Wifi":{"AP":1,"SSId":"ESP-Network","BSSId":"E6:8D:8C:4B:BE:F7","Channel":3,'
        '"Mode":"11n","RSSI":44,"Signal":-78,"LinkCount":1,"Downtime":"0T00:00:05"}}'
    )
    got = rows(run(tas(), "tele/tasmota_9CF9D1/STATE", payload))
    assert got[("state", "uptime")] == 611.0
    assert got[("state", "relay")] == 0.0
    assert got[("wifi", "rssi")] == 44.0
    assert got[("wifi", "signal")] == -78.0


def test_tasmota_lwt_is_a_plain_string():
    aset = tas()
    online = run(aset, "tele/plug/LWT", "Online")
    assert [(s.device, s.online, s.reason) for s in online.status] == [
        ("plug", True, "tasmota LWT")
    ]
    assert [s.online for s in run(aset, "tele/plug/LWT", "Offline").status] == [False]
    bad = run(aset, "tele/plug/LWT", '{"state":"online"}')
    assert "LWT payload must be 'Online' or 'Offline'" in bad.errors[0].text


def test_tasmota_clock_before_ntp_falls_back_to_arrival():
    payload = '{"Time":"1970-01-01T00:05:12","AM2301":{"Temperature":24.6}}'
    [tel] = run(tas(), "tele/plug/SENSOR", payload).telemetry
    assert tel.t_us == [NOW]


def test_tasmota_custom_full_topic():
    aset = tas(topic="home/%topic%/%prefix%/")
    assert {f.filter for _, f in aset.filters()} == {
        "home/+/tele/SENSOR",
        "home/+/tele/STATE",
        "home/+/tele/LWT",
    }
    assert aset.route_key("home/kitchen/tele/SENSOR") == "tasmota:kitchen"
    assert aset.route_key("tele/kitchen/SENSOR") is None
    result = run(
        aset, "home/kitchen/tele/SENSOR", '{"Time":"2025-10-09T08:50:00","SI7021":{"Humidity":40}}'
    )
    assert result.telemetry[0].device == "kitchen"
