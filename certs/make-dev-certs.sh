#!/usr/bin/env bash
# Makes a development CA and a server certificate for lifeline's tls: listeners and wss.
#
#   certs/make-dev-certs.sh [OUT_DIR] [NAME...]
#
# OUT_DIR defaults to ./certs/dev. NAMEs are extra DNS names or IP addresses for the server
# certificate (localhost, 127.0.0.1 and ::1 are always included). Never commit the output:
# private keys stay on the machine that made them (.gitignore ignores *.pem and *.key).
set -euo pipefail
out=${1:-"$(dirname "$0")/dev"}
shift || true
mkdir -p "$out"
cd "$out"

sans="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then sans+=",IP:$n"; else sans+=",DNS:$n"; fi
done

# The CA: EC P-256, ten years, only for signing the dev server certificate.
if [[ ! -f ca.key ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.pem -days 3650 -subj "/CN=lifeline dev CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
fi

# The server certificate, signed by the CA; browsers and rustls need the SANs.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
cat > server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.pem -days 825 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext
chmod 600 ca.key server.key
echo "CA:          $out/ca.pem (trust this in test clients)"
echo "certificate: $out/server.pem"
echo "key:         $out/server.key"
