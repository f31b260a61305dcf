#!/bin/sh
# Registers Baton's search attributes (all Keyword) in a Temporal namespace; safe to run again
# (an attribute already there with that type is left alone). The temporal CLI reads the server and
# namespace from TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE (and its TLS / API-key variables), so the
# same script serves docker-compose (temporalio/admin-tools), a Kubernetes Job and a shell:
#   TEMPORAL_ADDRESS=temporal-frontend:7233 TEMPORAL_NAMESPACE=baton ./register-search-attributes.sh
# Waits up to $WAIT_S seconds (default 120) for the server to answer first. One create per
# attribute: `create --name A --name B --type Keyword` registers only A (temporal CLI 1.x).
set -eu

# baton.temporal.SearchAttributes.ALL (tests/unit/test_compose.py keeps the two the same).
ATTRIBUTES="BatonApp BatonState BatonStep BatonOutcome BatonCommit BatonPR BatonEnvironment BatonGate BatonStage"
TEMPORAL="${TEMPORAL_CLI:-temporal}"
WAIT_S="${WAIT_S:-120}"

waited=0
until "$TEMPORAL" operator cluster health >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_S" ]; then
        echo "register-search-attributes: Temporal at ${TEMPORAL_ADDRESS:-127.0.0.1:7233} did not answer within ${WAIT_S}s" >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done
for name in $ATTRIBUTES; do
    "$TEMPORAL" operator search-attribute create --name "$name" --type Keyword >/dev/null
    echo "register-search-attributes: $name (Keyword) in ${TEMPORAL_NAMESPACE:-default}"
done
