"""SensorGate simulators package."""
