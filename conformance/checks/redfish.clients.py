"""Independent Redfish clients against one simulated BMC: OpenStack's sushy and DMTF's
`redfish` library each find the system, read PowerState and force-restart it, once with a
session and once with HTTP Basic. Prints one count line per library; exits non-zero on the
first failed check.

Usage: python redfish.clients.py BASE_URL USER PASSWORD
"""

import sys

import redfish
import sushy
from sushy import auth as sushy_auth

checks = {"sushy": 0, "redfish": 0}


def check(library, ok, what):
    if not ok:
        print(f"FAIL {library}: {what}")
        sys.exit(1)
    checks[library] += 1


def with_sushy(base, user, password, auth):
    root = sushy.Sushy(base + "/redfish/v1/", auth=auth(username=user, password=password))
    systems = root.get_system_collection()
    members = systems.get_members()
    check("sushy", len(members) == 1, f"one system listed, got {len(members)}")
    system = root.get_system()  # the only one, found by sushy itself
    check("sushy", system.path == members[0].path, "get_system() is the listed system")
    check("sushy", system.power_state == sushy.PowerState.ON, f"PowerState On, got {system.power_state}")
    allowed = system.get_allowed_reset_system_values()
    check("sushy", sushy.ResetType.FORCE_RESTART in allowed, f"ForceRestart allowed: {allowed}")
    system.reset_system(sushy.ResetType.FORCE_RESTART)
    system.refresh()
    check("sushy", system.power_state == sushy.PowerState.ON, "On after ForceRestart")


def with_redfish(base, user, password, auth):
    client = redfish.redfish_client(base_url=base, username=user, password=password, timeout=10)
    client.login(auth=auth)
    try:
        root = client.get("/redfish/v1/")
        check("redfish", root.status == 200, f"service root: {root.status}")
        systems = client.get(root.dict["Systems"]["@odata.id"])
        check("redfish", systems.status == 200, f"Systems: {systems.status}")
        members = systems.dict["Members"]
        check("redfish", len(members) == 1, f"one system, got {len(members)}")
        system = client.get(members[0]["@odata.id"])
        check("redfish", system.dict.get("PowerState") == "On", f"PowerState: {system.dict.get('PowerState')}")
        action = system.dict["Actions"]["#ComputerSystem.Reset"]
        allowed = action.get("ResetType@Redfish.AllowableValues", [])
        check("redfish", "ForceRestart" in allowed, f"ForceRestart allowed: {allowed}")
        reply = client.post(action["target"], body={"ResetType": "ForceRestart"})
        check("redfish", reply.status in (200, 202, 204), f"reset: {reply.status} {reply.text}")
        after = client.get(members[0]["@odata.id"])
        check("redfish", after.dict.get("PowerState") == "On", "On after ForceRestart")
    finally:
        client.logout()


def main():
    base, user, password = sys.argv[1:4]
    with_sushy(base, user, password, sushy_auth.SessionAuth)
    with_sushy(base, user, password, sushy_auth.BasicAuth)
    with_redfish(base, user, password, "session")
    with_redfish(base, user, password, "basic")
    for library, n in checks.items():
        print(f"{library}: {n} checks passed (session and Basic)")


if __name__ == "__main__":
    main()
