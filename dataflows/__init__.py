"""SensorGate dataflows package."""
