"""The I2C seam: the few SMBus calls drivers use, the real bus, and an in-memory fake.

The fake is a 256-byte register file per address, loaded from a register dump, so
a driver test runs the real driver code against real chip contents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from edge.drivers.base import DriverFault

__all__ = ["FakeSMBus", "SMBusLike", "open_bus"]


class SMBusLike(Protocol):
    """The subset of :class:`smbus2.SMBus` the drivers call."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        """Read one register."""
        ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        """Read ``length`` consecutive registers."""
        ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        """Write one register."""
        ...

    def close(self) -> None:
        """Release the bus."""
        ...


def open_bus(bus: int) -> SMBusLike:
    """Open ``/dev/i2c-<bus>`` with smbus2 (imported here: only I2C drivers need it)."""
    try:
        import smbus2
    except ImportError as exc:
        raise DriverFault("smbus2 is not installed; install sensorgate[edge]") from exc
    try:
        return smbus2.SMBus(bus)
    except OSError as exc:
        raise DriverFault(f"cannot open /dev/i2c-{bus}: {exc}") from exc


class FakeSMBus:
    """An in-memory SMBus: ``{address: {register: byte}}``; writes are recorded."""

    def __init__(self, devices: Mapping[int, Mapping[int, int]]) -> None:
        self.registers = {addr: bytearray(256) for addr in devices}
        for addr, regs in devices.items():
            for reg, value in regs.items():
                self.registers[addr][reg] = value & 0xFF
        self.writes: list[tuple[int, int, int]] = []
        self.closed = False

    def _device(self, addr: int) -> bytearray:
        try:
            return self.registers[addr]
        except KeyError:
            raise OSError(121, "Remote I/O error") from None  # what the kernel says (ENXIO-ish)

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        """Return one register."""
        return self._device(i2c_addr)[register]

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        """Return ``length`` registers from ``register``."""
        return list(self._device(i2c_addr)[register : register + length])

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        """Record the write and store it (status registers stay as loaded)."""
        self._device(i2c_addr)
        self.writes.append((i2c_addr, register, value))

    def close(self) -> None:
        """Mark the bus closed."""
        self.closed = True

    @staticmethod
    def load_block(start: int, data: bytes | list[int]) -> dict[int, int]:
        """Turn a block dump starting at ``start`` into ``{register: byte}``."""
        return {start + i: b & 0xFF for i, b in enumerate(data)}
