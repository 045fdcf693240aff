#!/usr/bin/env bash
# Redfish: DMTF's Service Validator and Protocol Validator, then sushy and DMTF's `redfish`
# library, against the simulated BMC of a fixture topology (`qlab sim serve --plain-http`:
# plain HTTP on loopback, as the validators take no CA). Needs QLAB, PY and WORK (see conformance/run).
#
# - Service Validator: 0 FAIL, with session and with Basic authentication. It reads the DMTF
#   CSDL files from conformance/redfish-schemas/ (--skipschema: it downloads nothing).
# - Protocol Validator: 0 FAIL except the assertions listed in conformance/redfish-protocol-na.md.
# - Clients (checks/redfish.clients.py): each finds the system, reads PowerState and resets it.
set -euo pipefail
: "${QLAB:?}" "${PY:?}" "${WORK:?}"
ROOT=$(pwd)
BIN=$(dirname "$PY")
TOPOLOGY=fixtures/topologies/vdi-small.toml
BMC=irmc-sbc-01
NA_FILE=conformance/redfish-protocol-na.md

"$QLAB" sim serve --plain-http --topology "$TOPOLOGY" --write-config "$WORK/engine.toml" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE=$!
trap 'kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true' EXIT

# The ready line, at most 10 s.
for _ in $(seq 1 100); do
    if [ -s "$WORK/serve.out" ]; then break; fi
    if ! kill -0 "$SERVE" 2>/dev/null; then
        echo "redfish: qlab sim serve exited:" >&2
        cat "$WORK/serve.err" >&2
        exit 1
    fi
    sleep 0.1
done
read -r URL USER PASSWORD < <("$PY" - "$WORK/serve.out" "$WORK/engine.toml" "$BMC" <<'PYEOF'
import json, sys, tomllib
ready = json.loads(open(sys.argv[1]).readline())
url = ready["devices"][sys.argv[3]]
config = tomllib.load(open(sys.argv[2], "rb"))
device = next(d for d in config["devices"] if d["name"] == sys.argv[3])
print(url, device["user"], device["password"])
PYEOF
)
echo "redfish: $BMC at $URL"

# --- DMTF Redfish Service Validator ------------------------------------------------------------
service_fail=0
for auth in Session Basic; do
    out="$WORK/service-$auth.txt"
    set +e
    (cd "$WORK" && timeout 600 "$BIN/rf_service_validator" --rhost "$URL" --user "$USER" \
        --password "$PASSWORD" --authtype "$auth" --skipschema \
        --schema_directory "$ROOT/conformance/redfish-schemas" --logdir "$WORK/service-$auth" \
        --timeout 10) >"$out" 2>&1
    rc=$?
    set -e
    # The summary table's value row: | PASS | WARN | FAIL | NOT TESTED |
    counts=$(grep -A2 'NOT TESTED' "$out" | grep -E '^\| +[0-9]' | tr -d '|' | xargs || true)
    read -r pass warn fail skip <<<"${counts:-x x x x}"
    echo "redfish-service-validator ($auth): PASS $pass, WARN $warn, FAIL $fail, NOT TESTED $skip"
    if [ "$rc" -ne 0 ] || [ "$fail" != "0" ]; then
        grep -iE 'fail|error' "$out" | head -40 >&2 || true
        service_fail=1
    fi
done
if [ "$service_fail" -ne 0 ]; then
    echo "redfish: the service validator reported failures (logs in $WORK)" >&2
    exit 1
fi

# --- DMTF Redfish Protocol Validator ----------------------------------------------------------
set +e
(cd "$WORK" && timeout 900 "$BIN/rf_protocol_validator" --rhost "$URL" --user "$USER" \
    --password "$PASSWORD" --report-dir "$WORK/protocol" --report-type tsv) \
    >"$WORK/protocol.txt" 2>&1
set -e
tsv=$(ls "$WORK"/protocol/*.tsv 2>/dev/null | head -1 || true)
if [ -z "$tsv" ]; then
    echo "redfish: the protocol validator wrote no report" >&2
    tail -20 "$WORK/protocol.txt" >&2
    exit 1
fi
"$PY" - "$tsv" "$NA_FILE" <<'PYEOF'
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
# Assertion ids judged not applicable: the first column of the table in the N/A file.
na = set(re.findall(r"^\| `([A-Z0-9_]+)`", open(sys.argv[2]).read(), re.M))
counts = {}
for r in rows:
    counts[r["Result"]] = counts.get(r["Result"], 0) + 1
fails = [r for r in rows if r["Result"] == "FAIL"]
unexpected = [r for r in fails if r["Assertion"] not in na]
print("redfish-protocol-validator: PASS {}, WARN {}, FAIL {} ({} not applicable, {} applicable), "
      "NOT TESTED {}".format(counts.get("PASS", 0), counts.get("WARN", 0), len(fails),
                             len(fails) - len(unexpected), len(unexpected),
                             counts.get("NOT_TESTED", 0)))
for r in unexpected:
    print("  FAIL {} {} {} {}: {}".format(r["Assertion"], r["Method"], r["Status code"], r["URI"],
                                        r["Message"]), file=sys.stderr)
sys.exit(1 if unexpected else 0)
PYEOF

# --- Independent clients ----------------------------------------------------------------------
"$PY" conformance/checks/redfish.clients.py "$URL" "$USER" "$PASSWORD"
echo "redfish: all checks passed"
