#!/usr/bin/env python3
"""A black-box check of SPEC §9 with clients nobody here wrote: paho-mqtt for the device side,
urllib for the REST API, and the `cryptography` package's Ed25519 for the firmware signature.

Given a running server, a tenant admin token (--token) and another tenant's (--other-token),
it registers its own devices and checks: an operation delivered at once and again after a
reconnect until it leaves PENDING; the desired state reaching a connected device; a firmware
manifest signature verified with the published key; anti-rollback; attestation verdicts; the
exposure from an OSV record; and the other tenant reaching none of it. Prints one JSON line per
check ({"check", "ok", ...}) and exits non-zero if any failed.
"""
import argparse
import base64
import hashlib
import json
import queue
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

FAILED = []


def check(name, ok, **details):
    print(json.dumps({"check": name, "ok": bool(ok), **details}), flush=True)
    if not ok:
        FAILED.append(name)


class Api:
    def __init__(self, base, ca, token):
        self.base, self.token = base.rstrip("/"), token
        self.context = ssl.create_default_context(cafile=ca)

    def call(self, method, path, body=None, raw=None, content_type="application/json", token=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + (token or self.token))
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                text = response.read()
                return response.status, (json.loads(text) if text[:1] in (b"{", b"[") else text)
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text

    def upload(self, metadata, image):
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{json.dumps(metadata)}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="fw.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + image + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        return self.call("POST", "/api/v1/firmware", raw=b"".join(parts),
                         content_type=f"multipart/form-data; boundary={boundary}")


class Device:
    """A paho device session that collects what it receives."""

    def __init__(self, args, tenant, device, token):
        self.received = queue.Queue()
        self.acks = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=args.ca, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.username_pw_set(f"{tenant}/{device}", token)
        self.client.on_message = lambda _c, _u, message: self.received.put(
            (message.topic, json.loads(message.payload), message.retain))
        self.client.on_publish = lambda _c, _u, _mid, reason, _p: self.acks.put(reason.value)
        connected = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason.value)
        self.client.connect(args.host, args.port, keepalive=30)
        self.client.loop_start()
        self.connack = connected.get(timeout=10)

    def subscribe(self, *topics):
        for topic in topics:
            self.client.subscribe(topic, qos=1)

    def publish(self, topic, payload):
        self.client.publish(topic, json.dumps(payload), qos=1)
        return self.acks.get(timeout=10)

    def next(self, wait=3.0):
        try:
            return self.received.get(timeout=wait)
        except queue.Empty:
            return None

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(fetch, accept, timeout=10.0):
    deadline = time.time() + timeout
    value = fetch()
    while not accept(value) and time.time() < deadline:
        time.sleep(0.2)
        value = fetch()
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--other-token", required=True)
    args = parser.parse_args()
    api = Api(args.url, args.ca, args.token)
    other = Api(args.url, args.ca, args.other_token)

    tokens = {}
    for device in ("bb-1", "bb-2"):
        api.call("POST", "/api/v1/devices", {"id": device})
        tokens[device] = api.call("POST", f"/api/v1/devices/{device}/tokens", {})[1]["token"]
    ops_topic, desired_topic = "devices/bb-1/operations", "devices/bb-1/twin/desired"

    # Operations: at once, again after a reconnect while PENDING, not once EXECUTING.
    dev = Device(args, args.tenant, "bb-1", tokens["bb-1"])
    check("connack", dev.connack == 0, rc=dev.connack)
    dev.subscribe(ops_topic, desired_topic)
    time.sleep(0.5)
    status, op = api.call("POST", "/api/v1/devices/bb-1/operations", {"type": "reboot", "payload": {"delay": 1}})
    got = dev.next()
    check("operation delivered at once", status == 201 and got and got[1].get("id") == op["id"]
          and got[1].get("type") == "reboot" and "created_at" in got[1], received=got and got[1])
    dev.close()
    dev = Device(args, args.tenant, "bb-1", tokens["bb-1"])
    dev.subscribe(ops_topic)
    got = dev.next()
    check("operation redelivered after reconnect", got is not None and got[1].get("id") == op["id"])
    rc = dev.publish(f"devices/bb-1/operations/{op['id']}/status", {"status": "EXECUTING"})
    check("status report acknowledged", rc == 0, rc=rc)
    dev.close()
    dev = Device(args, args.tenant, "bb-1", tokens["bb-1"])
    dev.subscribe(ops_topic, desired_topic)
    check("not redelivered once EXECUTING", dev.next(1.5) is None)
    rc = dev.publish(f"devices/bb-1/operations/{op['id']}/status", {"status": "PENDING"})
    check("a move backwards is refused", rc >= 0x80, rc=rc)
    check("other tenant cannot read the operation", other.call("GET", f"/api/v1/operations/{op['id']}")[0] == 404)

    # Desired state reaches the connected device at once.
    status, _ = api.call("PATCH", "/api/v1/devices/bb-1/twin/desired", {"led": "blue"})
    got = dev.next()
    check("desired state reaches the device", status == 200 and got and got[0] == desired_topic
          and got[1].get("desired") == {"led": "blue"} and got[1].get("version") == 1, received=got and got[1])

    # Firmware: the signature verifies with the published key (Python's cryptography).
    key = base64.b64decode(api.call("GET", "/api/v1/firmware/signing-key")[1]["public_key"])
    image = bytes(range(256)) * 400
    digest = hashlib.sha256(image).hexdigest()
    status, fw = api.upload({"name": "bb-fw", "version": "1.1.0", "hardware": "bb", "security_counter": 5}, image)
    manifest = f"rampart-fw-v1\nbb-fw\n1.1.0\nbb\n5\n{digest}\n".encode()
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(base64.b64decode(fw["signature"]), manifest)
        verified = True
    except (InvalidSignature, KeyError, TypeError):
        verified = False
    check("firmware signature verifies with the published key", status == 201 and fw.get("sha256") == digest and verified)
    status, bad = api.upload({"name": "bb-fw", "version": "1.1.1", "hardware": "bb", "security_counter": 5,
                              "sha256": "0" * 64}, image)
    check("hash mismatch refused", status == 400 and "sha256" in bad.get("message", ""), answer=bad)
    check("other tenant cannot read the image", other.call("GET", f"/api/v1/firmware/{fw['id']}")[0] == 404)

    # Attestation verdicts.
    def attestation(device):
        return lambda: api.call("GET", f"/api/v1/devices/{device}")[1].get("attestation", {})
    dev.publish("devices/bb-1/attestation", {"firmware_version": "1.1.0", "firmware_sha256": digest, "secure_boot": True})
    seen = wait_until(attestation("bb-1"), lambda a: a.get("status") == "trusted")
    check("known image attests trusted", seen.get("status") == "trusted" and seen.get("security_counter") == 5, seen=seen)
    dev.publish("devices/bb-1/attestation", {"firmware_version": "9.9.9", "firmware_sha256": "ab" * 32, "secure_boot": True})
    seen = wait_until(attestation("bb-1"), lambda a: a.get("status") == "untrusted")
    events = wait_until(lambda: api.call("GET", "/api/v1/security/events?type=untrusted_firmware")[1].get("items", []),
                        lambda items: len(items) > 0)
    check("unknown hash attests untrusted with an event", seen.get("status") == "untrusted" and len(events) > 0)
    dev.publish("devices/bb-1/attestation", {"firmware_version": "1.1.0", "firmware_sha256": digest, "secure_boot": True})
    wait_until(attestation("bb-1"), lambda a: a.get("status") == "trusted")

    # Anti-rollback: bb-1 runs security counter 5; an image with 4 is refused for it.
    status, old = api.upload({"name": "bb-fw", "version": "1.0.0", "hardware": "bb", "security_counter": 4}, image[:1000])
    status, refused = api.call("POST", "/api/v1/campaigns", {"firmware_id": old["id"], "target": {"devices": ["bb-1", "bb-2"]}})
    check("anti-rollback refuses the campaign", status == 409 and "bb-1" in refused.get("message", ""), answer=refused)
    status, campaign = api.call("POST", "/api/v1/campaigns", {"firmware_id": old["id"], "target": {"devices": ["bb-2"]}})
    check("a campaign for a device without a higher counter starts", status == 201 and campaign.get("dispatched") == 1)
    check("other tenant cannot read the campaign", other.call("GET", f"/api/v1/campaigns/{campaign.get('id')}")[0] == 404)

    # Exposure from an OSV record.
    osv = {"id": "BB-2026-1", "summary": "test", "affected": [{"package": {"name": "bb-fw"},
           "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.0"}]}]}]}
    status, _ = api.call("POST", "/api/v1/advisories", osv)
    exposure = api.call("GET", "/api/v1/advisories/exposure")[1].get("items", [])
    check("exposure lists the device on affected firmware", status == 201 and any(i["device"] == "bb-1" for i in exposure),
          exposure=exposure)
    check("other tenant sees no exposure", other.call("GET", "/api/v1/advisories/exposure")[1].get("items") == [])
    osv["affected"][0]["ranges"][0]["type"] = "GIT"
    status, refused = api.call("POST", "/api/v1/advisories", osv)
    check("malformed OSV names the field", status == 400 and "affected[0].ranges[0].type" in refused.get("message", ""))
    dev.close()
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
