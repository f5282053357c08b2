"""The parameters of the signal models: frozen pydantic models, one per model.

What each parameter promises (and its default) is in :mod:`simulators.signals`, which
builds the samplers. ``scale`` (a typical size of variation) and ``valid_range`` (what
the sensor can physically report) of each model are used by anomaly injection for
default magnitudes and for out-of-range values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MODEL_NAMES",
    "BatteryParams",
    "CurrentParams",
    "DoorParams",
    "HumidityParams",
    "ModelParams",
    "PowerParams",
    "PressureParams",
    "SignalParams",
    "TemperatureParams",
    "VibrationParams",
    "default_params",
]


class ModelParams(BaseModel):
    """What every model's parameters have: frozen, no unknown field, a scale and a range."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    unit: Annotated[str, Field(max_length=32)] = ""

    @property
    def scale(self) -> float:
        """A typical size of the signal's variation, in its unit."""
        return 1.0

    @property
    def valid_range(self) -> tuple[float, float]:
        """What the sensor can physically report, in its unit."""
        return (-1e9, 1e9)


class TemperatureParams(ModelParams):
    """Air temperature: daily cycle, autocorrelated noise and slow drift (degC)."""

    model: Literal["temperature"] = "temperature"
    unit: str = "degC"
    mean: float = 21.0
    mean_spread: Annotated[float, Field(ge=0)] = 1.0
    daily_amplitude: Annotated[float, Field(ge=0)] = 3.0
    peak_hour_utc: Annotated[float, Field(ge=0, lt=24)] = 15.0
    noise_sigma: Annotated[float, Field(ge=0)] = 0.3
    noise_tau_s: Annotated[float, Field(gt=0)] = 300.0
    drift_per_day: float = 0.1

    @property
    def scale(self) -> float:  # noqa: D102
        return max(self.noise_sigma, 0.5)

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (-40.0, 85.0)


class HumidityParams(ModelParams):
    """Relative humidity, anti-correlated with the device's temperature (%)."""

    model: Literal["humidity"] = "humidity"
    unit: str = "%"
    mean: Annotated[float, Field(ge=0, le=100)] = 45.0
    coupling: float = -2.0
    noise_sigma: Annotated[float, Field(ge=0)] = 1.0
    noise_tau_s: Annotated[float, Field(gt=0)] = 600.0

    @property
    def scale(self) -> float:  # noqa: D102
        return max(self.noise_sigma, 1.0)

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (0.0, 100.0)


class PressureParams(ModelParams):
    """Barometric pressure: a bounded, weakly mean-reverting random walk (hPa)."""

    model: Literal["pressure"] = "pressure"
    unit: str = "hPa"
    mean: float = 1013.25
    lower: float = 980.0
    upper: float = 1045.0
    step_sigma: Annotated[float, Field(ge=0)] = 0.02
    reversion_half_life_s: Annotated[float, Field(gt=0)] = 6 * 3600.0

    @model_validator(mode="after")
    def _bounds(self) -> PressureParams:
        if not self.lower < self.mean < self.upper:
            raise ValueError("expected lower < mean < upper")
        return self

    @property
    def scale(self) -> float:  # noqa: D102
        return 1.0

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (300.0, 1100.0)


class VibrationParams(ModelParams):
    """Machine vibration RMS velocity with on/off regimes (mm/s)."""

    model: Literal["vibration"] = "vibration"
    unit: str = "mm/s"
    on_level: Annotated[float, Field(ge=0)] = 4.5
    off_level: Annotated[float, Field(ge=0)] = 0.2
    mean_on_s: Annotated[float, Field(gt=0)] = 1800.0
    mean_off_s: Annotated[float, Field(gt=0)] = 600.0
    noise_rel: Annotated[float, Field(ge=0, le=1)] = 0.08

    @property
    def scale(self) -> float:  # noqa: D102
        return max(self.on_level * self.noise_rel, 0.1)

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (0.0, 100.0)


Profile = Literal["office", "factory", "residential", "constant"]


class PowerParams(ModelParams):
    """Electrical power following a daily/weekly load profile (W)."""

    model: Literal["power"] = "power"
    unit: str = "W"
    profile: Profile = "office"
    base: Annotated[float, Field(ge=0)] = 150.0
    peak: Annotated[float, Field(ge=0)] = 2000.0
    utc_offset_h: Annotated[float, Field(ge=-14, le=14)] = 0.0
    noise_rel: Annotated[float, Field(ge=0, le=1)] = 0.05
    noise_tau_s: Annotated[float, Field(gt=0)] = 120.0

    @property
    def scale(self) -> float:  # noqa: D102
        return max(self.peak * self.noise_rel, 1e-3)

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (0.0, max(self.peak, self.base) * 3)


class CurrentParams(PowerParams):
    """Electrical current following a daily/weekly load profile (A)."""

    # A subclass narrows the tag that pydantic tells the models apart by.
    model: Literal["current"] = "current"  # type: ignore[assignment]  # narrower tag
    unit: str = "A"
    base: Annotated[float, Field(ge=0)] = 0.5
    peak: Annotated[float, Field(ge=0)] = 9.0


class BatteryParams(ModelParams):
    """Battery voltage along a Li-ion discharge curve (V)."""

    model: Literal["battery"] = "battery"
    unit: str = "V"
    full_v: float = 4.2
    empty_v: float = 3.0
    life_days: Annotated[float, Field(gt=0)] = 30.0
    start_soc_min: Annotated[float, Field(ge=0, le=1)] = 0.6
    start_soc_max: Annotated[float, Field(ge=0, le=1)] = 1.0
    recharge: bool = True
    noise_sigma: Annotated[float, Field(ge=0)] = 0.005

    @model_validator(mode="after")
    def _bounds(self) -> BatteryParams:
        if self.empty_v >= self.full_v:
            raise ValueError("expected empty_v < full_v")
        if self.start_soc_min > self.start_soc_max:
            raise ValueError("expected start_soc_min <= start_soc_max")
        return self

    @property
    def scale(self) -> float:  # noqa: D102
        return max(self.noise_sigma, 0.02)

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (0.0, self.full_v * 1.25)


class DoorParams(ModelParams):
    """A door or contact sensor: 1.0 open, 0.0 closed."""

    model: Literal["door"] = "door"
    unit: str = ""
    opens_per_hour: Annotated[float, Field(ge=0)] = 2.0
    mean_open_s: Annotated[float, Field(gt=0)] = 60.0

    @property
    def valid_range(self) -> tuple[float, float]:  # noqa: D102
        return (0.0, 1.0)


SignalParams = Annotated[
    TemperatureParams
    | HumidityParams
    | PressureParams
    | VibrationParams
    | PowerParams
    | CurrentParams
    | BatteryParams
    | DoorParams,
    Field(discriminator="model"),
]
"""The parameters of any model, told apart by their ``model`` field."""

_PARAM_TYPES: dict[str, type[ModelParams]] = {
    "temperature": TemperatureParams,
    "humidity": HumidityParams,
    "pressure": PressureParams,
    "vibration": VibrationParams,
    "power": PowerParams,
    "current": CurrentParams,
    "battery": BatteryParams,
    "door": DoorParams,
}
MODEL_NAMES: tuple[str, ...] = tuple(_PARAM_TYPES)


def default_params(model: str) -> ModelParams:
    """Return the default parameters of ``model`` (one of :data:`MODEL_NAMES`)."""
    try:
        return _PARAM_TYPES[model]()
    except KeyError:
        raise ValueError(f"unknown signal model {model!r}; expected one of {MODEL_NAMES}") from None
