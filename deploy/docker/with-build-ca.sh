#!/bin/sh
# Runs "$@" trusting the CA bundle passed as the build secret `ca-certificates`, when one is
# (builds behind a TLS-intercepting proxy: `--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt`);
# without it, the image's own CA certificates. Only build stages use it: the bundle never lands in
# a layer.
set -eu
bundle=/run/secrets/ca-certificates
if [ -s "$bundle" ]; then
    export SSL_CERT_FILE="$bundle" PIP_CERT="$bundle"
fi
exec "$@"
