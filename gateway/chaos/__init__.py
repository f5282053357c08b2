"""``sensorgate chaos``: load through edge agents while processes are killed and stopped."""
