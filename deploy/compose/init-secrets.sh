#!/bin/sh
# Make the secrets of the compose stack as files in ./secrets (or $1): random passwords
# and the InfluxDB token, and a private CA with the broker's TLS certificate.
# Existing files are kept, so running it again changes nothing; delete a file to renew
# it. Needs openssl. The CA key stays in secrets/ca/ and is mounted nowhere.
#
#   ./init-secrets.sh                 # then: docker compose up -d
#   SG_BROKER_NAMES="DNS:broker.lan,IP:192.0.2.10" ./init-secrets.sh   # extra names for
#                                     # the broker certificate (devices off this host)
set -eu
cd "$(dirname "$0")"
dir="${1:-secrets}"
mkdir -p "$dir/ca"
chmod 0700 "$dir" "$dir/ca"
umask 077

random() {
    # 32 characters of [A-Za-z0-9]: no quoting trouble in any config or header.
    openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | cut -c1-32
}

for name in influx_admin_password influx_token grafana_admin_password \
    mqtt_gateway_password mqtt_simulator_password mqtt_edge_password mqtt_operator_password; do
    if [ ! -s "$dir/$name" ]; then
        random > "$dir/$name"
        echo "made $dir/$name"
    fi
done
[ -s "$dir/influx_admin_user" ] || printf 'admin\n' > "$dir/influx_admin_user"

if [ ! -s "$dir/ca/ca.key" ]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
        -subj "/CN=SensorGate compose CA" \
        -keyout "$dir/ca/ca.key" -out "$dir/mqtt_ca_crt" 2>/dev/null
    rm -f "$dir/mqtt_broker_crt"
    echo "made the CA: $dir/mqtt_ca_crt (give it to devices as their ca_file)"
fi
if [ ! -s "$dir/mqtt_broker_crt" ]; then
    names="DNS:mosquitto,DNS:localhost,IP:127.0.0.1${SG_BROKER_NAMES:+,$SG_BROKER_NAMES}"
    openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=mosquitto" \
        -keyout "$dir/mqtt_broker_key" -out "$dir/ca/broker.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' \
        "$names" > "$dir/ca/broker.ext"
    openssl x509 -req -sha256 -days 825 -in "$dir/ca/broker.csr" \
        -CA "$dir/mqtt_ca_crt" -CAkey "$dir/ca/ca.key" \
        -CAcreateserial -CAserial "$dir/ca/ca.srl" \
        -extfile "$dir/ca/broker.ext" -out "$dir/mqtt_broker_crt" 2>/dev/null
    echo "made the broker certificate for $names"
fi
# The containers read the files as their own users (mosquitto, influxdb, grafana,
# uid 10001): readable by all here, inside a directory only the owner can list.
# Stricter: chown each file to the uid that reads it and keep 0400.
chmod 0644 "$dir"/influx_* "$dir"/grafana_* "$dir"/mqtt_*
chmod 0711 "$dir"
