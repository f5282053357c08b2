"""The dashboard's live alarm feed: one MQTT subscription, kept up with backoff.

:class:`AlarmFeed` holds one aiomqtt connection (:mod:`gateway.connectors.aio_mqtt`) subscribed
to ``{prefix}/+/+/alarms`` (the topic filter of :class:`contract.TopicScheme`). Each
alarm event goes on the :class:`~gateway.dashboard.board.AlarmBoard`, and a change
reaches every browser through the hub at once. The same connection publishes the
acknowledge command.

When the broker goes away the feed reconnects with a randomised exponential backoff
(tenacity: full jitter, ``backoff_min_s`` to ``backoff_max_s``), and says so: its
:class:`FeedState` (``connecting``, ``connected``, ``reconnecting`` with the error and
the next try, or ``off``) is sent to the page as a ``feed`` event. Meanwhile the
InfluxDB poll keeps the board right, only less promptly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from contract.alarms import decode_alarm
from contract.errors import BrokerError, SensorGateError
from contract.topics import TopicKind
from edge.mqtt import MqttSettings
from gateway.connectors.aio_mqtt import AioLink, connect
from gateway.dashboard.board import AlarmBoard
from gateway.settings import GatewaySettings
from gateway.views.rows import utc_iso

__all__ = ["AlarmFeed", "FeedState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedState:
    """Where the live feed stands, as the page shows it."""

    state: str
    """``connecting``, ``connected``, ``reconnecting`` or ``off``."""
    since: str
    """When it entered this state (ISO 8601 UTC)."""
    broker: str = ""
    error: str | None = None
    retry_in_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class AlarmFeed:
    """Keeps one MQTT subscription to the alarm events; applies them to the board."""

    def __init__(
        self,
        settings: GatewaySettings,
        board: AlarmBoard,
        *,
        on_board_change: Callable[[], None],
        on_state: Callable[[FeedState], None],
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._board = board
        self._on_board_change = on_board_change
        self._on_state = on_state
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._link: AioLink | None = None
        # Its own broker user (mqtt.dashboard), over the gateway side's TLS: it reads alarms;
        # the broker's ACL decides whether it may acknowledge.
        self._mqtt = settings.mqtt.link_settings(
            f"sg-dashboard-{secrets.token_hex(4)}", role="dashboard"
        )
        self.state = FeedState("connecting", utc_iso(), self._mqtt.url)
        self.first_attempt = asyncio.Event()
        """Set once the first connection attempt has succeeded or failed."""
        self.events = 0
        """Alarm events applied since start."""

    async def run(self) -> None:
        """Stay subscribed until cancelled, reconnecting with backoff."""
        while True:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(BrokerError),
                wait=wait_random_exponential(
                    multiplier=self._backoff_min_s, max=self._backoff_max_s
                ),
                before_sleep=self._before_retry,
                reraise=True,
            )
            await retrying(self._session)
            # The link was up and then lost: a fresh backoff, after a short pause so
            # that a broker accepting and at once dropping us is not hammered.
            await asyncio.sleep(self._backoff_min_s)

    @property
    def link_settings(self) -> MqttSettings:
        """How the feed connects: the dashboard's broker user, TLS as configured."""
        return self._mqtt

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 on the feed's connection and wait for the PUBACK.

        :class:`BrokerError` if the link is down, no PUBACK comes, or the broker refuses
        the publish (the shipped ACL refuses the dashboard's commands).
        """
        link = self._link
        if link is None:
            raise BrokerError(
                f"not connected to the MQTT broker ({self.state.state}): cannot send the command"
            )
        await link.publish(topic, payload, qos=1)

    async def _session(self) -> None:
        topic_filter = self._settings.topics.subscription(TopicKind.ALARMS)
        try:
            async with connect(self._mqtt, client_id=self._mqtt.client_id) as link:
                await link.subscribe(topic_filter, qos=1)
                self._link = link
                self._set(FeedState("connected", utc_iso(), self._mqtt.url))
                self.first_attempt.set()
                log.info("dashboard: alarm feed subscribed to %s", topic_filter)
                try:
                    async for message in link.messages():
                        self._apply(message.topic, message.payload)
                except BrokerError as exc:
                    # Lost after being up: report it, and return so the next attempt
                    # starts a fresh backoff.
                    log.warning("dashboard: alarm feed lost: %s", exc)
                    self._set(FeedState("reconnecting", utc_iso(), self._mqtt.url, str(exc), 0.0))
                finally:
                    self._link = None
        except BrokerError:
            self.first_attempt.set()
            raise

    def _apply(self, topic: str, payload: bytes) -> None:
        try:
            event = decode_alarm(payload)
        except SensorGateError as exc:
            log.warning("dashboard: ignoring a bad alarm event on %s: %s", topic, exc)
            return
        self.events += 1
        if self._board.apply_event(event):
            self._on_board_change()

    def _before_retry(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else None
        state = "connecting" if self.state.state == "connecting" else "reconnecting"
        log.warning(
            "dashboard: alarm feed: %s; next try in %.1f s", exc, wait if wait is not None else 0
        )
        self._set(
            FeedState(
                state,
                self.state.since if self.state.state == state else utc_iso(),
                self._mqtt.url,
                str(exc) if exc else None,
                None if wait is None else round(wait, 1),
            )
        )

    def _set(self, state: FeedState) -> None:
        self.state = state
        self._on_state(state)
