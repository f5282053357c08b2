"""The SensorGate wire contract: events, topics, codecs and errors.

A small leaf package that depends on pydantic only, shared by the edge agent, the
simulators and the gateway.
"""

from contract.codec import DEFAULT_MAX_PAYLOAD_BYTES, decode, decode_as, encode
from contract.errors import (
    BrokerError,
    ConfigError,
    ContractError,
    DecodeError,
    SensorGateError,
    ServiceError,
    StorageError,
    TopicError,
)
from contract.events import (
    DeadLetterData,
    DeadLetterEvent,
    DeviceOfflineEvent,
    DeviceOnlineEvent,
    DeviceStatusData,
    Event,
    Reading,
    TelemetryData,
    TelemetryEvent,
    device_source,
    utc_now,
)
from contract.ids import ID_MAX_LENGTH, check_id
from contract.reasons import DeadLetterReason
from contract.topics import DEFAULT_PREFIX, DeviceTopic, TopicKind, TopicScheme

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_PREFIX",
    "ID_MAX_LENGTH",
    "BrokerError",
    "ConfigError",
    "ContractError",
    "DeadLetterData",
    "DeadLetterEvent",
    "DeadLetterReason",
    "DecodeError",
    "DeviceOfflineEvent",
    "DeviceOnlineEvent",
    "DeviceStatusData",
    "DeviceTopic",
    "Event",
    "Reading",
    "SensorGateError",
    "ServiceError",
    "StorageError",
    "TelemetryData",
    "TelemetryEvent",
    "TopicError",
    "TopicKind",
    "TopicScheme",
    "check_id",
    "decode",
    "decode_as",
    "device_source",
    "encode",
    "utc_now",
]
