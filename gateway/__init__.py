"""SensorGate gateway package."""
