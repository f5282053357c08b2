"""Home Assistant discovery documents: abbreviated keys and the ``~`` topic base.

Home Assistant's MQTT discovery lets a config abbreviate its keys (``stat_t`` for
``state_topic``, ``dev`` for ``device``, ``ids`` for ``identifiers``...) and write
topics relative to a base ``~`` (``"~": "homeassistant/sensor/x"``, ``"stat_t":
"~/state"``). :func:`expand` and :func:`tilde` turn a config into its full form;
:data:`SHARED` lists the options a device-based config (``cmps``) shares with its
components.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ABBREVIATIONS", "DEVICE_ABBREVIATIONS", "SHARED", "expand", "tilde"]

ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "cmps": "components",
    "dev": "device",
    "dev_cla": "device_class",
    "ent_cat": "entity_category",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "name": "name",
    "obj_id": "object_id",
    "o": "origin",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "t": "topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "sug_dsp_prc": "suggested_display_precision",
}
DEVICE_ABBREVIATIONS = {
    "ids": "identifiers",
    "cns": "connections",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "sw": "sw_version",
    "hw": "hw_version",
    "sa": "suggested_area",
    "sn": "serial_number",
}
SHARED = (
    "state_topic",
    "availability",
    "availability_topic",
    "availability_mode",
    "payload_available",
    "payload_not_available",
    "qos",
    "encoding",
    "~",
)


def expand(doc: dict[str, Any], table: dict[str, str] = ABBREVIATIONS) -> dict[str, Any]:
    """Return ``doc`` with abbreviated keys expanded (full keys win over abbreviations)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        full = table.get(key, key)
        if full in out and key != full:
            continue
        out[full] = value
    return out


def tilde(doc: dict[str, Any]) -> dict[str, Any]:
    """Return ``doc`` with ``~`` at the start or end of its topics replaced by its base."""
    base = doc.get("~")
    if not isinstance(base, str):
        return doc
    out = dict(doc)
    for key, value in doc.items():
        if (key.endswith("_topic") or key == "topic") and isinstance(value, str):
            if value.startswith("~"):
                out[key] = base + value[1:]
            elif value.endswith("~"):
                out[key] = value[:-1] + base
    return out
