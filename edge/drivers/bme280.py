"""Bosch BME280 (temperature, pressure, humidity) and BMP280 (no humidity) over I2C.

The compensation is the datasheet's integer code (BME280 datasheet section 4.2.3,
BMP280 datasheet 3.11.3): 32-bit for temperature and humidity, the 64-bit variant
for pressure. Python integers do not overflow, and ``>>`` on negatives floors like
the arithmetic shift the reference C relies on; the one C division that could see a
negative numerator is done with truncation toward zero, as C does.

The chip id is checked before anything else (0x60 BME280; 0x56, 0x57, 0x58 BMP280):
a wrong id means a different chip at that address, whose registers would compensate
into plausible-looking nonsense.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from edge.drivers.base import DriverFault, DriverOptions, Measurement, parse_options
from edge.drivers.i2c import SMBusLike, open_bus

__all__ = [
    "BME280_CHIP_ID",
    "BMP280_CHIP_IDS",
    "Bme280Driver",
    "Bme280Options",
    "Calibration",
    "compensate_humidity",
    "compensate_pressure",
    "compensate_temperature",
    "create",
]

BME280_CHIP_ID = 0x60
BMP280_CHIP_IDS = frozenset({0x56, 0x57, 0x58})
REG_CHIP_ID = 0xD0
REG_CALIB_A = 0x88  # 26 bytes: T1..T3, P1..P9, (0xA0 reserved), H1 at 0xA1
REG_CALIB_H = 0xE1  # 7 bytes: H2..H6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_DATA = 0xF7  # press[3] temp[3] hum[2]
SKIPPED_20BIT = 0x80000  # the reset value: the measurement was skipped or never made
SKIPPED_16BIT = 0x8000


@dataclass(frozen=True, slots=True)
class Calibration:
    """The factory trimming parameters (``dig_*``) of one chip."""

    T1: int
    T2: int
    T3: int
    P1: int
    P2: int
    P3: int
    P4: int
    P5: int
    P6: int
    P7: int
    P8: int
    P9: int
    H1: int = 0
    H2: int = 0
    H3: int = 0
    H4: int = 0
    H5: int = 0
    H6: int = 0

    @classmethod
    def from_registers(cls, block_a: bytes, block_h: bytes | None) -> Calibration:
        """Decode the calibration registers (0x88..0xA1 and, for a BME280, 0xE1..0xE7)."""
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack_from(
            "<HhhHhhhhhhhh", block_a
        )
        if block_h is None:
            return cls(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9)
        h1 = block_a[25]
        h2, h3 = struct.unpack_from("<hB", block_h)
        e4, e5, e6 = block_h[3], block_h[4], block_h[5]
        # H4 and H5 are 12-bit signed values sharing the nibbles of 0xE5.
        h4 = (_s8(e4) << 4) | (e5 & 0x0F)
        h5 = (_s8(e6) << 4) | (e5 >> 4)
        h6 = _s8(block_h[6])
        return cls(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def _s8(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _div_trunc(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def compensate_temperature(adc_t: int, cal: Calibration) -> tuple[int, int]:
    """Return ``(t_fine, T)`` with T in 0.01 °C (``BME280_compensate_T_int32``)."""
    var1 = (((adc_t >> 3) - (cal.T1 << 1)) * cal.T2) >> 11
    var2 = (((((adc_t >> 4) - cal.T1) * ((adc_t >> 4) - cal.T1)) >> 12) * cal.T3) >> 14
    t_fine = var1 + var2
    return t_fine, (t_fine * 5 + 128) >> 8


def compensate_pressure(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Return pressure in Pa as Q24.8 (divide by 256), ``BME280_compensate_P_int64``."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.P6
    var2 = var2 + ((var1 * cal.P5) << 17)
    var2 = var2 + (cal.P4 << 35)
    var1 = ((var1 * var1 * cal.P3) >> 8) + ((var1 * cal.P2) << 12)
    var1 = (((1 << 47) + var1) * cal.P1) >> 33
    if var1 == 0:
        return 0  # avoid a division by zero, as the datasheet does
    p = 1048576 - adc_p
    p = _div_trunc(((p << 31) - var2) * 3125, var1)
    var1 = (cal.P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.P7 << 4)


def compensate_humidity(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Return relative humidity in %RH as Q22.10 (divide by 1024), ``..._H_int32``."""
    v = t_fine - 76800
    v = ((((adc_h << 14) - (cal.H4 << 20) - (cal.H5 * v)) + 16384) >> 15) * (
        (((((v * cal.H6) >> 10) * (((v * cal.H3) >> 11) + 32768)) >> 10) + 2097152) * cal.H2 + 8192
    ) >> 14
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.H1) >> 4)
    v = max(0, min(v, 419430400))
    return v >> 12


class Bme280Options(DriverOptions):
    """Options of the ``bme280`` driver (also reads a BMP280)."""

    bus: Annotated[int, Field(ge=0)] = 1
    address: Annotated[int, Field(ge=0x03, le=0x77)] = 0x76
    oversampling: Annotated[int, Field(ge=1, le=5)] = 1
    """osrs code for all three measurements: 1=x1 .. 5=x16."""
    measure_timeout_s: Annotated[float, Field(gt=0, le=1)] = 0.1


class Bme280Driver:
    """Reads one BME280/BMP280 in forced mode (one conversion per read, then sleep)."""

    kind = "bme280"

    def __init__(self, options: Bme280Options, *, bus: SMBusLike | None = None) -> None:
        self.options = options
        self._bus = bus
        self._cal: Calibration | None = None
        self.chip_id: int | None = None

    @property
    def has_humidity(self) -> bool:
        """Whether the chip is a BME280 (a BMP280 has no humidity sensor)."""
        return self.chip_id == BME280_CHIP_ID

    def _setup(self) -> tuple[SMBusLike, Calibration]:
        if self._bus is None:
            self._bus = open_bus(self.options.bus)
        bus = self._bus
        if self._cal is None:
            addr = self.options.address
            chip_id = bus.read_byte_data(addr, REG_CHIP_ID)
            if chip_id != BME280_CHIP_ID and chip_id not in BMP280_CHIP_IDS:
                raise DriverFault(
                    f"chip id 0x{chip_id:02x} at 0x{addr:02x} is not a BME280 (0x60)"
                    " or BMP280 (0x56-0x58)"
                )
            self.chip_id = chip_id
            block_a = bytes(bus.read_i2c_block_data(addr, REG_CALIB_A, 26))
            block_h = (
                bytes(bus.read_i2c_block_data(addr, REG_CALIB_H, 7))
                if chip_id == BME280_CHIP_ID
                else None
            )
            self._cal = Calibration.from_registers(block_a, block_h)
        return bus, self._cal

    def _measure(self, bus: SMBusLike) -> list[int]:
        addr, osrs = self.options.address, self.options.oversampling
        if self.has_humidity:
            # ctrl_hum only takes effect after the following write to ctrl_meas.
            bus.write_byte_data(addr, REG_CTRL_HUM, osrs)
        bus.write_byte_data(addr, REG_CTRL_MEAS, (osrs << 5) | (osrs << 2) | 0b01)
        deadline = time.monotonic() + self.options.measure_timeout_s
        while bus.read_byte_data(addr, REG_STATUS) & 0x08:  # bit 3: converting
            if time.monotonic() > deadline:
                raise DriverFault("conversion did not finish in time")
            time.sleep(0.002)
        return bus.read_i2c_block_data(addr, REG_DATA, 8 if self.has_humidity else 6)

    def read(self) -> list[Measurement]:
        """Trigger one conversion and return the compensated values."""
        try:
            bus, cal = self._setup()
            data = self._measure(bus)
        except OSError as exc:
            self._cal = None  # re-check the chip after a bus error: it may have been swapped
            raise DriverFault(f"I2C error at 0x{self.options.address:02x}: {exc}") from exc
        adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
        adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
        if adc_t == SKIPPED_20BIT:
            raise DriverFault("temperature measurement skipped (reset value 0x80000)")
        t_fine, t = compensate_temperature(adc_t, cal)
        out = [Measurement("temperature", t / 100.0, "degC")]
        if adc_p == SKIPPED_20BIT:
            out.append(Measurement("pressure", None, "Pa", "pressure measurement skipped"))
        else:
            out.append(
                Measurement("pressure", compensate_pressure(adc_p, t_fine, cal) / 256.0, "Pa")
            )
        if self.has_humidity:
            adc_h = (data[6] << 8) | data[7]
            if adc_h == SKIPPED_16BIT:
                out.append(Measurement("humidity", None, "%RH", "humidity measurement skipped"))
            else:
                h = compensate_humidity(adc_h, t_fine, cal) / 1024.0
                out.append(Measurement("humidity", h, "%RH"))
        return out

    def close(self) -> None:
        """Close the I2C bus."""
        if self._bus is not None:
            self._bus.close()
            self._bus = None
            self._cal = None


def create(options: Mapping[str, Any]) -> Bme280Driver:
    """Build a BME280/BMP280 driver from its options (the bus opens on first read)."""
    return Bme280Driver(parse_options(Bme280Options, options))
