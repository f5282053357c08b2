"""InfluxDB: line protocol, writers (v1 HTTP API and v2 via influxdb-client), queries."""
