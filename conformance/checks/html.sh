#!/usr/bin/env bash
# report.html in a real browser: headless Chromium from the Debian packages (installed here with
# apt-get when missing) opens the library's page (reports/latest when a run left one, else a
# run of two folders), the page of outbreak-10000 and the page of a failing run, over the
# DevTools protocol (checks/html_check.py, standard library only). Each page must load with no
# console error, no exception, no failed load and no request for anything but itself; a
# screenshot of each lands in reports/html-check/. Needs QLAB and WORK (see conformance/run).
set -euo pipefail
: "${QLAB:?}" "${WORK:?}"

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "html: installing chromium from the Debian packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "html: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
        exit 1
    fi
fi

pages=()
if [ -f reports/latest/report.html ]; then
    pages+=(reports/latest/report.html)
else
    "$QLAB" run scenarios/ingest scenarios/rollback --report-dir "$WORK/library" >/dev/null
    pages+=("$WORK/library/report.html")
fi
"$QLAB" run scenarios/outbreak/outbreak-10000.toml --report-dir "$WORK/outbreak-10000" >/dev/null
pages+=("$WORK/outbreak-10000/report.html")
# A broken engine (a checker self-test) makes rollback scenarios fail: their sections show the
# violated invariant, the history excerpt and the replay line.
if "$QLAB" run scenarios/rollback --mutant leak-ip-on-rollback --report-dir "$WORK/failing" >/dev/null 2>&1; then
    echo "html: the failing run passed; it must fail to show a failed scenario's page" >&2
    exit 1
fi
pages+=("$WORK/failing/report.html")

python3 conformance/checks/html_check.py chromium reports/html-check "${pages[@]}"
