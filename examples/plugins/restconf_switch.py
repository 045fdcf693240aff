#!/usr/bin/env python3
"""A quarantine-lab adapter plugin for an OpenConfig switch over RESTCONF (RFC 8040).

Speaks the adapter plugin protocol (docs/plugins.md): JSON-RPC 2.0 on stdin/stdout, one JSON
object per line; logs go to stderr. Standard library only (Python 3.8+).

    [[devices]]
    name = "rc-1"
    plugin = ["python3", "examples/plugins/restconf_switch.py"]
    url = "https://192.0.2.21"
    user = "qlab"
    password_env = "RC1_PASSWORD"

Wire shapes (the same as the engine's built-in RESTCONF client):
  GET/PATCH /restconf/data/openconfig-interfaces:interfaces/interface=<port, percent-encoded>
            /ethernet/switched-vlan/config
      body {"openconfig-vlan:config": {"interface-mode": "ACCESS", "access-vlan": 910}}
  POST /restconf/operations/cisco-ia:save-config   (save running to startup)
  Content-Type and Accept application/yang-data+json, HTTP Basic authentication.

Outcome classes (the class is what makes the engine's rollback correct):
  connection refused, unreachable, TLS handshake refused (nothing sent)  -> unavailable
  timeout, reset or a broken reply after the request was sent            -> unknown
  401                                                                    -> auth
  503                                                                    -> unavailable
  409 with error-tag in-use or lock-denied, 429                          -> busy
  any other 4xx                                                          -> rejected
  any other 5xx (the device failed while executing: maybe applied)       -> unknown
  a 2xx read without a readable access-vlan                              -> unknown

Requests are served concurrently, one thread each (at most MAX_THREADS at once); answers are
written whole, one line at a time, in whatever order they finish.
"""

import base64
import http.client
import json
import socket
import ssl
import sys
import threading
import urllib.parse

PROTOCOL_VERSION = 1
MEDIA_TYPE = "application/yang-data+json"
INTERFACE_PREFIX = "/restconf/data/openconfig-interfaces:interfaces/interface="
CONFIG_SUFFIX = "/ethernet/switched-vlan/config"
SAVE_RPC_PATH = "/restconf/operations/cisco-ia:save-config"
MAX_THREADS = 16
MAX_BODY_BYTES = 1024 * 1024

_out_lock = threading.Lock()
_slots = threading.BoundedSemaphore(MAX_THREADS)
_device = {}


def log(message):
    """One line on stderr (the engine logs it). Never the password."""
    sys.stderr.write("restconf_switch: %s\n" % message)
    sys.stderr.flush()


def send(message):
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class DeviceError(Exception):
    """A failed device call with its outcome class."""

    def __init__(self, outcome, detail):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class ProtocolError(Exception):
    """A request this plugin cannot serve (JSON-RPC error without an outcome class)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def config_path(port):
    # RFC 8040 3.5.3: the list key is percent-encoded, everything but unreserved characters.
    return INTERFACE_PREFIX + urllib.parse.quote(port, safe="") + CONFIG_SUFFIX


def error_tags(body):
    try:
        errors = json.loads(body)["ietf-restconf:errors"]["error"]
        return [(e.get("error-tag", ""), e.get("error-message", "")) for e in errors]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def classify(status, body):
    tags = error_tags(body)
    busy_tag = any(tag in ("in-use", "lock-denied") for tag, _ in tags)
    if status == 401:
        outcome = "auth"
    elif status == 503:
        outcome = "unavailable"
    elif status == 429 or (status == 409 and busy_tag):
        outcome = "busy"
    elif 400 <= status < 500:
        outcome = "rejected"
    else:
        outcome = "unknown"
    if tags:
        detail = "RESTCONF %d %s: %s" % (status, tags[0][0], tags[0][1])
    else:
        detail = "RESTCONF %d: %s" % (status, body[:200])
    return DeviceError(outcome, detail)


def connection():
    """A new connection to the device (one per call: a per-connection fault is per call)."""
    url = urllib.parse.urlsplit(_device["url"])
    options = _device.get("options") or {}
    timeout = max(0.1, float(options.get("call_timeout_ms", 5000)) / 1000.0 * 0.9)
    if url.scheme == "https":
        context = ssl.create_default_context(cafile=options.get("ca_file"))
        if options.get("tls_insecure"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(url.hostname, url.port, timeout=timeout, context=context)
    if url.scheme == "http":
        return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    raise DeviceError("unavailable", "unsupported url scheme %r" % url.scheme)


def request(method, path, body=None):
    """Sends one request; returns (status, text) of a 2xx, raises DeviceError otherwise."""
    conn = connection()
    try:
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as e:
            # Nothing was sent: refused, unreachable, connect timeout, certificate refused.
            raise DeviceError("unavailable", "connect to %s: %s" % (_device["url"], e))
        credentials = "%s:%s" % (_device["user"], _device["password"])
        headers = {
            "Accept": MEDIA_TYPE,
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = MEDIA_TYPE
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read(MAX_BODY_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:
            # The request may have left: it may have been applied.
            raise DeviceError("unknown", "%s %s: %s: %s" % (method, path, type(e).__name__, e))
        if len(text) > MAX_BODY_BYTES:
            raise DeviceError("unknown", "reply body over %d bytes" % MAX_BODY_BYTES)
        text = text.decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return response.status, text
        raise classify(response.status, text)
    finally:
        conn.close()


def get_port(params):
    port = required(params, "port", str)
    status, text = request("GET", config_path(port))
    try:
        value = json.loads(text)
        config = value.get("openconfig-vlan:config") or value.get("config")
        vlan = config["access-vlan"]
    except (ValueError, KeyError, TypeError, AttributeError):
        vlan = None
    if isinstance(vlan, int) and not isinstance(vlan, bool) and 1 <= vlan <= 4094:
        return {"vlan": vlan}
    raise DeviceError("unknown", "RESTCONF %d without access-vlan for %s" % (status, port))


def set_port(params):
    port = required(params, "port", str)
    vlan = required(params, "vlan", int)
    body = {"openconfig-vlan:config": {"interface-mode": "ACCESS", "access-vlan": vlan}}
    request("PATCH", config_path(port), body)
    return {}


def save_config(_params):
    request("POST", SAVE_RPC_PATH)
    return {}


def required(params, key, kind):
    value = params.get(key) if isinstance(params, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DeviceError("rejected", "%s: expected a %s" % (key, kind.__name__))
    return value


def initialize(params):
    device = params.get("device") if isinstance(params, dict) else None
    if not isinstance(device, dict) or not isinstance(device.get("url"), str):
        raise ProtocolError(-32602, "initialize needs device.url")
    if device.get("family") != "switch":
        raise ProtocolError(-32602, "this plugin drives switches, not %r" % device.get("family"))
    _device.clear()
    _device.update(device)
    log("initialized for %s at %s as %s" % (device.get("name"), device["url"], device.get("user")))
    return {
        "protocol_version": PROTOCOL_VERSION,
        "family": "switch",
        "capabilities": {"batch": False},
    }


METHODS = {
    "get_port": get_port,
    "set_port": set_port,
    "save_config": save_config,
}


def serve(message):
    id_ = message.get("id")
    method = message.get("method")
    try:
        try:
            if method == "initialize":
                result = initialize(message.get("params"))
            elif method == "shutdown":
                result = {}
            elif method in METHODS:
                if not _device:
                    raise ProtocolError(-32002, "not initialized")
                result = METHODS[method](message.get("params") or {})
            else:
                raise ProtocolError(-32601, "Method not found: %r" % method)
            send({"jsonrpc": "2.0", "id": id_, "result": result})
        except DeviceError as e:
            data = {"class": e.outcome, "detail": e.detail}
            send({"jsonrpc": "2.0", "id": id_,
                  "error": {"code": -32000, "message": e.detail, "data": data}})
        except ProtocolError as e:
            send({"jsonrpc": "2.0", "id": id_, "error": {"code": e.code, "message": e.message}})
        except Exception as e:  # a bug here must not kill the plugin: the call is unknown
            log("%s failed: %s: %s" % (method, type(e).__name__, e))
            send({"jsonrpc": "2.0", "id": id_,
                  "error": {"code": -32603, "message": "internal error: %s" % type(e).__name__}})
    finally:
        _slots.release()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
            continue
        if not isinstance(message, dict) or "method" not in message:
            continue
        _slots.acquire()
        if message["method"] in ("initialize", "shutdown"):
            # In order: the device must be known before the first call.
            serve(message)
            continue
        threading.Thread(target=serve, args=(message,)).start()
    # The engine closes stdin after `shutdown`; calls still running end at their socket
    # timeout at the latest, and Python waits for their threads before exiting.
    log("input closed; stopping")


if __name__ == "__main__":
    main()
