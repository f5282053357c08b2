"""The device detectors of a shard as columns, for its recovery snapshot.

Each :class:`~dataflows.detection.DeviceDetector` snapshots itself as a document per
device with a dict per (series, rule) slot (:meth:`~dataflows.rule_slots.SlotEngine.
snapshot`). A shard's snapshot is taken every epoch, and a deadman and an offline slot
per device made some ten containers per device to build, pickle and collect. Here the
slots of every device are one row each in a few lists: only each slot's detector and
alarm machine remain small dicts (a machine that never saw its condition is one entry,
see :attr:`~dataflows.alarms.AlarmMachine.pristine`). :func:`device_docs` turns the
columns back into the per-device documents the detectors restore from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataflows.detection import DeviceDetector

__all__ = ["device_docs", "slot_columns"]

_SLOT_FIELDS = ("skey", "rule", "fp", "sensor", "metric", "alarm_rule", "last", "det", "alarm")


def slot_columns(detectors: Mapping[int, DeviceDetector]) -> dict[str, Any]:
    """Return the state of ``detectors`` (device index -> detector) as columns.

    ``index`` (the device's), ``site``, ``device`` and ``slots`` (how many rows of the
    slot columns are the detector's) have a row per detector. The slot columns have a row per
    slot, in the detectors' order: its key in the detector, rule id, rule fingerprint,
    the alarm key's sensor, metric and rule name, the last time taken, and the
    detector's and the alarm machine's snapshots.
    """
    devices: list[int] = []
    sites: list[str] = []
    names: list[str] = []
    counts: list[int] = []
    cols: dict[str, list[Any]] = {name: [] for name in _SLOT_FIELDS}
    skey, rule, fp = cols["skey"].append, cols["rule"].append, cols["fp"].append
    sensor, metric, name = cols["sensor"].append, cols["metric"].append, cols["alarm_rule"].append
    last, det, alarm = cols["last"].append, cols["det"].append, cols["alarm"].append
    for dev, detector in detectors.items():
        devices.append(dev)
        sites.append(detector.site)
        names.append(detector.device)
        counts.append(len(detector.slots))
        for key, slot in detector.slots.items():
            alarm_key = slot.machine.key
            skey(key)
            rule(slot.rule_id)
            fp(slot.fingerprint)
            sensor(alarm_key.sensor)
            metric(alarm_key.metric)
            name(alarm_key.rule)
            last(slot.last_us)
            det(None if slot.detector is None else slot.detector.snapshot())
            alarm(slot.machine.snapshot())
    return {"index": devices, "site": sites, "device": names, "slots": counts, **cols}


def device_docs(columns: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Return the per-device documents (``DeviceDetector(state=...)``) of :func:`slot_columns`."""
    rows = zip(*(columns[name] for name in _SLOT_FIELDS), strict=True)
    docs: dict[int, dict[str, Any]] = {}
    for dev, site, device, count in zip(
        columns["index"], columns["site"], columns["device"], columns["slots"], strict=True
    ):
        slots = {}
        for _ in range(count):
            skey, rule, fp, sensor, metric, name, last, det, alarm = next(rows)
            slots[skey] = {
                "rule": rule,
                "fp": fp,
                "key": [sensor, metric, name],
                "last": last,
                "det": det,
                "alarm": alarm,
            }
        docs[int(dev)] = {"site": site, "device": device, "slots": slots}
    if next(rows, None) is not None:
        raise ValueError("the slot columns hold more rows than their devices' counts")
    return docs
