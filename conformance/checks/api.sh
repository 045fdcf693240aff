#!/usr/bin/env bash
# Schemathesis against `qlab engine serve`: it reads the API's OpenAPI document
# (`/api/v1/openapi.json`) and sends generated requests, valid and invalid, to every
# operation with the engine's token. Checks: no 5xx (`not_a_server_error`), no status the
# document does not list (`status_code_conformance`), every reply fits its documented schema
# and content type (`response_schema_conformance`, `content_type_conformance`). The engine
# runs on a site whose devices are `qlab sim serve`'s simulators, so accepted commands really
# run; checks/api_hooks.py mixes the site's L-Servers, operation ids and AV servers into the
# generated values so the accepting paths are reached too (drawing among a few site values
# repeats cases, which Hypothesis's `filter_too_much` health check would count against the
# run: it says nothing about the API, so it is off). Bounded: a fixed number of examples per
# operation (API_MAX_EXAMPLES) and a fixed seed (API_SEED): under a minute.
# Needs QLAB, PY and WORK (see conformance/run). Prints the counts; non-zero on any failure.
set -euo pipefail
: "${QLAB:?}" "${PY:?}" "${WORK:?}"
ROOT=$(pwd)
BIN=$(dirname "$PY")
TOPOLOGY=${API_TOPOLOGY:-fixtures/topologies/mixed-site.toml}
[[ $TOPOLOGY = /* ]] || TOPOLOGY=$ROOT/$TOPOLOGY
EXAMPLES=${API_MAX_EXAMPLES:-200}
SEED=${API_SEED:-20261204}
TOKEN=conformance-api-token

wait_ready() { # file pid what
    for _ in $(seq 1 100); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || { echo "api: $3 exited:" >&2; cat "$WORK/$3.err" >&2; exit 1; }
        sleep 0.1
    done
    echo "api: no ready line from $3 within 10 s" >&2
    exit 1
}

"$QLAB" sim serve --plain-http --topology "$TOPOLOGY" --write-config "$WORK/engine.toml" \
    >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
ENGINE=
cleanup() {
    for pid in $ENGINE $SIM; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
wait_ready "$WORK/sim.out" "$SIM" sim

(cd "$WORK" && QLAB_TOKEN=$TOKEN exec "$QLAB" engine serve --config "$WORK/engine.toml") \
    >"$WORK/engine.out" 2>"$WORK/engine.err" &
ENGINE=$!
wait_ready "$WORK/engine.out" "$ENGINE" engine
API=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["api"])' "$WORK/engine.out")

status=0
# From WORK: schemathesis keeps a cache in its working folder.
(
    cd "$WORK"
    export SCHEMATHESIS_HOOKS=api_hooks PYTHONPATH="$ROOT/conformance/checks" \
        QLAB_API_TOPOLOGY="$TOPOLOGY"
    exec "$BIN/schemathesis" run "$API/api/v1/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
        --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
        --phases examples,coverage,fuzzing \
        --request-timeout 10 --no-color \
        --suppress-health-check filter_too_much \
        --report junit --report-dir "$WORK/report"
) >"$WORK/schemathesis.out" 2>&1 || status=$?
cat "$WORK/schemathesis.out"

# The summary counts, from the JUnit report (one test case per operation).
"$PY" - "$WORK/report" <<'PYEOF'
import glob, sys
import xml.etree.ElementTree as ET
cases = failures = errors = 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        cases += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
print(f"api: schemathesis {cases} operations, {failures} failed, {errors} errors")
PYEOF
exit "$status"
