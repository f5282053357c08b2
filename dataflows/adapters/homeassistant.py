"""Home Assistant MQTT discovery: learn entities from configs, read their state topics.

Configs arrive on ``<prefix>/<component>/[<node_id>/]<object_id>/config`` (retained),
per entity or, for device-based discovery, on ``<prefix>/device/<object_id>/config``
with the entities under ``cmps`` and shared options (``state_topic``, availability,
``~``) at the top. Abbreviated keys (``stat_t``, ``val_tpl``, ``unit_of_meas``,
``dev_cla``, ``dev``, ``ids``...) are expanded and ``~`` is replaced in topics. An empty
config payload removes the entity.

For each ``sensor`` and ``binary_sensor`` (``components``) the adapter learns the state
topic, the ``value_template`` (the supported subset only: see
:mod:`~dataflows.adapters.hatemplate`; anything richer makes the config a dead letter),
the unit and the device class, the device (``device_from``: first identifier, name or
node id) and the availability topics. A state message then becomes one reading per
entity on that topic: sensor = the entity's object id, metric = its device class (else
the object id); binary sensors read ``payload_on``/``payload_off`` as 1/0. State is
timed by arrival (Home Assistant states carry no time).

The learned entities are plain data (:meth:`HomeAssistantAdapter.snapshot`: the config
payloads by topic). Every topic of one adapter shares one routing key, because a state
topic's device is known only from a config: all Home Assistant devices of an adapter
live on one shard (home-sized fleets).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from dataflows.adapters.base import AdapterFailure, BaseAdapter
from dataflows.adapters.config import HomeAssistantConfig
from dataflows.adapters.ha_config import DEVICE_ABBREVIATIONS, SHARED, expand, tilde
from dataflows.adapters.hatemplate import UNDEFINED, Template, TemplateError, compile_template
from dataflows.adapters.result import AdapterResult, Telemetry
from dataflows.adapters.topicfilter import TopicFilter, covers, matches
from dataflows.adapters.values import NotJson, decode_json

__all__ = ["HomeAssistantAdapter"]


@dataclass(frozen=True, slots=True)
class _Entity:
    config_topic: str
    component: str
    site: str
    device: str
    sensor: str
    metric: str
    unit: str
    state_topic: str
    template: Template | None
    payload_on: str
    payload_off: str


@dataclass(frozen=True, slots=True)
class _Availability:
    config_topic: str
    site: str
    device: str
    available: str
    not_available: str
    template: Template | None


class HomeAssistantAdapter(BaseAdapter):
    """Maps Home Assistant discovery configs and the states they name."""

    kind = "homeassistant"

    def __init__(self, config: HomeAssistantConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._head = config.topic + "/"
        self.configs: dict[str, bytes] = {}
        """Config payloads by config topic: the learned state."""
        self._entities: dict[str, list[_Entity]] = {}
        self._by_state: dict[str, list[_Entity]] = {}
        # Availability topic -> config topic -> what that config says of it; and the
        # availability topics of each config: forgetting a config costs what it named,
        # whatever the number of devices learned (no scan of every availability topic).
        self._by_avty: dict[str, dict[str, _Availability]] = {}
        self._avty_of: dict[str, list[str]] = {}

    def filters(self) -> tuple[TopicFilter, ...]:
        """Configs (retained, not shared) and the configured state filters (shared)."""
        out = [
            TopicFilter(
                f"{self.cfg.topic}/#",
                False,
                "retained discovery configs: MQTT 5 sends no retained message to a shared"
                " subscription, and states need the learned configs on one shard",
            )
        ]
        # A state filter under the discovery prefix is already subscribed by the one
        # above: subscribing it again would deliver each state twice.
        out += [
            TopicFilter(f, True) for f in self.cfg.state_filters if not covers(out[0].filter, f)
        ]
        return tuple(out)

    def route_key(self, topic: str) -> str | None:
        """One key for the whole adapter (a state topic's device comes from a config)."""
        if topic.startswith(self._head) or any(matches(f, topic) for f in self.cfg.state_filters):
            return "all"
        return None

    # -- messages -------------------------------------------------------------------

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        if topic.startswith(self._head):
            if topic.endswith("/config"):
                self._config(topic, payload, out)
            elif topic in self._by_state or topic in self._by_avty:
                self._state(topic, payload, received_us, out)
            else:
                out.ignored = "discovery-prefix topic that is not a config (a birth, a command)"
            return
        if topic not in self._by_state and topic not in self._by_avty:
            raise AdapterFailure(
                f"no discovery config seen so far names {topic!r} as a state or availability"
                f" topic (configs under {self._head!r} are retained and arrive at subscribe)"
            )
        self._state(topic, payload, received_us, out)

    def _config(self, topic: str, payload: bytes, out: AdapterResult) -> None:
        levels = topic[len(self._head) :].split("/")
        if len(levels) not in (3, 4):
            raise AdapterFailure(
                f"config topic {topic!r} is not <prefix>/<component>/[<node_id>/]<object_id>/config"
            )
        self._forget(topic)
        if not payload.strip():
            self.configs.pop(topic, None)
            out.ignored = "empty config: entity removed"
            return
        doc = decode_json(payload)
        if not isinstance(doc, dict):
            raise AdapterFailure(f"a discovery config is a JSON object; got {type(doc).__name__}")
        self.configs[topic] = payload
        errors = self._learn(topic, levels, doc, out)
        for message in errors:
            out.errors.append(self.error(message))
        if not errors:
            out.ignored = "discovery config learned"

    def _learn(
        self, topic: str, levels: list[str], raw: dict[str, Any], out: AdapterResult
    ) -> list[str]:
        doc = tilde(expand(raw))
        component = levels[0]
        node_id = levels[1] if len(levels) == 4 else ""
        object_id = levels[-2]
        device_doc = doc.get("device")
        device_doc = (
            expand(device_doc, DEVICE_ABBREVIATIONS) if isinstance(device_doc, dict) else {}
        )
        site, device = self._identity(device_doc, node_id, object_id)
        if component == "device":
            cmps = doc.get("components")
            if not isinstance(cmps, dict):
                return [f"device-based config {topic!r} has no cmps/components object"]
            shared = {k: doc[k] for k in SHARED if k in doc}
            items = []
            for key, item in cmps.items():
                if not isinstance(item, dict):
                    return [f"component {key!r} of {topic!r} is not an object"]
                merged = tilde({**shared, **expand(item)})
                items.append((str(merged.get("platform", "")), str(key), merged))
        else:
            items = [(component, object_id, doc)]
        errors: list[str] = []
        entities: list[_Entity] = []
        for platform, obj, item in items:
            try:
                entity = self._entity(topic, platform, obj, item, site, device)
            except (AdapterFailure, TemplateError) as exc:
                errors.append(f"entity {obj!r} of {topic!r}: {exc}")
                continue
            self._availability(topic, item, site, device)
            if entity is None:
                out.skipped += 1
                continue
            entities.append(entity)
            self._by_state.setdefault(entity.state_topic, []).append(entity)
            if not any(matches(f, entity.state_topic) for f in self.cfg.state_filters):
                out.notes.append(
                    f"state topic {entity.state_topic!r} of {obj!r} is not covered by"
                    " state_filters: its states are not subscribed"
                )
        self._entities[topic] = entities
        return errors

    def _identity(
        self, device_doc: dict[str, Any], node_id: str, object_id: str
    ) -> tuple[str, str]:
        ids = device_doc.get("identifiers")
        first = ids[0] if isinstance(ids, list) and ids else ids if isinstance(ids, str) else None
        name = device_doc.get("name") if isinstance(device_doc.get("name"), str) else None
        order = {
            "identifiers": (first, name, node_id, object_id),
            "name": (name, first, node_id, object_id),
            "node_id": (node_id, first, name, object_id),
        }[self.cfg.device_from]
        foreign = next(str(x) for x in order if x)
        return self.device_of(foreign)

    def _entity(
        self, topic: str, platform: str, obj: str, item: dict[str, Any], site: str, device: str
    ) -> _Entity | None:
        if platform not in self.cfg.components:
            return None
        state_topic = item.get("state_topic")
        if not isinstance(state_topic, str) or not state_topic:
            raise AdapterFailure("no state_topic")
        template_text = item.get("value_template")
        template = compile_template(template_text) if isinstance(template_text, str) else None
        device_class = item.get("device_class")
        unit = item.get("unit_of_measurement")
        metric_src = device_class if isinstance(device_class, str) and device_class else obj
        return _Entity(
            config_topic=topic,
            component=platform,
            site=site,
            device=device,
            sensor=self.ids("sensor", obj),
            metric=self.metric_name(metric_src),
            unit=unit if isinstance(unit, str) else "",
            state_topic=state_topic,
            template=template,
            payload_on=str(item.get("payload_on", "ON")),
            payload_off=str(item.get("payload_off", "OFF")),
        )

    def _availability(self, topic: str, item: dict[str, Any], site: str, device: str) -> None:
        entries: list[dict[str, Any]] = []
        if isinstance(item.get("availability_topic"), str):
            entries.append({"topic": item["availability_topic"]})
        if isinstance(item.get("availability"), list):
            entries += [expand(e) for e in item["availability"] if isinstance(e, dict)]
        for entry in entries:
            avty_topic = entry.get("topic")
            if not isinstance(avty_topic, str):
                continue
            template_text = entry.get("value_template")
            try:
                template = (
                    compile_template(template_text) if isinstance(template_text, str) else None
                )
            except TemplateError:
                continue
            avail = _Availability(
                topic,
                site,
                device,
                str(entry.get("payload_available", item.get("payload_available", "online"))),
                str(
                    entry.get("payload_not_available", item.get("payload_not_available", "offline"))
                ),
                template,
            )
            known = self._by_avty.setdefault(avty_topic, {})
            if topic not in known:  # an entity of a device-based config names it again
                known[topic] = avail
                self._avty_of.setdefault(topic, []).append(avty_topic)

    def _forget(self, config_topic: str) -> None:
        for entity in self._entities.pop(config_topic, []):
            left = [e for e in self._by_state.get(entity.state_topic, []) if e is not entity]
            if left:
                self._by_state[entity.state_topic] = left
            else:
                self._by_state.pop(entity.state_topic, None)
        for avty_topic in self._avty_of.pop(config_topic, ()):
            known = self._by_avty[avty_topic]
            del known[config_topic]
            if not known:
                del self._by_avty[avty_topic]

    def _state(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        try:
            doc: Any = decode_json(payload)
        except NotJson:
            doc = UNDEFINED
        devices: set[tuple[str, str]] = set()
        for avail in self._by_avty.get(topic, {}).values():
            if (avail.site, avail.device) in devices:
                continue  # another config of the same device names this topic too
            devices.add((avail.site, avail.device))
            text = payload.decode("utf-8", "replace").strip()
            if avail.template is not None:
                text = str(avail.template.render(payload, doc))
            if text == avail.available:
                self.status(
                    out, avail.site, avail.device, True, received_us, "homeassistant availability"
                )
            elif text == avail.not_available:
                self.status(
                    out, avail.site, avail.device, False, received_us, "homeassistant availability"
                )
            else:
                out.errors.append(
                    self.error(
                        f"availability payload {text[:64]!r} is neither {avail.available!r}"
                        f" nor {avail.not_available!r}"
                    )
                )
        by_device: dict[tuple[str, str], Telemetry] = {}
        for entity in self._by_state.get(topic, ()):
            try:
                value = self._read(entity, payload, doc)
            except TemplateError as exc:
                out.errors.append(self.error(f"entity {entity.sensor!r}: {exc}"))
                continue
            if value is UNDEFINED:
                out.skipped += 1
                continue
            key = (entity.site, entity.device)
            tel = by_device.get(key)
            if tel is None:
                tel = by_device[key] = self.telemetry(
                    entity.site, entity.device, topic, payload, received_us, arrival=True
                )
            self.add(
                tel,
                out,
                entity.sensor,
                entity.metric,
                value,
                entity.unit,
                received_us,
                metric=entity.metric,
            )
        out.telemetry.extend(t for t in by_device.values() if len(t))

    def _read(self, entity: _Entity, payload: bytes, doc: Any) -> Any:
        if entity.template is not None:
            value = entity.template.render(payload, doc)
        else:
            value = payload.decode("utf-8", "replace").strip()
        if entity.component == "binary_sensor" and value is not UNDEFINED:
            text = str(value)
            if text == entity.payload_on:
                return True
            if text == entity.payload_off:
                return False
            return UNDEFINED
        return value

    # -- state ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the learned config payloads, by config topic (base64)."""
        return {t: base64.b64encode(p).decode("ascii") for t, p in self.configs.items()}

    def restore(self, state: dict[str, Any]) -> None:
        """Learn again from the saved config payloads."""
        self.configs.clear()
        self._entities.clear()
        self._by_state.clear()
        self._by_avty.clear()
        self._avty_of.clear()
        for topic, text in state.items():
            self._config(topic, base64.b64decode(text), AdapterResult())
