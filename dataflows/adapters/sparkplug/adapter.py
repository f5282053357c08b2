"""Eclipse Sparkplug B: births, data and deaths of edge nodes and their devices.

Topics ``spBv1.0/<group>/<type>/<edge_node>[/<device>]`` carry protobuf payloads
(``sparkplug_b.proto`` beside this file). Per edge node the adapter keeps, as plain data:

* the metric names, data types and engineering units of each BIRTH, by alias, so DATA
  that sends aliases only can be named (aliases are per node, devices included);
* the last ``seq`` (0-255, wrapping): a DATA whose ``seq`` is not the previous plus one
  is a gap, counted, and (``rebirth = true``) answered with a rebirth request, an
  ``NCMD`` with ``Node Control/Rebirth = true`` that the adapter returns for the gateway
  to publish (at most one per ``rebirth_min_interval_s`` per node); the same ``seq``
  twice is a redelivery, not a gap;
* the ``bdSeq`` of the NBIRTH: an NDEATH with another ``bdSeq`` belongs to an older
  session and is ignored (counted), as the specification asks.

DATA before any BIRTH (a gateway started mid-session): metrics that carry names are
read; aliases that are unknown make the message a dead letter (``adapter_error``, detail
``unknown_alias``) and a rebirth is requested. Ints, floats, doubles and booleans
become readings (``Inputs/Temperature`` -> sensor ``Inputs``, metric ``temperature``);
strings, bytes, datasets, templates and nulls are skipped and counted. Status: NBIRTH
and DBIRTH online, DDEATH offline, NDEATH offline for the node and its devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from dataflows.adapters.base import AdapterFailure, BaseAdapter
from dataflows.adapters.config import SparkplugConfig
from dataflows.adapters.result import AdapterResult, Command
from dataflows.adapters.sparkplug import sparkplug_b_pb2 as pb
from dataflows.adapters.topicfilter import TopicFilter

__all__ = ["SparkplugAdapter", "rebirth_payload"]

_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
_SIGNED32 = frozenset({1, 2, 3})
_INT64 = 4
_BOOLEAN = 11
_NUMERIC = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
_UNIT_KEYS = ("engUnit", "EngUnit", "engineering_units", "unit", "units")
_ORDER = "Sparkplug needs one ordered stream per edge node: its seq check and BIRTH before DATA"


def rebirth_payload(timestamp_ms: int) -> bytes:
    """Return the NCMD payload asking an edge node for a rebirth."""
    payload = pb.Payload(timestamp=timestamp_ms)
    metric = payload.metrics.add()
    metric.name = "Node Control/Rebirth"
    metric.datatype = _BOOLEAN
    metric.boolean_value = True
    return payload.SerializeToString()


@dataclass
class _Node:
    """What the adapter knows of one edge node session (plain data for snapshots)."""

    bd_seq: int | None = None
    seq: int | None = None
    born: bool = False
    # alias -> [scope, name, datatype, unit]; scope "" is the node, else the device id
    aliases: dict[int, list[Any]] = field(default_factory=dict)
    # (scope, name) -> [datatype, unit]
    names: dict[str, list[Any]] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    gaps: int = 0
    last_rebirth_us: int = -(2**62)


class SparkplugAdapter(BaseAdapter):
    """Maps Sparkplug B messages (see the module docstring)."""

    kind = "sparkplug"

    def __init__(self, config: SparkplugConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._head = config.topic + "/"
        self.nodes: dict[str, _Node] = {}

    def filters(self) -> tuple[TopicFilter, ...]:
        """Every message type, one ordered stream (not shared)."""
        groups = self.cfg.groups or ("+",)
        out = []
        for group in groups:
            for kind in _TYPES:
                tail = "+/+" if kind.startswith("D") else "+"
                out.append(TopicFilter(f"{self.cfg.topic}/{group}/{kind}/{tail}", False, _ORDER))
        return tuple(out)

    def _parse(self, topic: str) -> tuple[str, str, str, str | None] | None:
        """(group, type, edge node, device) or None."""
        if not topic.startswith(self._head):
            return None
        parts = topic[len(self._head) :].split("/")
        if len(parts) not in (3, 4) or parts[1] not in _TYPES or not all(parts):
            return None
        if (len(parts) == 4) != parts[1].startswith("D"):
            return None
        if self.cfg.groups and parts[0] not in self.cfg.groups:
            return None
        return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None

    def route_key(self, topic: str) -> str | None:
        """Return the edge node (group/node): its devices share its aliases and seq."""
        parsed = self._parse(topic)
        return None if parsed is None else f"{parsed[0]}/{parsed[2]}"

    # -- identity -------------------------------------------------------------------

    def _device(self, group: str, node: str, device: str | None) -> tuple[str, str]:
        foreign = f"{group}/{node}" if device is None else f"{group}/{node}/{device}"
        mapped = self._devices.get(foreign)
        if mapped is not None:
            return mapped
        site = self.ids("site", group) if self.cfg.site_from_group else self.cfg.site
        name = node if device is None else f"{node}{self.cfg.device_separator}{device}"
        return site, self.ids("device", name)

    # -- messages -------------------------------------------------------------------

    def _adapt(self, topic: str, payload: bytes, received_us: int, out: AdapterResult) -> None:
        parsed = self._parse(topic)
        if parsed is None:
            raise AdapterFailure(
                f"topic {topic!r} is not {self._head}<group>/<type>/<edge_node>[/<device>]"
            )
        group, kind, node_id, device_id = parsed
        try:
            msg = pb.Payload.FromString(payload)
        except (DecodeError, ValueError) as exc:
            raise AdapterFailure(f"payload is not a Sparkplug B protobuf ({exc})") from None
        key = f"{group}/{node_id}"
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = _Node()
        site, device = self._device(group, node_id, device_id)
        scope = device_id or ""
        if kind == "NDEATH":
            self._ndeath(msg, node, group, node_id, received_us, out)
            return
        if kind == "NBIRTH":
            node.aliases.clear()
            node.names.clear()
            node.devices.clear()
            node.born = True
            node.seq = msg.seq if msg.HasField("seq") else 0
            node.bd_seq = _bd_seq(msg)
            self.status(out, site, device, True, received_us, "sparkplug NBIRTH", bdSeq=node.bd_seq)
        else:
            self._check_seq(msg, node, group, node_id, kind, received_us, out)
        if kind == "DBIRTH":
            node.aliases = {a: v for a, v in node.aliases.items() if v[0] != scope}
            node.names = {n: v for n, v in node.names.items() if not n.startswith(scope + "\0")}
            if scope not in node.devices:
                node.devices.append(scope)
            self.status(out, site, device, True, received_us, "sparkplug DBIRTH")
        if kind == "DDEATH":
            if scope in node.devices:
                node.devices.remove(scope)
            self.status(out, site, device, False, received_us, "sparkplug DDEATH")
            return
        birth = kind.endswith("BIRTH")
        where = (group, node_id, site, device)
        self._metrics(msg, node, scope, birth, topic, payload, where, received_us, out)
        if not node.born:
            self._rebirth(node, group, node_id, received_us, out, f"{kind} before any NBIRTH")

    def _metrics(
        self,
        msg: pb.Payload,
        node: _Node,
        scope: str,
        birth: bool,
        topic: str,
        payload: bytes,
        where: tuple[str, str, str, str],
        received_us: int,
        out: AdapterResult,
    ) -> None:
        group, node_id, site, device = where
        msg_ms = msg.timestamp if msg.HasField("timestamp") else None
        t_msg, arrival = self.timed(None if msg_ms is None else msg_ms * 1000, received_us)
        low = None
        if msg.HasField("seq") and not arrival:
            low = ((node.bd_seq or 0) & 0xFFF) << 8 | (msg.seq & 0xFF)
        tel = self.telemetry(site, device, topic, payload, t_msg, low, arrival=arrival)
        unknown: list[int] = []
        for metric in msg.metrics:
            info = self._learn(metric, node, scope, birth)
            if info is None:
                unknown.append(metric.alias)
                continue
            name, datatype, unit = info
            if name.startswith(self.cfg.skip_prefixes):
                out.skipped += 1
                continue
            value = _value(metric, datatype)
            if value is None:
                out.skipped += 1
                continue
            t_us = t_msg
            if metric.HasField("timestamp"):
                t_us = self.message_time(metric.timestamp * 1000, received_us)
            sensor, _, leaf = name.rpartition("/")
            self.add(tel, out, sensor or self.cfg.sensor, leaf, value, unit, t_us)
        if len(tel):
            out.telemetry.append(tel)
        if unknown:
            shown = ", ".join(str(a) for a in unknown[:10])
            out.errors.append(
                self.error(
                    f"unknown_alias: {len(unknown)} metric(s) by alias only ({shown}) and no"
                    " BIRTH has named them; a rebirth is requested"
                )
            )
            self._rebirth(node, group, node_id, received_us, out, "unknown alias")

    def _learn(
        self, metric: pb.Payload.Metric, node: _Node, scope: str, birth: bool
    ) -> tuple[str, int, str] | None:
        """(name, datatype, unit) of a metric, learning it from a BIRTH; None if unknown."""
        has_alias = metric.HasField("alias")
        if metric.HasField("name"):
            name = metric.name
            known = node.names.get(f"{scope}\0{name}")
            datatype = metric.datatype or (known[0] if known else 0)
            unit = _unit(metric) or (known[1] if known else "")
            if birth:
                node.names[f"{scope}\0{name}"] = [datatype, unit]
                if has_alias:
                    node.aliases[metric.alias] = [scope, name, datatype, unit]
            return name, datatype, unit
        if has_alias:
            hit = node.aliases.get(metric.alias)
            if hit is not None and hit[0] == scope:
                return hit[1], metric.datatype or hit[2], hit[3]
        return None

    def _check_seq(
        self,
        msg: pb.Payload,
        node: _Node,
        group: str,
        node_id: str,
        kind: str,
        now: int,
        out: AdapterResult,
    ) -> None:
        if not msg.HasField("seq"):
            return
        seq = msg.seq & 0xFF
        if node.seq is None:
            node.seq = seq
            return
        if seq == node.seq:
            out.notes.append(f"{kind} seq {seq} repeated: a redelivery, left to dedupe")
            return
        expected = (node.seq + 1) % 256
        node.seq = seq
        if seq != expected:
            node.gaps += 1
            out.notes.append(f"seq gap on {group}/{node_id}: expected {expected}, got {seq}")
            self._rebirth(
                node, group, node_id, now, out, f"seq gap (expected {expected}, got {seq})"
            )

    def _ndeath(
        self, msg: pb.Payload, node: _Node, group: str, node_id: str, now: int, out: AdapterResult
    ) -> None:
        bd_seq = _bd_seq(msg)
        if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            out.ignored = f"stale NDEATH: bdSeq {bd_seq} is not the current session's {node.bd_seq}"
            return
        for scope in node.devices:
            site, device = self._device(group, node_id, scope)
            self.status(out, site, device, False, now, "sparkplug NDEATH of its edge node")
        site, device = self._device(group, node_id, None)
        self.status(out, site, device, False, now, "sparkplug NDEATH", bdSeq=bd_seq)
        node.born = False
        node.seq = None
        node.devices.clear()

    def _rebirth(
        self, node: _Node, group: str, node_id: str, now: int, out: AdapterResult, why: str
    ) -> None:
        if not self.cfg.rebirth:
            return
        if now - node.last_rebirth_us < self.cfg.rebirth_min_interval_s * 1_000_000:
            return
        node.last_rebirth_us = now
        out.commands.append(
            Command(
                f"{self.cfg.topic}/{group}/NCMD/{node_id}",
                rebirth_payload(now // 1000),
                qos=0,
                retain=False,
                reason=f"rebirth requested: {why}",
            )
        )

    # -- state ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Per edge node: bdSeq, seq, births, aliases, names, devices, gaps."""
        return {
            key: {
                "bd_seq": n.bd_seq,
                "seq": n.seq,
                "born": n.born,
                "aliases": [[a, *v] for a, v in n.aliases.items()],
                "names": [[k, *v] for k, v in n.names.items()],
                "devices": list(n.devices),
                "gaps": n.gaps,
            }
            for key, n in self.nodes.items()
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`snapshot` (rebirth timing starts afresh)."""
        self.nodes = {
            key: _Node(
                bd_seq=s["bd_seq"],
                seq=s["seq"],
                born=s["born"],
                aliases={int(a[0]): list(a[1:]) for a in s["aliases"]},
                names={k[0]: list(k[1:]) for k in s["names"]},
                devices=list(s["devices"]),
                gaps=s["gaps"],
            )
            for key, s in state.items()
        }


def _bd_seq(msg: pb.Payload) -> int | None:
    for metric in msg.metrics:
        if metric.name == "bdSeq":
            kind = metric.WhichOneof("value")
            if kind in ("long_value", "int_value"):
                return int(getattr(metric, kind))
    return None


def _unit(metric: pb.Payload.Metric) -> str:
    if not metric.HasField("properties"):
        return ""
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key in _UNIT_KEYS and value.WhichOneof("value") == "string_value":
            return str(value.string_value)
    return ""


def _value(metric: pb.Payload.Metric, datatype: int) -> float | bool | None:
    """Return the metric's number (signed per its data type), or None if no reading."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None or (datatype and datatype not in _NUMERIC):
        return None
    if kind == "int_value":
        value = metric.int_value
        if datatype in _SIGNED32 and value >= 2**31:
            value -= 2**32
        return float(value)
    if kind == "long_value":
        value = metric.long_value
        if datatype == _INT64 and value >= 2**63:
            value -= 2**64
        return float(value)
    if kind == "float_value":
        return float(metric.float_value)
    if kind == "double_value":
        return float(metric.double_value)
    if kind == "boolean_value":
        return bool(metric.boolean_value)
    return None
