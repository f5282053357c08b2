"""Eclipse Sparkplug B: the adapter and the protobuf code generated from ``sparkplug_b.proto``."""

from dataflows.adapters.sparkplug.adapter import SparkplugAdapter, rebirth_payload

__all__ = ["SparkplugAdapter", "rebirth_payload"]
