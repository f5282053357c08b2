"""The SensorGate wire contract: events, topics, codecs and errors.

A small leaf package that depends on pydantic only, shared by the edge agent, the
simulators and the gateway.
"""

from contract.alarms import (
    AlarmAcknowledgedEvent,
    AlarmClearedEvent,
    AlarmData,
    AlarmEvent,
    AlarmRaisedEvent,
    AlarmState,
    AlarmUpdatedEvent,
    Severity,
    alarm_id_for,
    decode_alarm,
    encode_alarm,
)
from contract.codec import DEFAULT_MAX_PAYLOAD_BYTES, decode, decode_as, encode
from contract.errors import (
    BrokerError,
    ConfigError,
    ContractError,
    DecodeError,
    SensorGateError,
    ServiceError,
    StorageError,
    TimeFormatError,
    TopicError,
)
from contract.events import (
    DEFAULT_DEADLETTER_KEEP_BYTES,
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
    "DEFAULT_DEADLETTER_KEEP_BYTES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_PREFIX",
    "ID_MAX_LENGTH",
    "AlarmAcknowledgedEvent",
    "AlarmClearedEvent",
    "AlarmData",
    "AlarmEvent",
    "AlarmRaisedEvent",
    "AlarmState",
    "AlarmUpdatedEvent",
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
    "Severity",
    "StorageError",
    "TelemetryData",
    "TelemetryEvent",
    "TimeFormatError",
    "TopicError",
    "TopicKind",
    "TopicScheme",
    "alarm_id_for",
    "check_id",
    "decode",
    "decode_alarm",
    "decode_as",
    "device_source",
    "encode",
    "encode_alarm",
    "utc_now",
]
