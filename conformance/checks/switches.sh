#!/usr/bin/env bash
# The vendors' client libraries against `qlab sim serve`: Arista's pyeapi against the eAPI
# simulator and nxapi-plumbing (the NX-API library inside NAPALM's NX-OS driver) against the
# NX-API simulator. Each reads `show version`, reads an access VLAN, sets it, reads it back
# and saves the running config, over plain HTTP. Prints counts; exits non-zero on any failure.
set -euo pipefail
: "${QLAB:?} ${PY:?} ${WORK:?}"
TOPOLOGY=${SWITCHES_TOPOLOGY:-fixtures/topologies/mixed-site.toml}

# Plain HTTP: the libraries are pointed at a URL, not at the lab's CA.
"$QLAB" sim serve --plain-http --topology "$TOPOLOGY" --write-config "$WORK/engine.toml" >"$WORK/ready.json" 2>"$WORK/serve.log" &
SERVE=$!
trap 'kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    [ -s "$WORK/ready.json" ] && break
    kill -0 "$SERVE" 2>/dev/null || { echo "sim serve exited:"; cat "$WORK/serve.log"; exit 1; }
    sleep 0.1
done
[ -s "$WORK/ready.json" ] || { echo "no ready line from sim serve within 10 s"; exit 1; }

"$PY" - "$WORK/ready.json" <<'PYEOF'
import json
import sys
from urllib.parse import urlparse

import pyeapi
from nxapi_plumbing import Device
from nxapi_plumbing.errors import NXAPIError

ready = json.loads(open(sys.argv[1]).readline())
devices = ready["devices"]
checks = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    checks["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + (f": {detail}" if detail and not ok else ""))


def host_port(url):
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


# --- Arista eAPI with pyeapi (node.enable / node.config / api('switchports'|'vlans')) ---
host, port = host_port(devices["ea-1"])
node = pyeapi.connect(transport="http", host=host, port=port,
                      username="qlab", password="qlab", return_node=True)
port_name, target = "Ethernet11", 911
version = node.enable("show version")[0]["result"]
check("eapi show version (json)", bool(version.get("version")) and bool(version.get("modelName")), version)
text = node.enable("show version", encoding="text")[0]["result"]["output"]
check("eapi show version (text)", "Software image version" in text, text)
vlans = node.enable("show vlan")[0]["result"]["vlans"]
check("eapi show vlan", port_name in vlans.get("111", {}).get("interfaces", {}), vlans)
sp = node.api("switchports").get(port_name)
check("eapi switchports.get before", sp is not None and sp["access_vlan"] == "111" and sp["mode"] == "access", sp)
ok = node.api("switchports").set_mode(port_name, "access")
check("eapi switchport mode access", ok)
ok = node.api("switchports").set_access_vlan(port_name, str(target))
check("eapi set_access_vlan", ok)
node.refresh()
sp = node.api("switchports").get(port_name)
check("eapi switchports.get after", sp is not None and sp["access_vlan"] == str(target), sp)
show = node.enable(f"show interfaces {port_name} switchport")[0]["result"]
got = show["switchports"][port_name]["switchportInfo"]["accessVlanId"]
check("eapi show interfaces switchport", got == target, show)
block = node.enable(f"show running-config interfaces {port_name}", encoding="text")[0]["result"]["output"]
check("eapi show running-config interfaces", f"switchport access vlan {target}" in block, block)
check("eapi vlans api", node.api("vlans").get(str(target)) is not None)
saved = node.enable("copy running-config startup-config")[0]["result"]
check("eapi copy running-config startup-config", "messages" in saved, saved)
try:
    node.config(["interface Ethernet11", "switchport access vlan 5000"])
    check("eapi bad vlan refused", False, "accepted")
except pyeapi.eapilib.CommandError as exc:
    check("eapi bad vlan refused", exc.error_code == 1002, exc)

# --- Cisco NX-API with nxapi-plumbing (NAPALM's NX-OS library) ---
host, port = host_port(devices["nx-1"])
dev = Device(host=host, username="qlab", password="qlab", transport="http", port=port,
             api_format="jsonrpc")
port_name, target = "Ethernet1/11", 910
version = dev.show("show version")
check("nxapi show version (cli)", version.get("host_name") == "nx-1" and "sys_ver_str" in version, version)
text = dev.show("show version", raw_text=True)
check("nxapi show version (cli_ascii)", "NXOS: version" in text, text)
brief = dev.show("show vlan brief")
rows = brief["TABLE_vlanbriefxbrief"]["ROW_vlanbriefxbrief"]
rows = rows if isinstance(rows, list) else [rows]
on_110 = [r for r in rows if r["vlanshowbr-vlanid"] == "110"]
check("nxapi show vlan brief", bool(on_110) and port_name in on_110[0].get("vlanshowplist-ifidx", ""), rows)
def access_vlan():
    body = dev.show(f"show interface {port_name} switchport")
    return body["TABLE_interface"]["ROW_interface"]["access_vlan"]
check("nxapi read access vlan before", access_vlan() == "110")
dev.config_list([f"interface {port_name}", "switchport mode access", f"switchport access vlan {target}"])
check("nxapi read access vlan after", access_vlan() == str(target))
running = dev.show(f"show running-config interface {port_name}", raw_text=True)
check("nxapi show running-config interface", f"switchport access vlan {target}" in running, running)
check("nxapi save (copy run startup-config)", dev.save() is True)
try:
    dev.config_list([f"interface {port_name}", "switchport access vlan 5000"])
    check("nxapi bad vlan refused", False, "accepted")
except NXAPIError as exc:
    check("nxapi bad vlan refused", True)

print(f"switches: {checks['passed']} passed, {checks['failed']} failed")
sys.exit(1 if checks["failed"] else 0)
PYEOF
