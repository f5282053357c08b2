"""All configured adapters: dispatch by topic, subscriptions, routing keys, state.

Dispatch is by the adapters' topic filters, in file order: the first adapter whose
filter matches a topic and that claims it (a routing key that is not None) adapts it.
Overlapping filters between adapters are resolved by that order; avoid them (a broker
may deliver a message once per matching subscription). Two adapters listing the very
same filter are refused at start.

Routing keys are ``"<adapter name>:<key>"``: adapter names are unique ids (no ``/``),
so they never collide with each other nor with SensorGate's own topics, whose router
key is ``{prefix}/{site}/{device}``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from contract.errors import ConfigError
from dataflows.adapters.base import Adapter
from dataflows.adapters.config import (
    AdaptersConfig,
    HomeAssistantConfig,
    ShellyConfig,
    SparkplugConfig,
    TasmotaConfig,
    TelegrafConfig,
    Zigbee2MqttConfig,
    load_adapters,
)
from dataflows.adapters.homeassistant import HomeAssistantAdapter
from dataflows.adapters.result import AdapterResult
from dataflows.adapters.shelly import ShellyAdapter
from dataflows.adapters.tasmota import TasmotaAdapter
from dataflows.adapters.telegraf import TelegrafAdapter
from dataflows.adapters.topicfilter import TopicFilter, covers, matches
from dataflows.adapters.zigbee2mqtt import Zigbee2MqttAdapter

__all__ = ["AdapterSet", "build_adapter"]

_CACHE_MAX = 200_000


def build_adapter(config: Any) -> Adapter:
    """Return the adapter for one ``[[adapter]]`` table."""
    if isinstance(config, Zigbee2MqttConfig):
        return Zigbee2MqttAdapter(config)
    if isinstance(config, TasmotaConfig):
        return TasmotaAdapter(config)
    if isinstance(config, ShellyConfig):
        return ShellyAdapter(config)
    if isinstance(config, HomeAssistantConfig):
        return HomeAssistantAdapter(config)
    if isinstance(config, SparkplugConfig):
        # Imported here: protobuf's runtime costs every gateway ~5 MB of RSS, and only
        # a gateway with a Sparkplug adapter needs it.
        from dataflows.adapters.sparkplug import SparkplugAdapter

        return SparkplugAdapter(config)
    if isinstance(config, TelegrafConfig):
        return TelegrafAdapter(config)
    raise ConfigError("adapter.kind", f"no adapter for {type(config).__name__}")


class AdapterSet:
    """The adapters of one adapters file (one instance per shard: state is per device)."""

    def __init__(self, config: AdaptersConfig) -> None:
        self.config = config
        self.adapters: list[Adapter] = [build_adapter(c) for c in config.adapter]
        self._filters: list[tuple[str, Adapter]] = []
        seen: dict[str, str] = {}
        for i, adapter in enumerate(self.adapters):
            for item in adapter.filters():
                # Overlapping subscriptions deliver a message once per subscription:
                # every reading would be stored twice.
                other = next(
                    (
                        (f, name)
                        for f, name in seen.items()
                        if covers(f, item.filter) or covers(item.filter, f)
                    ),
                    None,
                )
                if other is not None:
                    raise ConfigError(
                        f"adapter[{i}].topic",
                        f"adapter {adapter.name!r} subscribes {item.filter!r}, which overlaps"
                        f" {other[0]!r} of adapter {other[1]!r}: their messages would arrive"
                        " twice; give them topics that do not overlap",
                    )
                seen[item.filter] = adapter.name
                self._filters.append((item.filter, adapter))
        self._by_topic: dict[str, tuple[Adapter, str] | None] = {}

    @classmethod
    def from_file(cls, path: Path | str) -> AdapterSet:
        """Build from an adapters TOML file."""
        return cls(load_adapters(path))

    def __len__(self) -> int:
        return len(self.adapters)

    def filters(self) -> list[tuple[str, TopicFilter]]:
        """Every subscription, with the name of the adapter that needs it."""
        return [(a.name, f) for a in self.adapters for f in a.filters()]

    def subscriptions(self, share_group: str | None, *, partition: int = 0) -> list[str]:
        """Return the filters one source partition subscribes to.

        Shared filters become ``$share/<group>/...`` on every partition; the others
        (retained state, ordered streams), and every filter when there is no share
        group, are subscribed plainly by partition 0 only.
        """
        out = []
        for _, item in self.filters():
            if item.shared and share_group:
                out.append(f"$share/{share_group}/{item.filter}")
            elif partition == 0:
                out.append(item.filter)
        return out

    def _dispatch(self, topic: str) -> tuple[Adapter, str] | None:
        hit: tuple[Adapter, str] | Literal[False] | None
        hit = self._by_topic.get(topic, False)  # False: not cached (None: no adapter)
        if hit is False:
            hit = None
            for topic_filter, adapter in self._filters:
                if matches(topic_filter, topic):
                    key = adapter.route_key(topic)
                    if key is not None:
                        hit = (adapter, f"{adapter.name}:{key}")
                        break
            if len(self._by_topic) >= _CACHE_MAX:  # bounded: topics are not trusted
                self._by_topic.clear()
            self._by_topic[topic] = hit
        return hit

    def adapter_for(self, topic: str) -> Adapter | None:
        """Return the adapter that takes ``topic``, or None (then it is SensorGate's own)."""
        hit = self._dispatch(topic)
        return None if hit is None else hit[0]

    def route_key(self, topic: str) -> str | None:
        """``"<adapter>:<device key>"`` for an adapter's topic, else None."""
        hit = self._dispatch(topic)
        return None if hit is None else hit[1]

    def router_key_fn(self) -> Callable[[str], str]:
        """Return the ShardRouter's "device part" of a topic: adapter key, else native."""
        route = self.route_key

        def device_part(topic: str) -> str:
            key = route(topic)
            return key if key is not None else (topic.rpartition("/")[0] or topic)

        return device_part

    def adapt(self, topic: str, payload: bytes, received_us: int) -> AdapterResult | None:
        """Map one message with its adapter; None when no adapter takes the topic."""
        hit = self._dispatch(topic)
        return None if hit is None else hit[0].adapt(topic, payload, received_us)

    def snapshot(self) -> dict[str, Any]:
        """Each stateful adapter's state, by adapter name."""
        out = {}
        for adapter in self.adapters:
            state = adapter.snapshot()
            if state:
                out[adapter.name] = state
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Put back :meth:`snapshot`; state of adapters no longer configured is dropped."""
        for adapter in self.adapters:
            if adapter.name in state:
                adapter.restore(state[adapter.name])
