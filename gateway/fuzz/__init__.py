"""``sensorgate fuzz``: hostile messages through a real gateway and broker, accounted for."""
