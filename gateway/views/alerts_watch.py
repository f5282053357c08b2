"""``sensorgate alerts --watch``: alarms as they happen, over MQTT (aiomqtt).

It subscribes (:mod:`gateway.connectors.aio_mqtt`) to the retained summaries
``{prefix}/{site}/{device}/alarms/active`` (:mod:`gateway.connectors.alarm_summary`) and to the
alarm events ``{prefix}/{site}/{device}/alarms``. The broker sends the retained
summaries first, so the current state shows at once; then each raised, updated,
acknowledged and cleared event is printed as it arrives. InfluxDB is not asked.

With ``--json``, one object per line, for scripts::

    {"event": "active", ...the alarm (AlarmData)..., "why": "..."}   one per active alarm
    {"event": "synced", "active": 2}                                  the state is complete
    {"event": "raised", "event_id": "...", ...the alarm..., "why": "..."}
    {"event": "feed", "state": "reconnecting", "error": "...", "retry_in_s": 1.2}

``synced`` comes once no retained summary has arrived for ``settle_s`` (MQTT marks no
end of the retained messages) or at the first live event. After a lost connection the
watch reconnects with backoff and starts again from the retained state (events missed
meanwhile are not replayed: the summaries are the truth). Events re-delivered by the
broker (same event id) are printed once.

Without ``--json``: a table of the active alarms, then one line per event, coloured
by severity; no colour when stdout is not a terminal or ``NO_COLOR`` is set. Output
is written by one thread, so a slow terminal or pipe never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from contract.alarms import AlarmData, decode_alarm
from contract.errors import BrokerError, SensorGateError
from gateway.connectors.aio_mqtt import connect
from gateway.connectors.alarm_summary import alarm_filters, decode_summary, summary_device
from gateway.settings import GatewaySettings
from gateway.views.explain import why
from gateway.views.rows import AlarmFilter, alarm_series

__all__ = ["watch_alerts"]

_STYLE = {
    "critical": "bold red",
    "major": "red",
    "minor": "yellow",
    "warning": "cyan",
    "info": "dim",
}
_SEEN_IDS = 4_096


def _doc(event: str, alarm: AlarmData, **extra: Any) -> dict[str, Any]:
    data = alarm.model_dump(mode="json", exclude_none=True)
    detail = data.get("detail")
    return {
        "event": event,
        **extra,
        "time": data["event_time"],
        **data,
        "why": why(detail, alarm.folded_raises, alarm.rate_limited),
    }


class _Output:
    """Prints on one thread: JSON lines, or a coloured table and lines (rich)."""

    def __init__(self, *, as_json: bool) -> None:
        self._json = as_json
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-out")
        self._console: Any = None
        if not as_json:
            from rich.console import Console

            # Colour only on a terminal and without NO_COLOR (rich checks both).
            self._console = Console(highlight=False)

    async def write(self, fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    async def line(self, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, separators=(",", ":"))
        await self.write(lambda: print(text, flush=True))

    async def state(self, alarms: list[AlarmData]) -> None:
        if self._json:
            for alarm in alarms:
                await self.line(_doc("active", alarm))
            await self.line({"event": "synced", "active": len(alarms)})
            return
        await self.write(lambda: self._console.print(_table(alarms)))

    async def event(self, transition: str, event_id: str, alarm: AlarmData) -> None:
        if self._json:
            await self.line(_doc(transition, alarm, event_id=event_id))
            return
        text = _event_line(transition, alarm)
        await self.write(lambda: self._console.print(text))

    async def feed(self, state: str, error: str | None, retry_in_s: float | None) -> None:
        if self._json:
            await self.line(
                {"event": "feed", "state": state, "error": error, "retry_in_s": retry_in_s}
            )
            return
        message = f"[{state}]" + (f" {error}" if error else "")
        if retry_in_s is not None:
            message += f"; next try in {retry_in_s:.1f} s"
        await self.write(lambda: self._console.print(message, style="dim", markup=False))


def _utc(text: str) -> str:
    when = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _event_line(transition: str, alarm: AlarmData) -> Any:
    from rich.text import Text

    sev = alarm.severity.value
    style = "green" if transition == "cleared" else _STYLE.get(sev, "")
    line = Text(no_wrap=False)
    line.append(_utc(alarm.event_time.isoformat()) + "  ")
    line.append(f"{transition.upper():<12}", style=style)
    line.append(f"{sev:<9}", style=_STYLE.get(sev, ""))
    line.append(f"{alarm.site}/{alarm.device}  {alarm_series(alarm)}  {alarm.rule}")
    if alarm.value is not None:
        cmp = f"  value {_num(alarm.value)}"
        if alarm.threshold is not None:
            cmp += f" (threshold {_num(alarm.threshold)})"
        line.append(cmp)
    if alarm.message:
        line.append(f"  {alarm.message}")
    explained = why(
        None if alarm.detail is None else alarm.detail.model_dump(exclude_none=True),
        alarm.folded_raises,
        alarm.rate_limited,
    )
    if explained:
        line.append(f"  ({explained})", style="dim")
    line.append(f"  [{alarm.alarm_id[:8]}]", style="dim")
    return line


def _table(alarms: list[AlarmData]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(alarms)} active alarm(s), live from the broker")
    for col in ("last change", "severity", "state", "device", "series", "rule", "value", "message"):
        table.add_column(col, no_wrap=col in ("last change", "severity"))
    for a in alarms:
        sev = a.severity.value
        table.add_row(
            _utc(a.event_time.isoformat()),
            Text(sev, style=_STYLE.get(sev, "")),
            a.state.value,
            f"{a.site}/{a.device}",
            alarm_series(a),
            a.rule,
            _num(a.value),
            a.message,
        )
    return table


def _order(alarms: list[AlarmData]) -> list[AlarmData]:
    """Most severe first, then newest."""
    return sorted(alarms, key=lambda a: (-a.severity.rank, -a.event_time.timestamp()))


class _Watch:
    def __init__(
        self,
        settings: GatewaySettings,
        flt: AlarmFilter,
        out: _Output,
        *,
        settle_s: float,
        max_updates: int | None,
    ) -> None:
        self._settings = settings
        self._filter = flt
        self._out = out
        self._settle_s = settle_s
        self._max_updates = max_updates
        self._printed = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        # An operator's tool: the operator's broker user (it may read everything).
        self._mqtt = settings.mqtt.link_settings(
            f"sg-alerts-{secrets.token_hex(4)}", role="operator"
        )
        self._said_down = False
        self.done = asyncio.Event()

    async def run(self) -> None:
        while not self.done.is_set():
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(BrokerError),
                wait=wait_random_exponential(multiplier=0.5, max=30),
                before_sleep=self._before_retry,
                reraise=True,
            )
            await retrying(self._session)
            if not self.done.is_set():
                await asyncio.sleep(0.5)

    async def _before_retry(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else None
        self._said_down = True
        await self._out.feed("reconnecting", str(exc) if exc else None, wait)

    async def _session(self) -> None:
        events_filter, summary_filter = alarm_filters(
            self._settings.topics, site=self._filter.site, device=self._filter.device
        )
        state: dict[tuple[str, str], list[AlarmData]] = {}
        synced = False
        async with connect(self._mqtt, client_id=self._mqtt.client_id) as link:
            # Summaries first: the broker sends their retained copies right after this
            # SUBACK, ahead of any event published after the next one.
            await link.subscribe(summary_filter, events_filter, qos=1)
            if self._said_down:  # back after an outage: say so, then the state again
                self._said_down = False
                await self._out.feed("connected", None, None)
            messages = link.messages()
            try:
                while not self.done.is_set():
                    try:
                        timeout = None if synced else self._settle_s
                        async with asyncio.timeout(timeout):
                            message = await anext(messages)
                    except TimeoutError:  # no more retained summaries: the state is whole
                        synced = await self._sync(state)
                        continue
                    if message.topic.endswith("/active"):
                        if message.retain and not synced:
                            self._take_summary(message.topic, message.payload, state)
                        continue  # live summaries repeat what the events say
                    if not synced:
                        synced = await self._sync(state)
                    await self._event(message.topic, message.payload)
            except BrokerError as exc:
                self._said_down = True
                await self._out.feed("reconnecting", str(exc), None)

    def _take_summary(
        self, topic: str, payload: bytes, state: dict[tuple[str, str], list[AlarmData]]
    ) -> None:
        try:
            key = summary_device(self._settings.topics, topic)
            summary = decode_summary(payload)
        except SensorGateError:
            return  # not a summary of ours: nothing to show
        state[key] = [a for a in summary.alarms if self._filter.accepts(a)]

    async def _sync(self, state: dict[tuple[str, str], list[AlarmData]]) -> bool:
        await self._out.state(_order([a for alarms in state.values() for a in alarms]))
        return True

    async def _event(self, topic: str, payload: bytes) -> None:
        try:
            event = decode_alarm(payload)
        except SensorGateError:
            return
        if event.id in self._seen:
            return  # a QoS 1 re-delivery
        self._seen[event.id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)
        if not self._filter.accepts(event.data):
            return
        transition = event.type.rsplit(".", 2)[1]
        await self._out.event(transition, event.id, event.data)
        self._printed += 1
        if self._max_updates is not None and self._printed >= self._max_updates:
            self.done.set()


def watch_alerts(
    settings: GatewaySettings,
    flt: AlarmFilter,
    *,
    as_json: bool = False,
    settle_s: float = 0.5,
    max_updates: int | None = None,
) -> int:
    """Print the current alarms, then every alarm event, until Ctrl-C or SIGTERM; return 0."""
    out = _Output(as_json=as_json)

    async def main() -> None:
        watch = _Watch(settings, flt, out, settle_s=settle_s, max_updates=max_updates)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, watch.done.set)
        task = asyncio.create_task(watch.run())
        stopper = asyncio.create_task(watch.done.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, stopper):
            pending.cancel()
        results = await asyncio.gather(task, stopper, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    try:
        asyncio.run(main())
    finally:
        out.close()
    return 0
