"""Drivers against fixture sysfs trees and a fake SMBus loaded with register dumps."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from edge_testkit import W1_BAD_CRC, W1_OK, W1_POWER_ON

from contract.errors import ConfigError
from edge.clock import FakeClock
from edge.drivers.base import DriverFault, Measurement
from edge.drivers.bme280 import (
    Bme280Driver,
    Bme280Options,
    Calibration,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
)
from edge.drivers.command import CommandDriver, CommandOptions
from edge.drivers.ds18b20 import DS18B20Driver, DS18B20Options, parse_w1_slave
from edge.drivers.i2c import FakeSMBus
from edge.drivers.registry import DriverRegistry
from edge.drivers.simulated import create as create_simulated
from edge.drivers.system import SystemDriver, SystemOptions
from edge.drivers.thermal import ThermalDriver, ThermalOptions
from edge.sampler import Sampler

# -- BMP280 datasheet 3.12 worked example (BST-BMP280-DS001) ----------------------------
DATASHEET_CAL = dict(
    T1=27504, T2=26435, T3=-1000,
    P1=36477, P2=-10685, P3=3024, P4=2855, P5=140, P6=-7, P7=15500, P8=-14600, P9=6000,
)  # fmt: skip
ADC_T, ADC_P = 519888, 415148

# -- a BME280 register dump read from a real chip (published in the Pi4J driver tests:
# 0x88..0x9F, 0xE0..0xEF and 0xF7..0xFF). 0xA0/0xA1 (dig_H1) are not in the dump, so
# they read 0 here as they would in any dump that stops at 0x9F.
REAL_CALIB_88 = [0, 110, -114, 103, 50, 0, 67, -111, 102, -42, -48, 11, -61, 27, 44, 0,
                 -7, -1, -76, 45, -24, -47, -120, 19]  # fmt: skip
REAL_E0 = [0, 110, 1, 0, 19, 39, 3, 30, 4, 65, -1, -1, -1, -1, -1, -1]
REAL_F7 = [86, -61, 0, 126, -63, 0, 123, 82, -128]


def datasheet_dump(chip_id: int) -> dict[int, int]:
    """Registers of a chip holding the datasheet calibration and raw values."""
    c = DATASHEET_CAL
    calib = struct.pack(
        "<HhhHhhhhhhhh",
        c["T1"], c["T2"], c["T3"], c["P1"], c["P2"], c["P3"],
        c["P4"], c["P5"], c["P6"], c["P7"], c["P8"], c["P9"],
    )  # fmt: skip
    regs = {0xD0: chip_id, **FakeSMBus.load_block(0x88, calib)}
    data = [ADC_P >> 12, (ADC_P >> 4) & 0xFF, (ADC_P & 0xF) << 4]
    data += [ADC_T >> 12, (ADC_T >> 4) & 0xFF, (ADC_T & 0xF) << 4]
    data += [0x80, 0x00]  # humidity: skipped (the datasheet has no humidity example)
    regs.update(FakeSMBus.load_block(0xF7, data))
    return regs


def real_dump() -> dict[int, int]:
    regs = {0xD0: 0x60}
    regs.update(FakeSMBus.load_block(0x88, REAL_CALIB_88))
    regs.update(FakeSMBus.load_block(0xE0, REAL_E0))
    regs.update(FakeSMBus.load_block(0xF7, REAL_F7))
    return regs


def float_reference(adc_t: int, adc_p: int, adc_h: int, c: Calibration) -> tuple[float, ...]:
    """The datasheet's floating-point formulas: an independent check of the integer code."""
    v1 = (adc_t / 16384.0 - c.T1 / 1024.0) * c.T2
    v2 = ((adc_t / 131072.0 - c.T1 / 8192.0) ** 2) * c.T3
    t_fine = v1 + v2
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c.P6 / 32768.0 + var1 * c.P5 * 2.0
    var2 = var2 / 4.0 + c.P4 * 65536.0
    var1 = (c.P3 * var1 * var1 / 524288.0 + c.P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c.P1
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    p = p + (c.P9 * p * p / 2147483648.0 + p * c.P8 / 32768.0 + c.P7) / 16.0
    h = t_fine - 76800.0
    h = (adc_h - (c.H4 * 64.0 + c.H5 / 16384.0 * h)) * (
        c.H2 / 65536.0 * (1.0 + c.H6 / 67108864.0 * h * (1.0 + c.H3 / 67108864.0 * h))
    )
    h = min(100.0, max(0.0, h * (1.0 - c.H1 * h / 524288.0)))
    return t_fine / 5120.0, p, h


def test_bme280_datasheet_temperature_and_pressure() -> None:
    cal = Calibration(**DATASHEET_CAL)
    t_fine, t = compensate_temperature(ADC_T, cal)
    assert (t_fine, t) == (128422, 2508)  # 25.08 degC, as in the datasheet
    p_q24_8 = compensate_pressure(ADC_P, t_fine, cal)
    # The datasheet prints 100653.27 Pa (floating point) and 100653 Pa (integer).
    assert round(p_q24_8 / 256) == 100653
    assert p_q24_8 / 256 == pytest.approx(100653.27, abs=0.05)


@pytest.mark.parametrize("chip_id", [0x56, 0x57, 0x58])
def test_bmp280_driver_on_datasheet_dump(chip_id: int) -> None:
    bus = FakeSMBus({0x76: datasheet_dump(chip_id)})
    driver = Bme280Driver(Bme280Options(), bus=bus)
    out = {m.metric: m for m in driver.read()}
    assert set(out) == {"temperature", "pressure"}  # a BMP280 has no humidity
    assert out["temperature"].value == 25.08
    assert out["pressure"].value == pytest.approx(100653.27, abs=0.05)
    # forced mode was requested: ctrl_meas written with mode bits 01; no ctrl_hum write
    assert (0x76, 0xF4, (1 << 5) | (1 << 2) | 1) in bus.writes
    assert all(reg != 0xF2 for _a, reg, _v in bus.writes)


def test_bme280_driver_on_datasheet_dump_reports_skipped_humidity() -> None:
    bus = FakeSMBus({0x77: datasheet_dump(0x60)})
    driver = Bme280Driver(Bme280Options(address=0x77), bus=bus)
    out = {m.metric: m for m in driver.read()}
    assert out["temperature"].value == 25.08
    assert out["humidity"].value is None
    assert out["humidity"].fault == "humidity measurement skipped"
    assert (0x77, 0xF2, 1) in bus.writes


def test_bme280_driver_on_real_register_dump_matches_float_formulas() -> None:
    bus = FakeSMBus({0x76: real_dump()})
    driver = Bme280Driver(Bme280Options(), bus=bus)
    out = {m.metric: m.value for m in driver.read()}
    cal = driver._cal
    assert cal is not None
    assert (cal.T1, cal.H2, cal.H3, cal.H4, cal.H5, cal.H6) == (28160, 366, 0, 311, 50, 30)
    t, p, h = float_reference(519184, 355376, 31570, cal)
    assert out["temperature"] == pytest.approx(t, abs=0.01)
    assert out["pressure"] == pytest.approx(p, abs=1.0)
    assert out["humidity"] == pytest.approx(h, abs=0.05)
    assert 0 < out["temperature"] < 50
    assert 90_000 < out["pressure"] < 110_000
    assert 0 <= out["humidity"] <= 100


def test_bme280_wrong_chip_id_is_a_fault() -> None:
    bus = FakeSMBus({0x76: {0xD0: 0x61}})
    with pytest.raises(DriverFault, match="chip id 0x61"):
        Bme280Driver(Bme280Options(), bus=bus).read()


def test_bme280_missing_device_is_a_fault_not_a_crash() -> None:
    bus = FakeSMBus({0x77: {0xD0: 0x60}})
    with pytest.raises(DriverFault, match="I2C error at 0x76"):
        Bme280Driver(Bme280Options(), bus=bus).read()


def test_bme280_humidity_compensation_clamps() -> None:
    cal = Calibration(**DATASHEET_CAL, H1=75, H2=366, H3=0, H4=311, H5=50, H6=30)
    t_fine, _ = compensate_temperature(ADC_T, cal)
    assert compensate_humidity(0, t_fine, cal) == 0
    assert compensate_humidity(0xFFFF, t_fine, cal) == 100 * 1024


# -- thermal, DS18B20, system ---------------------------------------------------------------
def test_thermal_reads_every_zone(sysfs: Path) -> None:
    driver = ThermalDriver(ThermalOptions(root=sysfs / "sys/class/thermal"))
    assert driver.read() == [
        Measurement("temperature", 48.312, "degC", channel="thermal_zone0"),
        Measurement("temperature", 51.0, "degC", channel="thermal_zone1"),
    ]


def test_thermal_single_zone_and_missing_zone(sysfs: Path) -> None:
    root = sysfs / "sys/class/thermal"
    one = ThermalDriver(ThermalOptions(root=root, zone="thermal_zone1"))
    assert one.read() == [Measurement("temperature", 51.0, "degC")]
    with pytest.raises(DriverFault, match="cannot read"):
        ThermalDriver(ThermalOptions(root=root, zone="thermal_zone9")).read()
    with pytest.raises(DriverFault, match="no thermal zones"):
        ThermalDriver(ThermalOptions(root=sysfs / "nothing")).read()


def test_w1_slave_parsing() -> None:
    assert parse_w1_slave(W1_OK) == 23.125
    with pytest.raises(DriverFault, match="CRC check failed"):
        parse_w1_slave(W1_BAD_CRC)
    with pytest.raises(DriverFault, match=r"85\.000 degC power-on"):
        parse_w1_slave(W1_POWER_ON)
    with pytest.raises(DriverFault, match="expected 2"):
        parse_w1_slave("")


def test_ds18b20_reads_probes_and_faults_per_probe(sysfs: Path) -> None:
    driver = DS18B20Driver(DS18B20Options(root=sysfs / "sys/bus/w1/devices"))
    out = {m.channel: m for m in driver.read()}
    assert out["28-0316a2795bff"].value == 23.125
    assert out["28-0616d3a1c2ff"].value == -10.125
    assert out["28-0416b1e3a4ff"].value is None
    assert "CRC" in (out["28-0416b1e3a4ff"].fault or "")
    assert "power-on" in (out["28-0516c2f0b1ff"].fault or "")
    assert "w1_bus_master1" not in out


def test_ds18b20_missing_probe(sysfs: Path) -> None:
    root = sysfs / "sys/bus/w1/devices"
    gone = DS18B20Driver(DS18B20Options(root=root, serials=("28-00000000dead",)))
    [m] = gone.read()
    assert m.value is None
    assert "unreadable" in (m.fault or "")
    with pytest.raises(DriverFault, match="found 0"):
        DS18B20Driver(DS18B20Options(root=sysfs / "none")).read()


def test_system_metrics_from_fixture_proc(sysfs: Path) -> None:
    driver = SystemDriver(SystemOptions(proc_root=sysfs / "proc", disk_paths=(sysfs,)))
    out = {(m.channel, m.metric): m.value for m in driver.read()}
    assert out[(None, "load1")] == 0.52
    assert out[(None, "load15")] == 0.59
    assert out[(None, "mem_total")] == 3884096 * 1024
    assert out[(None, "mem_used_percent")] == pytest.approx(25.026, abs=0.001)
    assert out[("eth0", "net_rx_bytes")] == 98765432
    assert out[("eth0", "net_tx_bytes")] == 1234567
    assert ("lo", "net_rx_bytes") not in out
    assert out[(None, "disk_free")] > 0
    assert 0 <= out[(None, "disk_used_percent")] <= 100


def test_system_group_failure_is_a_fault_measurement(sysfs: Path) -> None:
    (sysfs / "proc" / "meminfo").write_text("garbage\n")
    opts = SystemOptions(proc_root=sysfs / "proc", disk=False, interfaces=("wlan0",))
    out = {m.metric: m for m in SystemDriver(opts).read()}
    assert out["mem_used_percent"].value is None
    assert out["mem_used_percent"].fault
    assert out["load1"].value == 0.52
    assert out["net_rx_bytes"].value == 1000


# -- command/file, simulated ---------------------------------------------------------------
def test_command_file_number_and_json(tmp_path: Path) -> None:
    value = tmp_path / "value"
    value.write_text("42.5\n")
    driver = CommandDriver(CommandOptions(path=value, metric="level", unit="cm"))
    assert driver.read() == [Measurement("level", 42.5, "cm")]
    value.write_text(json.dumps({"a": 1, "b": "x", "c": True}))
    out = {m.metric: m for m in driver.read()}
    assert out["a"].value == 1.0
    assert out["b"].value is None
    assert "not a number" in (out["b"].fault or "")
    assert out["c"].value == 1.0


def test_command_output_timeout_and_failure() -> None:
    py = sys.executable
    ok = CommandDriver(CommandOptions(command=(py, "-c", "print('{\"v\": 3}')")))
    assert ok.read() == [Measurement("v", 3.0, "")]
    slow = CommandDriver(
        CommandOptions(command=(py, "-c", "import time; time.sleep(5)"), timeout_s=0.3)
    )
    with pytest.raises(DriverFault, match=r"timed out after 0\.3 s"):
        slow.read()
    failing = CommandDriver(CommandOptions(command=(py, "-c", "raise SystemExit(3)")))
    with pytest.raises(DriverFault, match="exited with 3"):
        failing.read()
    with pytest.raises(DriverFault, match="neither a number nor JSON"):
        CommandDriver(CommandOptions(command=("echo", "hello"))).read()


def test_command_options_need_exactly_one_source() -> None:
    registry = DriverRegistry(use_entry_points=False)
    with pytest.raises(ConfigError, match="exactly one of 'path' and 'command'"):
        registry.create("command", {})


def test_simulated_is_seeded_and_can_fail() -> None:
    a = create_simulated({"seed": 7})
    b = create_simulated({"seed": 7})
    assert [a.read() for _ in range(5)] == [b.read() for _ in range(5)]
    flaky = create_simulated({"seed": 1, "fail_every": 2})
    flaky.read()
    with pytest.raises(DriverFault, match="simulated fault"):
        flaky.read()


# -- registry -----------------------------------------------------------------------------
def test_registry_unknown_and_bad_options() -> None:
    registry = DriverRegistry(use_entry_points=False)
    with pytest.raises(ConfigError) as err:
        registry.create("nope", {})
    assert err.value.field == "driver"
    assert "known drivers: bme280, command, ds18b20, simulated, system, thermal" in err.value.reason
    with pytest.raises(ConfigError) as err:
        registry.create("bme280", {"address": 512})
    assert err.value.field == "options.address"


def test_registry_finds_third_party_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class Probe:
        kind = "probe"

        def read(self) -> list[Measurement]:
            return [Measurement("x", 1.0)]

        def close(self) -> None:
            pass

    def fake_entry_points(group: str) -> list[Any]:
        assert group == "sensorgate.drivers"
        return [SimpleNamespace(name="probe", load=lambda: lambda _opts: Probe())]

    monkeypatch.setattr("edge.drivers.registry.entry_points", fake_entry_points)
    registry = DriverRegistry()
    assert "probe" in registry.names()
    assert registry.create("probe", {}).read() == [Measurement("x", 1.0)]


def test_a_broken_plugin_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise ImportError("No module named 'acme'")

    monkeypatch.setattr(
        "edge.drivers.registry.entry_points",
        lambda group: [SimpleNamespace(name="acme", load=boom)],
    )
    with pytest.raises(ConfigError, match="driver 'acme' could not be loaded: No module"):
        DriverRegistry().create("acme", {}, field="sensors[3].driver")


def test_pyproject_registers_the_builtins_as_entry_points() -> None:
    import tomllib

    from edge.drivers.registry import BUILTIN_DRIVERS

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
    assert declared["sensorgate.drivers"] == BUILTIN_DRIVERS


# -- a failing driver never crashes the sampler ---------------------------------------------
def test_failing_driver_gives_fault_readings_and_a_status_change() -> None:
    class Broken:
        kind = "broken"

        def __init__(self) -> None:
            self.n = 0

        def read(self) -> list[Measurement]:
            self.n += 1
            if self.n == 2:
                raise RuntimeError("bug in a third-party driver")
            if self.n == 3:
                raise DriverFault("sensor unplugged")
            return [Measurement("temperature", 20.0 + self.n, "degC")]

        def close(self) -> None:
            pass

    changes: list[tuple[str, str | None]] = []
    clock = FakeClock()
    sampler = Sampler(clock, on_fault_change=lambda s, f: changes.append((s, f)))
    sampler.add("probe", Broken(), 1.0)
    got = []
    for _ in range(4):
        got.extend(sampler.sample_due())
        clock.advance(1.0)
    assert [r.value for r in got] == [21.0, None, None, 24.0]
    assert got[1].metric == "temperature"
    assert got[1].unit == "degC"
    assert got[1].fault == "driver error: RuntimeError: bug in a third-party driver"
    assert got[2].fault == "sensor unplugged"
    assert changes == [("probe", got[1].fault), ("probe", None)]
    assert sampler.slots["probe"].faults == 2
