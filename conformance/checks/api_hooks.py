"""Schemathesis hooks of conformance/checks/api.sh: test data from the site.

Generated values alone almost never name a real L-Server, operation or AV server, so most
requests would end in 404 or 400 and the accepting paths (202 replies, 409 in the wrong state,
the views of real L-Servers and operations) would go untested. These hooks let Hypothesis draw,
besides the generated value, one taken from the topology (QLAB_API_TOPOLOGY): an L-Server
path, an operation id among the first few, a detection from a known AV server about a known
IP. Hypothesis chooses among them from the run's seed, so a run is repeatable.
"""

import os
import tomllib

import schemathesis
from hypothesis import strategies as st

with open(os.environ["QLAB_API_TOPOLOGY"], "rb") as handle:
    _SITE = tomllib.load(handle)

LSERVERS = [ls["path"].lstrip("/") for ls in _SITE.get("lservers", [])]
SOURCES = [av["name"] for av in _SITE.get("av_servers", [])]
IPS = [nic["ip"] for ls in _SITE.get("lservers", []) for nic in ls.get("nics", []) if "ip" in nic]
CATEGORIES = ["virus", "malware", "spyware", "grayware", "cnc", "outbreak", "other"]


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    options = [st.just(path_parameters)]
    if "lserver" in path_parameters and LSERVERS:
        options.append(st.sampled_from(LSERVERS).map(lambda p: {**path_parameters, "lserver": p}))
    if "id" in path_parameters:
        options.append(st.integers(1, 20).map(lambda i: {**path_parameters, "id": i}))
    return st.one_of(*options)


@schemathesis.hook
def flatmap_body(context, body):
    operation = context.operation
    if operation is None or operation.path != "/api/v1/detections" or not SOURCES:
        return st.just(body)
    known = st.fixed_dictionaries(
        {
            "source": st.sampled_from(SOURCES),
            "event_id": st.text("abcdef0123456789", min_size=1, max_size=12),
            "ip": st.sampled_from(IPS) if IPS else st.just("10.0.0.1"),
            "threat": st.sampled_from(["TROJ_GENERIC.A", "Eicar-Test-Signature", "W32.Ransom"]),
            "category": st.sampled_from(CATEGORIES),
        }
    )
    return st.one_of(st.just(body), known)
