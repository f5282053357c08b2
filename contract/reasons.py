"""The fixed list of reasons a message becomes a dead letter.

This list is part of the contract: dashboards and alert rules filter on these
values, so a reason is only ever added, never renamed.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeadLetterReason"]


class DeadLetterReason(StrEnum):
    """Why the gateway could not accept a message."""

    NOT_JSON = "not_json"
    """The payload is not UTF-8 JSON."""
    SCHEMA_VIOLATION = "schema_violation"
    """JSON, but not an event of a known type with valid fields."""
    UNKNOWN_MAJOR_VERSION = "unknown_major_version"
    """A known event family with a major version this gateway does not speak."""
    TOPIC_MISMATCH = "topic_mismatch"
    """The event names another site/device than the topic it was published on."""
    OVERSIZE = "oversize"
    """The payload is larger than the configured limit."""
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    """A reading's event time is too far in the future or the past."""
    LATE = "late"
    """A reading arrived after its event-time window was closed and written."""
    WRITE_REJECTED = "write_rejected"
    """InfluxDB refused the point as bad data (HTTP 4xx)."""
    DECODE_ERROR = "decode_error"
    """Any other failure while decoding."""
    ADAPTER_ERROR = "adapter_error"
    """A foreign payload (Zigbee2MQTT, Tasmota, Shelly, Home Assistant, Sparkplug B,
    Telegraf) that its configured adapter could not map; the error names the adapter."""
    CARDINALITY = "cardinality"
    """The message would add a device or series beyond the gateway's configured caps
    (series per device, devices or series per gateway); kept whole so nothing is lost."""
    PUBLISH_REFUSED = "publish_refused"
    """The broker refused a message the gateway published (an alarm event or summary):
    its ACL does not let the gateway write that topic (MQTT 5 PUBACK reason code, e.g.
    0x87). The message is kept whole here; the error names the topic and the code."""
