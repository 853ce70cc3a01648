#!/usr/bin/env python3
"""An MQTT client nobody here wrote: paho-mqtt (PyPI), driven by the interop tests.

Connects over TLS (trusting --ca, with a client certificate if --cert/--key are given and a
username/password if given), optionally publishes one message and waits for its PUBACK, then
prints one JSON line per step on stdout:
  {"event": "connack", "rc": <reason code as int>}      # 0 = accepted
  {"event": "puback", "rc": <reason code as int>}       # 0 = success, 135 = not authorised, ...
  {"event": "timeout", "step": "connack"|"puback"}
MQTT 3.1.1 CONNACK return codes are reported as paho maps them to 5.0 reason codes
(4 -> 134 bad user name or password, 5 -> 135 not authorised).
"""
import argparse
import json
import ssl
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--client-id", default="")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--protocol", choices=["311", "5"], default="311")
    parser.add_argument("--topic")
    parser.add_argument("--payload", default="")
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    protocol = mqtt.MQTTv5 if args.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=protocol)
    client.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key, cert_reqs=ssl.CERT_REQUIRED,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if args.username is not None:
        client.username_pw_set(args.username, args.password)

    connected = threading.Event()
    published = threading.Event()
    outcome = {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        outcome["connack"] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        connected.set()

    def on_publish(_client, _userdata, mid, reason_code, _properties):
        outcome["puback"] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        published.set()

    def on_disconnect(_client, _userdata, _flags, reason_code, _properties):
        outcome.setdefault("disconnect", reason_code.value if hasattr(reason_code, "value") else int(reason_code))
        connected.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as error:  # TLS or TCP failure before any MQTT
        emit(event="error", step="connect", message=str(error))
        return 1
    client.loop_start()
    try:
        if not connected.wait(args.timeout) or "connack" not in outcome:
            if "disconnect" in outcome:
                emit(event="disconnected", step="connack", rc=outcome["disconnect"])
            else:
                emit(event="timeout", step="connack")
            return 2
        emit(event="connack", rc=outcome["connack"])
        if outcome["connack"] != 0:
            return 2
        if args.topic:
            client.publish(args.topic, args.payload.encode(), qos=args.qos)
            if args.qos == 0:
                emit(event="sent")
            elif published.wait(args.timeout):
                emit(event="puback", rc=outcome["puback"])
            else:
                emit(event="timeout", step="puback")
        client.disconnect()
        return 0
    finally:
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
