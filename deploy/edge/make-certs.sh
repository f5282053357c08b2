#!/bin/sh
# Make the TLS files of a SensorGate broker (docs/security.md, "Certificates"):
#
#   ca.crt, ca.key                  the broker's CA: every client gets ca.crt as tls.ca_file
#   broker.crt, broker.key          the broker's certificate (listeners 8883 and 8884)
#   clients-ca.crt, clients-ca.key  the CA of the services listener (8884): it signs the
#                                   role certificates below and nothing else (no device)
#   ROLE.crt, ROLE.key              a client certificate per role (CN = the role's user)
#
#   ./make-certs.sh [DIR] [ROLE...]     # DIR defaults to ./certs; roles default to
#                                       # sg-gateway sg-operator sg-dashboard
#   SG_BROKER_NAMES="DNS:broker.lan,IP:192.0.2.10" ./make-certs.sh /etc/mosquitto/certs
#
# Existing files are kept, so running it again only adds what is missing (delete a file
# to renew it). The CA keys are needed only to sign: keep them off the broker. Needs openssl.
set -eu
dir="${1:-certs}"
[ "$#" -gt 0 ] && shift
roles="${*:-sg-gateway sg-operator sg-dashboard}"
days="${SG_CERT_DAYS:-825}"
mkdir -p "$dir"
umask 077
# EC P-256 keys: small, fast, and accepted by mosquitto, paho, httpx and urllib3.
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"

ca() {  # NAME CN
    if [ ! -s "$dir/$1.key" ]; then
        openssl req -x509 $key -sha256 -nodes -days 3650 -subj "/CN=$2" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$dir/$1.key" -out "$dir/$1.crt" 2>/dev/null
        echo "made $dir/$1.crt"
    fi
}

leaf() {  # NAME CA EXTENSIONS
    if [ ! -s "$dir/$1.crt" ]; then
        openssl req $key -sha256 -nodes -subj "/CN=$1" \
            -keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
        printf '%s\n' "$3" > "$dir/$1.ext"
        openssl x509 -req -sha256 -days "$days" -in "$dir/$1.csr" \
            -CA "$dir/$2.crt" -CAkey "$dir/$2.key" -CAcreateserial -CAserial "$dir/$2.srl" \
            -extfile "$dir/$1.ext" -out "$dir/$1.crt" 2>/dev/null
        rm -f "$dir/$1.csr" "$dir/$1.ext"
        echo "made $dir/$1.crt (signed by $2)"
    fi
}

ca ca "SensorGate broker CA"
ca clients-ca "SensorGate services CA"
names="DNS:localhost,IP:127.0.0.1${SG_BROKER_NAMES:+,$SG_BROKER_NAMES}"
leaf broker ca "subjectAltName=$names
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
for role in $roles; do
    leaf "$role" clients-ca "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
done
# Certificates are public; keys stay readable by their owner only (give broker.key to
# the user mosquitto runs as, each ROLE.key to the user of that role).
chmod 0644 "$dir"/*.crt
