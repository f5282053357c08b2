"""What ``sensorgate bench-stop`` measured: one trial per stop mode and round, summaries.

Pure data and arithmetic, no I/O (the tests build these from made-up figures):

- :data:`MODES`: how the first gateway is stopped (SIGTERM; SIGINT to a gateway that
  was started with SIGINT ignored, as ``cmd &`` in a script starts it; SIGKILL);
- :func:`estimate_in_flight`: the bound on the messages a gateway holds received but not
  acknowledged, estimated from the workload and the settings: its inbox (at most
  ``inbox_max_bytes`` of payload, plus the message that crosses it), one epoch's worth
  of messages handed to the flow, and paho's read buffer; the kernel's socket buffers
  are given apart (the broker counts what sits in them as sent, so it sends it again);
- :class:`StopTrial`, :func:`summarize_trials`, :func:`problems`: figures and the
  targets they are held to (a graceful stop exits within 10 s, with code 0, and leaves
  nothing the next gateway drops as a duplicate; after SIGKILL, the messages sent again
  stay within the bound; every reading is stored).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.bench.results import Spread, spread

__all__ = [
    "DEFAULT_MODES",
    "GRACEFUL_EXIT_TARGET_S",
    "MODES",
    "InFlightBound",
    "ModeSummary",
    "StopMode",
    "StopReport",
    "StopTrial",
    "estimate_in_flight",
    "problems",
    "summarize_trials",
]

GRACEFUL_EXIT_TARGET_S = 10.0
"""A gateway stopped with SIGTERM or SIGINT exits within this long (the issue's target)."""
READ_BUFFER_BYTES = 262_144
"""What the gateway's MQTT client reads from its socket at once (``_BufferedSocket``)."""


@dataclass(frozen=True, slots=True)
class StopMode:
    """How the first gateway is stopped."""

    name: str
    signal: signal.Signals
    ignore_sigint_at_start: bool
    description: str

    @property
    def graceful(self) -> bool:
        """Whether the gateway is expected to stop gracefully (anything but SIGKILL)."""
        return self.signal != signal.SIGKILL


MODES = {
    m.name: m
    for m in (
        StopMode("sigterm", signal.SIGTERM, False, "SIGTERM"),
        StopMode(
            "sigint-ignored",
            signal.SIGINT,
            True,
            "SIGINT to a gateway started with SIGINT ignored (as `cmd &` in a script)",
        ),
        StopMode("sigint", signal.SIGINT, False, "SIGINT (Ctrl-C)"),
        StopMode("sigkill", signal.SIGKILL, False, "SIGKILL: no chance to acknowledge"),
    )
}
DEFAULT_MODES = ("sigterm", "sigint-ignored", "sigkill")


@dataclass(frozen=True, slots=True)
class InFlightBound:
    """Messages a gateway may hold received and not acknowledged, from its settings."""

    message_bytes: float
    """Mean payload of a burst message."""
    inbox_messages: int
    """``inbox_max_bytes`` of payload, plus the message that crosses it."""
    epoch_messages: int
    """One epoch's worth handed to the flow: the measured message rate times the epoch
    interval, plus the batch (``batch_max_messages``) taken just before the epoch closes,
    which the epoch waits for."""
    read_buffer_messages: int
    """paho's read buffer (256 KiB)."""
    socket_messages: int
    """The kernel's socket buffers at their largest (``tcp_rmem`` + ``tcp_wmem`` max)."""
    receive_maximum: int
    """The MQTT 5 Receive Maximum the gateway asks for (the broker's cap if it keeps to
    it; mosquitto 2.0.11 does not, after the first acknowledgements)."""
    inputs: dict[str, float] = field(default_factory=dict)

    @property
    def bound(self) -> int:
        """Inbox + one epoch + read buffer: what the gateway itself holds."""
        return self.inbox_messages + self.epoch_messages + self.read_buffer_messages

    @property
    def bound_with_sockets(self) -> int:
        """The bound plus what the socket buffers can hold on the way."""
        return self.bound + self.socket_messages

    def as_dict(self) -> dict[str, Any]:
        """Return the components and both totals, JSON-ready."""
        return {**asdict(self), "bound": self.bound, "bound_with_sockets": self.bound_with_sockets}


def estimate_in_flight(
    *,
    message_bytes: float,
    messages_per_s: float,
    epoch_interval_s: float,
    inbox_max_bytes: int,
    batch_max_messages: int,
    receive_maximum: int,
    socket_bytes: int,
) -> InFlightBound:
    """Estimate the messages in flight at a crash from the workload and the settings."""
    if message_bytes <= 0:
        raise ValueError(f"message_bytes must be positive; got {message_bytes}")

    def messages(n_bytes: float) -> int:
        return math.ceil(n_bytes / message_bytes)

    return InFlightBound(
        message_bytes=round(message_bytes, 1),
        inbox_messages=math.floor(inbox_max_bytes / message_bytes) + 1,
        epoch_messages=math.ceil(messages_per_s * epoch_interval_s) + batch_max_messages,
        read_buffer_messages=messages(READ_BUFFER_BYTES),
        socket_messages=messages(socket_bytes),
        receive_maximum=receive_maximum,
        inputs={
            "messages_per_s": round(messages_per_s, 1),
            "epoch_interval_s": epoch_interval_s,
            "inbox_max_bytes": inbox_max_bytes,
            "batch_max_messages": batch_max_messages,
            "socket_bytes": socket_bytes,
        },
    )


@dataclass
class StopTrial:
    """One stop mode, one round: stop the first gateway mid-burst, drain with a second."""

    round: int
    mode: str
    expected: int
    """Readings in the burst."""
    messages: int
    graceful: bool = True
    stored_at_signal: int | None = None
    """Readings the first gateway said it stored when the signal went."""
    exit_s: float | None = None
    """From the signal to the first gateway's exit."""
    exit_code: int | None = None
    """Its exit status (negative: the signal that ended it)."""
    forced: bool = False
    """It did not exit in time and was killed."""
    first_stored: int | None = None
    """Readings in influxd once the first gateway had gone."""
    second_ready_s: float | None = None
    """From the first gateway's exit to the second answering ``/healthz``."""
    drain_s: float | None = None
    """From the second gateway ready to the last point stored."""
    redelivered: int | None = None
    """The second gateway's ``sensorgate_redelivered_messages_total``: messages the
    broker sent again (dup flag)."""
    duplicates: int | None = None
    """Its ``sensorgate_duplicate_readings_total``: readings of messages the first had
    processed and committed (recovery) but not acknowledged."""
    second_messages: int | None = None
    """Messages the second gateway took in (``sensorgate_messages_in_total``)."""
    second_written: int | None = None
    """Readings the second gateway stored (its own count)."""
    late: int | None = None
    """Readings the second gateway took as late (windows already closed)."""
    stored: int | None = None
    """``count("value")`` of ``readings`` at the end."""
    second_exit_s: float | None = None
    """The second gateway's own graceful stop, idle (SIGTERM to exit)."""
    bound: InFlightBound | None = None
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def rewritten(self) -> int | None:
        """Readings the second gateway stored that the first had stored already."""
        if self.second_written is None or self.first_stored is None:
            return None
        return self.second_written - (self.expected - self.first_stored)

    def processed_twice(self, readings_per_message: int) -> int | None:
        """Messages both gateways processed: duplicates dropped plus re-stored, in messages."""
        if self.duplicates is None or self.rewritten is None:
            return None
        return (self.duplicates + self.rewritten) // readings_per_message

    @property
    def lost(self) -> int | None:
        """Readings not stored at the end."""
        return None if self.stored is None else self.expected - self.stored

    def as_dict(self) -> dict[str, Any]:
        """Return the trial with its derived figures, JSON-ready."""
        out = asdict(self)
        out["bound"] = None if self.bound is None else self.bound.as_dict()
        return {**out, "rewritten": self.rewritten, "lost": self.lost}


@dataclass
class ModeSummary:
    """One stop mode over its rounds: median, min, max."""

    mode: str
    description: str
    rounds: int
    complete_rounds: int
    """Rounds without error in which every reading was stored."""
    exit_s: Spread
    exit_codes: list[int | None]
    redelivered: Spread
    second_messages: Spread
    duplicates: Spread
    rewritten: Spread
    drain_s: Spread
    bound: Spread
    bound_with_sockets: Spread
    lost: int
    """Readings lost over all rounds (rounds that counted)."""


def summarize_trials(trials: Sequence[StopTrial]) -> list[ModeSummary]:
    """Summarize ``trials`` per mode, in the order the modes first appear."""
    out = []
    for mode in dict.fromkeys(t.mode for t in trials):
        ts = [t for t in trials if t.mode == mode]
        out.append(
            ModeSummary(
                mode=mode,
                description=MODES[mode].description if mode in MODES else mode,
                rounds=len(ts),
                complete_rounds=sum(1 for t in ts if t.error is None and t.lost == 0),
                exit_s=spread([t.exit_s for t in ts]),
                exit_codes=[t.exit_code for t in ts],
                redelivered=spread([t.redelivered for t in ts]),
                second_messages=spread([t.second_messages for t in ts]),
                duplicates=spread([t.duplicates for t in ts]),
                rewritten=spread([t.rewritten for t in ts]),
                drain_s=spread([t.drain_s for t in ts]),
                bound=spread([t.bound.bound if t.bound else None for t in ts]),
                bound_with_sockets=spread(
                    [t.bound.bound_with_sockets if t.bound else None for t in ts]
                ),
                lost=sum(t.lost or 0 for t in ts),
            )
        )
    return out


def problems(trials: Sequence[StopTrial]) -> list[str]:
    """Return every failure and every missed target, one line each."""
    out = []
    for t in trials:
        tag = f"{t.mode} round {t.round}"
        if t.error:
            out.append(f"{tag}: {t.error}")
            continue
        if t.lost:
            out.append(f"{tag}: stored {t.stored:,} of {t.expected:,} readings (lost {t.lost:,})")
        if t.graceful:
            if t.forced or t.exit_s is None:
                out.append(f"{tag}: the gateway did not exit; it was killed")
            elif t.exit_s > GRACEFUL_EXIT_TARGET_S:
                out.append(
                    f"{tag}: the gateway took {t.exit_s:.1f} s to exit"
                    f" (target {GRACEFUL_EXIT_TARGET_S:g} s)"
                )
            if t.exit_code not in (0, None) and not t.forced:
                out.append(f"{tag}: the gateway exited with code {t.exit_code}")
            if t.duplicates:
                out.append(
                    f"{tag}: the second gateway dropped {t.duplicates:,} duplicate readings"
                    " after a graceful stop (expected 0)"
                )
        elif (
            t.bound is not None
            and t.redelivered is not None
            and t.redelivered > t.bound.bound_with_sockets
        ):
            out.append(
                f"{tag}: {t.redelivered:,} messages sent again, above the bound"
                f" ({t.bound.bound:,}; {t.bound.bound_with_sockets:,} with socket buffers);"
                f" the second gateway took {t.second_messages or 0:,} in all"
            )
    return out


@dataclass
class StopReport:
    """The whole run of ``sensorgate bench-stop``."""

    started_at: str
    command: str
    workload: dict[str, Any]
    settings: dict[str, Any]
    """The gateway settings that shape the stop: epoch, inbox, batch, receive maximum,
    recovery, rules."""
    rounds: int
    modes: list[str]
    stop_at: float
    """Share of the burst's readings stored by the first gateway when it is stopped."""
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    trials: list[StopTrial] = field(default_factory=list)
    summaries: list[ModeSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    finished_at: str | None = None
    wall_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the report, JSON-ready."""
        out = asdict(self)
        out["trials"] = [t.as_dict() for t in self.trials]
        return out
