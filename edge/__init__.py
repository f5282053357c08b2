"""SensorGate edge package."""
