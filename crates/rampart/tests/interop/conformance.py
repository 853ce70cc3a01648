#!/usr/bin/env python3
"""MQTT conformance scenarios, ours, run against Rampart by tests/interop/conformance.rs.

The scenarios follow what third-party broker suites check (the Eclipse Paho interoperability
tests in particular): basic QoS 0/1/2 flows, retained messages, wills, zero-length client ids,
offline queueing and redelivery in persistent sessions, overlapping subscriptions, keep-alive,
subscribe failure, `$` topics, unsubscribe, and the MQTT 5.0 features (session expiry, user
properties, payload format, message expiry, subscription options, assigned client id,
subscription identifiers, request/response, topic aliases both ways, maximum packet size,
server keep alive, flow control, will delay, shared subscriptions). The code is our own; what
each scenario asserts is checked against the MQTT 3.1.1 and 5.0 specifications.

Every client is an application of one tenant whose free namespace is open (SPEC §7): username
`<tenant>/<api-key-id>`, the API key as password, over TLS. Most scenarios use paho-mqtt (PyPI);
the few that must misbehave on purpose (hold back acknowledgements, send a second CONNECT, drop
the socket without DISCONNECT, read topic aliases off the wire) use `Raw`, a minimal MQTT
client written here on a TLS socket.

Prints one JSON line per scenario: {"scenario", "protocol", "ok", "reason", "seconds"}.
"""
import argparse
import json
import socket
import ssl
import struct
import sys
import threading
import time
import traceback

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


class Failure(Exception):
    """A scenario's expectation was not met."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(condition, timeout=5.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def code(value):
    return value.value if hasattr(value, "value") else int(value)


# ---------------------------------------------------------------------------------------------
# paho-mqtt clients


class Paho:
    """A connected paho-mqtt client that records everything it receives."""

    def __init__(self, ctx, client_id, clean=True, keepalive=60, expiry=None, will=None, app=0, props=None,
                 expect_refusal=False, credentials=None):
        self.ctx = ctx
        self.messages = []
        self.subacks = {}
        self.unsubacks = {}
        self.pubacks = {}
        self.disconnects = []
        self.connack = None
        self.lock = threading.Lock()
        kwargs = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": client_id,
                  "protocol": mqtt.MQTTv5 if ctx.v5 else mqtt.MQTTv311}
        if not ctx.v5:
            kwargs["clean_session"] = clean
        client = mqtt.Client(**kwargs)
        client.tls_set(ca_certs=ctx.ca, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if credentials is None:
            key_id, key = ctx.apps[app]
            credentials = (f"{ctx.tenant}/{key_id}", key)
        client.username_pw_set(*credentials)
        # A scenario decides itself when to reconnect.
        client.reconnect_delay_set(600, 600)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        if will is not None:
            client.will_set(**will)
        self.client = client
        connect_kwargs = {"keepalive": keepalive}
        if ctx.v5:
            props = props or Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            connect_kwargs["clean_start"] = clean
            connect_kwargs["properties"] = props
        client.connect(ctx.host, ctx.port, **connect_kwargs)
        client.loop_start()
        if not wait_for(lambda: self.connack is not None or self.disconnects, 10):
            self.stop()
            raise Failure(f"{client_id}: no CONNACK")
        if not expect_refusal:
            check(self.connack is not None and self.connack["rc"] == 0, f"{client_id}: CONNACK {self.connack}")

    # callbacks
    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = {"rc": code(reason_code), "session_present": bool(flags.session_present),
                        "properties": properties}

    def _on_message(self, _client, _userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        self.subacks[mid] = [code(rc) for rc in reason_codes]

    def _on_unsubscribe(self, _client, _userdata, mid, reason_codes, _properties):
        self.unsubacks[mid] = [code(rc) for rc in reason_codes] if reason_codes else []

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties):
        self.pubacks[mid] = code(reason_code)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.disconnects.append(code(reason_code))

    # actions
    def subscribe(self, filters, properties=None):
        """filters: [(filter, qos or SubscribeOptions)]; returns the SUBACK reason codes."""
        if not self.ctx.v5:
            filters = [(f, o if isinstance(o, int) else o.QoS) for f, o in filters]
        else:
            filters = [(f, o if isinstance(o, SubscribeOptions) else SubscribeOptions(qos=o)) for f, o in filters]
        result, mid = self.client.subscribe(filters, properties=properties) if self.ctx.v5 else \
            self.client.subscribe(filters)
        check(result == 0, f"subscribe not sent: {result}")
        check(wait_for(lambda: mid in self.subacks, 5), f"no SUBACK for {filters}")
        return self.subacks[mid]

    def unsubscribe(self, filters):
        result, mid = self.client.unsubscribe(filters)
        check(result == 0, f"unsubscribe not sent: {result}")
        check(wait_for(lambda: mid in self.unsubacks, 5), f"no UNSUBACK for {filters}")
        return self.unsubacks[mid]

    def publish(self, topic, payload, qos=0, retain=False, properties=None, wait=True):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0 and wait:
            check(wait_for(lambda: info.mid in self.pubacks, 5), f"no acknowledgement for QoS {qos} on {topic}")
            return self.pubacks[info.mid]
        return None

    def received(self, count, timeout=5.0):
        wait_for(lambda: len(self.messages) >= count, timeout)
        with self.lock:
            return list(self.messages)

    def clear(self):
        with self.lock:
            self.messages.clear()

    def disconnect(self, properties=None):
        if self.ctx.v5:
            self.client.disconnect(properties=properties)
        else:
            self.client.disconnect()
        self.stop()

    def stop(self):
        self.client.loop_stop()


# ---------------------------------------------------------------------------------------------
# Raw: a minimal MQTT client on a TLS socket, for what a well-behaved library will not do


def varint(value):
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


BYTE_PROPS = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
TWO_BYTE_PROPS = {0x13, 0x21, 0x22, 0x23}
FOUR_BYTE_PROPS = {0x02, 0x11, 0x18, 0x27}
STRING_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
BINARY_PROPS = {0x09, 0x16}
SESSION_EXPIRY, RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE = 0x11, 0x21, 0x27
TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, WILL_DELAY, SERVER_KEEP_ALIVE = 0x22, 0x23, 0x18, 0x13


def encode_properties(props):
    out = bytearray()
    for ident, value in (props or {}).items():
        out.append(ident)
        if ident in BYTE_PROPS:
            out.append(value)
        elif ident in TWO_BYTE_PROPS:
            out += struct.pack("!H", value)
        elif ident in FOUR_BYTE_PROPS:
            out += struct.pack("!I", value)
        elif ident == 0x0B:
            out += varint(value)
        else:
            out += utf8(value)
    return varint(len(out)) + bytes(out)


def decode_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def decode_properties(data, at):
    length, at = decode_varint(data, at)
    end = at + length
    props = {}
    while at < end:
        ident = data[at]
        at += 1
        if ident in BYTE_PROPS:
            value, at = data[at], at + 1
        elif ident in TWO_BYTE_PROPS:
            value, at = struct.unpack_from("!H", data, at)[0], at + 2
        elif ident in FOUR_BYTE_PROPS:
            value, at = struct.unpack_from("!I", data, at)[0], at + 4
        elif ident == 0x0B:
            value, at = decode_varint(data, at)
            props.setdefault("subscription_identifiers", []).append(value)
            continue
        elif ident in STRING_PROPS or ident in BINARY_PROPS:
            size = struct.unpack_from("!H", data, at)[0]
            value, at = bytes(data[at + 2:at + 2 + size]), at + 2 + size
        elif ident == 0x26:
            pair = []
            for _ in range(2):
                size = struct.unpack_from("!H", data, at)[0]
                pair.append(bytes(data[at + 2:at + 2 + size]).decode())
                at += 2 + size
            props.setdefault("user", []).append(tuple(pair))
            continue
        else:
            raise Failure(f"unknown property 0x{ident:02x}")
        props[ident] = value
    return props, end


def DeviceClient(ctx, device, token):
    """A device: username `<tenant>/<device>`, its token, client id = device id (SPEC §7)."""
    return ctx.paho(device, credentials=(f"{ctx.tenant}/{device}", token))


class Closed(Exception):
    """The server closed the connection."""


class Packet:
    def __init__(self, kind, flags, body, v5):
        self.kind, self.flags, self.body = kind, flags, body
        self.props = {}
        self.reason = 0
        self.packet_id = None
        if kind == 3:  # PUBLISH
            self.qos = (flags >> 1) & 3
            self.retain = bool(flags & 1)
            self.dup = bool(flags & 8)
            size = struct.unpack_from("!H", body, 0)[0]
            self.topic = body[2:2 + size].decode()
            at = 2 + size
            if self.qos:
                self.packet_id = struct.unpack_from("!H", body, at)[0]
                at += 2
            if v5:
                self.props, at = decode_properties(body, at)
            self.payload = bytes(body[at:])
        elif kind == 2:  # CONNACK
            self.session_present = bool(body[0] & 1)
            self.reason = body[1]
            if v5 and len(body) > 2:
                self.props, _ = decode_properties(body, 2)
        elif kind in (4, 5, 6, 7, 9, 11):  # PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK
            self.packet_id = struct.unpack_from("!H", body, 0)[0]
            if kind in (9, 11):
                at = 2
                if v5:
                    self.props, at = decode_properties(body, at)
                self.reasons = list(body[at:])
            elif len(body) > 2:
                self.reason = body[2]
        elif kind == 14:  # DISCONNECT
            self.reason = body[0] if body else 0

    def __repr__(self):
        names = {2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP", 9: "SUBACK",
                 11: "UNSUBACK", 13: "PINGRESP", 14: "DISCONNECT"}
        extra = f" topic={self.topic!r} qos={self.qos} dup={self.dup}" if self.kind == 3 else ""
        return f"<{names.get(self.kind, self.kind)} id={self.packet_id} reason=0x{self.reason:02x}{extra}>"


class Raw:
    def __init__(self, ctx, client_id, clean=True, keepalive=0, props=None, will=None, app=0, protocol_name="MQTT",
                 expect_success=True):
        self.ctx = ctx
        self.v5 = ctx.v5
        context = ssl.create_default_context(cafile=ctx.ca)
        tcp = socket.create_connection((ctx.host, ctx.port), timeout=10)
        self.sock = context.wrap_socket(tcp, server_hostname=ctx.host)
        self.buffer = bytearray()
        self.next_id = 1
        key_id, key = ctx.apps[app]
        self.connack = self.connect(client_id, clean, keepalive, props, will, f"{ctx.tenant}/{key_id}", key,
                                    protocol_name)
        if expect_success:
            check(self.connack is not None and self.connack.reason == 0, f"raw {client_id}: {self.connack}")

    def connect_packet(self, client_id, clean, keepalive, props, will, username, password, protocol_name):
        flags = 0x80 | 0x40 | (0x02 if clean else 0)
        payload = utf8(client_id)
        if will is not None:
            flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
            if self.v5:
                payload += encode_properties(will.get("props"))
            payload += utf8(will["topic"]) + utf8(will["payload"])
        payload += utf8(username) + utf8(password)
        header = utf8(protocol_name) + bytes([5 if self.v5 else 4, flags]) + struct.pack("!H", keepalive)
        if self.v5:
            header += encode_properties(props)
        return self.frame(0x10, header + payload)

    def connect(self, client_id, clean, keepalive, props, will, username, password, protocol_name):
        self.send(self.connect_packet(client_id, clean, keepalive, props, will, username, password, protocol_name))
        try:
            packet = self.read(5)
        except Closed:
            return None
        return packet if packet is not None and packet.kind == 2 else None

    @staticmethod
    def frame(first, body):
        return bytes([first]) + varint(len(body)) + body

    def send(self, data):
        self.sock.sendall(data)

    def packet_id(self):
        ident = self.next_id
        self.next_id = self.next_id % 65535 + 1
        return ident

    def publish(self, topic, payload, qos=0, retain=False, dup=False, packet_id=None, props=None):
        body = utf8(topic)
        if qos:
            packet_id = packet_id or self.packet_id()
            body += struct.pack("!H", packet_id)
        if self.v5:
            body += encode_properties(props)
        body += payload
        self.send(self.frame(0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body))
        return packet_id

    def subscribe(self, filters, props=None):
        """filters: [(filter, options byte)]; waits for and returns the SUBACK."""
        packet_id = self.packet_id()
        body = struct.pack("!H", packet_id)
        if self.v5:
            body += encode_properties(props)
        for topic_filter, options in filters:
            body += utf8(topic_filter) + bytes([options])
        self.send(self.frame(0x82, body))
        return self.expect(9)

    def ack(self, kind, packet_id):
        first = {4: 0x40, 5: 0x50, 6: 0x62, 7: 0x70}[kind]
        self.send(self.frame(first, struct.pack("!H", packet_id)))

    def disconnect(self, props=None):
        body = b""
        if self.v5 and props:
            body = b"\x00" + encode_properties(props)
        try:
            self.send(self.frame(0xE0, body))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def drop(self):
        """Close the TCP connection without DISCONNECT (the will must be published)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close()

    def read(self, timeout):
        """The next packet, None when nothing arrives within `timeout`; Closed at end of stream."""
        deadline = time.time() + timeout
        while True:
            if len(self.buffer) >= 2:
                try:
                    length, at = decode_varint(self.buffer, 1)
                except IndexError:
                    length, at = None, None
                if length is not None and len(self.buffer) >= at + length:
                    first = self.buffer[0]
                    body = bytes(self.buffer[at:at + length])
                    del self.buffer[:at + length]
                    return Packet(first >> 4, first & 0x0F, body, self.v5)
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (ssl.SSLError, OSError):
                raise Closed()
            if not chunk:
                raise Closed()
            self.buffer += chunk

    def expect(self, kind, timeout=5):
        """Reads until a packet of `kind`, answering PUBLISHes on the way; fails on anything else."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            packet = self.read(deadline - time.time())
            if packet is None:
                break
            if packet.kind == kind:
                return packet
            check(packet.kind == 3, f"expected packet type {kind}, got {packet}")
        raise Failure(f"no packet of type {kind} within {timeout}s")

    def closed_within(self, timeout):
        """Whether the server closes within `timeout` (a DISCONNECT is returned, else True/False)."""
        deadline = time.time() + timeout
        seen = None
        try:
            while time.time() < deadline:
                packet = self.read(deadline - time.time())
                if packet is not None and packet.kind == 14:
                    seen = packet
        except Closed:
            return seen or True
        return False


# ---------------------------------------------------------------------------------------------
# The scenarios


class Context:
    def __init__(self, args, protocol):
        self.host, self.port, self.ca, self.tenant = args.host, args.port, args.ca, args.tenant
        self.apps = [tuple(app.split(":", 1)) for app in args.app]
        self.device = tuple(args.device.split(":", 1)) if args.device else None
        self.v5 = protocol == "5"
        self.protocol = protocol
        prefix = f"conformance{protocol}/"
        self.topics = [prefix + t for t in ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")]
        self.wild = [prefix + w for w in ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")]
        self.prefix = prefix
        self.nosubscribe = "test/nosubscribe"
        self.clients = []

    def paho(self, client_id, **kwargs):
        client = Paho(self, client_id, **kwargs)
        self.clients.append(client)
        return client

    def raw(self, client_id, **kwargs):
        client = Raw(self, client_id, **kwargs)
        self.clients.append(client)
        return client

    def close_all(self):
        for client in self.clients:
            try:
                if isinstance(client, Paho):
                    client.client.disconnect()
                    client.stop()
                else:
                    client.close()
            except Exception:
                pass
        self.clients = []

    def clean_sessions(self):
        """Ends any session left by an earlier scenario (a clean start, then a clean disconnect)."""
        for client_id in ("myclientid", "myclientid2"):
            client = Paho(self, client_id, clean=True, expiry=0 if self.v5 else None)
            client.disconnect()

    def clear_retained(self):
        """Deletes every retained message under this run's prefix."""
        client = Paho(self, "clean retained")
        client.subscribe([(self.prefix + "#", 0)])
        time.sleep(0.5)
        for message in client.received(0, 0):
            if message.retain:
                client.publish(message.topic, b"", 0, retain=True)
        time.sleep(0.2)
        client.disconnect()


SCENARIOS = []


def scenario(name, protocols=("311", "5")):
    def register(function):
        SCENARIOS.append((name, protocols, function))
        return function
    return register


def qos_set(messages):
    return sorted(message.qos for message in messages)


@scenario("basic")
def basic(ctx):
    a = ctx.paho("myclientid")
    a.disconnect()
    a = ctx.paho("myclientid")
    check(a.subscribe([(ctx.topics[0], 2)]) == [2], "SUBACK should grant QoS 2")
    a.publish(ctx.topics[0], b"qos 0", 0)
    check(a.publish(ctx.topics[0], b"qos 1", 1) == 0, "PUBACK should be success")
    check(a.publish(ctx.topics[0], b"qos 2", 2) == 0, "PUBREC/PUBCOMP should be success")
    messages = a.received(3)
    a.disconnect()
    check(len(messages) == 3, f"expected 3 messages, got {len(messages)}")
    check(qos_set(messages) == [0, 1, 2], f"QoS of the three messages: {qos_set(messages)}")
    check(sorted(m.payload for m in messages) == [b"qos 0", b"qos 1", b"qos 2"], "payloads differ")


@scenario("second_connect_and_bad_protocol_name")
def second_connect(ctx):
    raw = ctx.raw("myclientid")
    raw.send(raw.connect_packet("myclientid", True, 0, None, None, "x", "y", "MQTT"))
    check(raw.closed_within(3), "a second CONNECT on a connection must close it (protocol error)")
    bad = ctx.raw("myclientid", protocol_name="hj", expect_success=False)
    check(bad.connack is None or bad.connack.reason != 0, f"protocol name 'hj' accepted: {bad.connack}")
    check(bad.closed_within(3), "a CONNECT with protocol name 'hj' must close the connection")


@scenario("retained_messages")
def retained(ctx):
    props = None
    if ctx.v5:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("a", "2"), ("c", "3")]
    a = ctx.paho("myclientid")
    a.publish(ctx.topics[1], b"qos 0", 0, retain=True, properties=props)
    a.publish(ctx.topics[2], b"qos 1", 1, retain=True, properties=props)
    a.publish(ctx.topics[3], b"qos 2", 2, retain=True, properties=props)
    time.sleep(0.3)
    a.subscribe([(ctx.wild[5], 2)])
    messages = a.received(3)
    time.sleep(0.3)
    messages = a.received(0, 0)
    a.disconnect()
    check(len(messages) == 3, f"expected 3 retained messages, got {len(messages)}")
    check(all(m.retain for m in messages), "retained messages must carry the RETAIN flag")
    check(qos_set(messages) == [0, 1, 2], f"retained QoS: {qos_set(messages)}")
    if ctx.v5:
        for message in messages:
            user = getattr(message.properties, "UserProperty", None)
            check(user == [("a", "2"), ("c", "3")], f"retained user properties: {user}")

    a = ctx.paho("myclientid")
    a.publish(ctx.topics[1], b"", 0, retain=True)
    a.publish(ctx.topics[2], b"", 1, retain=True)
    a.publish(ctx.topics[3], b"", 2, retain=True)
    time.sleep(0.3)
    a.subscribe([(ctx.wild[5], 2)])
    time.sleep(0.5)
    messages = a.received(0, 0)
    a.disconnect()
    check(messages == [], f"cleared retained messages still delivered: {[m.topic for m in messages]}")


@scenario("will_message")
def will_message(ctx):
    b = ctx.paho("myclientid2")
    b.subscribe([(ctx.topics[2], 2)])
    will = {"topic": ctx.topics[2], "payload": b"client not disconnected", "qos": 2}
    if ctx.v5:
        will["props"] = {0x18: 0}
    a = ctx.raw("myclientid", keepalive=2, will=will)
    a.drop()
    messages = b.received(1, 6)
    b.disconnect()
    check(len(messages) == 1, f"expected the will message, got {len(messages)}")
    check(messages[0].payload == b"client not disconnected", f"will payload {messages[0].payload!r}")


@scenario("will_message_user_properties", protocols=("5",))
def will_user_properties(ctx):
    b = ctx.paho("myclientid2")
    b.subscribe([(ctx.topics[2], 2)])
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.UserProperty = [("a", "2"), ("c", "3")]
    a = ctx.paho("myclientid", keepalive=60, will={"topic": ctx.topics[2], "payload": b"will", "qos": 1,
                                                   "properties": will_props})
    # The client vanishes: its socket is closed under paho without a DISCONNECT.
    a.client.socket().shutdown(socket.SHUT_RDWR)
    messages = b.received(1, 6)
    a.stop()
    b.disconnect()
    check(len(messages) == 1, f"expected the will message, got {len(messages)}")
    user = getattr(messages[0].properties, "UserProperty", None)
    check(user == [("a", "2"), ("c", "3")], f"will user properties: {user}")


@scenario("zero_length_client_id")
def zero_length_client_id(ctx):
    # A clean session with an empty client id is accepted (and, in 5.0, told its id).
    client = ctx.raw("", clean=True)
    if ctx.v5:
        assigned = client.connack.props.get(0x12)
        check(assigned, f"5.0: no Assigned Client Identifier in {client.connack.props}")
    client.disconnect()
    persistent = ctx.raw("", clean=False, expect_success=False, props={SESSION_EXPIRY: 60} if ctx.v5 else None)
    if ctx.v5:
        # 5.0 dropped 3.1.1's rule: we assign an id to a persistent session too, and the client
        # resumes the session under that id.
        check(persistent.connack is not None and persistent.connack.reason == 0,
              f"5.0: an empty client id with clean start 0 should be assigned one: {persistent.connack}")
        assigned = persistent.connack.props.get(0x12, b"").decode()
        check(assigned, "5.0: accepted but no Assigned Client Identifier")
        persistent.disconnect()
        resumed = ctx.raw(assigned, clean=False, props={SESSION_EXPIRY: 0})
        check(resumed.connack.session_present, f"5.0: the session of the assigned id {assigned} is resumed")
        resumed.disconnect()
    else:
        # [MQTT-3.1.3-8]: CONNACK 0x02 (identifier rejected), then close.
        check(persistent.connack is not None and persistent.connack.reason == 2,
              f"3.1.1: empty client id with clean session 0 must be refused with 2, got {persistent.connack}")
    persistent.close()


@scenario("assigned_client_id", protocols=("5",))
def assigned_client_id(ctx):
    client = ctx.paho("")
    assigned = getattr(client.connack["properties"], "AssignedClientIdentifier", "")
    client.disconnect()
    check(assigned, "no Assigned Client Identifier for an empty client id")


def persistent(ctx, client_id, clean):
    """A persistent session: 5.0 asks for a session expiry (a clean start only for the first
    connection); 3.1.1 always connects with clean session 0 (scenarios start without one)."""
    if ctx.v5:
        return ctx.paho(client_id, clean=clean, expiry=99999)
    return ctx.paho(client_id, clean=False)


@scenario("offline_message_queueing")
def offline_queueing(ctx):
    a = persistent(ctx, "myclientid", clean=True)
    a.subscribe([(ctx.wild[5], 2)])
    a.disconnect()
    b = ctx.paho("myclientid2")
    b.publish(ctx.topics[1], b"qos 0", 0)
    b.publish(ctx.topics[2], b"qos 1", 1)
    b.publish(ctx.topics[3], b"qos 2", 2)
    b.disconnect()
    a = persistent(ctx, "myclientid", clean=False)
    check(a.connack["session_present"], "the persistent session should be present")
    messages = a.received(3, 2)
    time.sleep(0.3)
    messages = a.received(0, 0)
    a.disconnect()
    payloads = sorted(m.payload for m in messages)
    check(len(messages) in (2, 3), f"expected 2 or 3 queued messages, got {payloads}")
    check(b"qos 1" in payloads and b"qos 2" in payloads, f"QoS 1 and 2 messages must be queued: {payloads}")


@scenario("overlapping_subscriptions")
def overlapping(ctx):
    a = ctx.paho("myclientid")
    check(a.subscribe([(ctx.wild[6], 2), (ctx.wild[0], 1)]) == [2, 1], "SUBACK for two filters")
    a.publish(ctx.topics[3], b"overlapping topic filters", 2)
    a.received(2, 1.5)
    time.sleep(0.3)
    messages = a.received(0, 0)
    a.disconnect()
    qos = qos_set(messages)
    check(qos in ([2], [1, 2]), f"one message at QoS 2, or one per subscription at QoS 1 and 2; got {qos}")


@scenario("keepalive_and_will")
def keepalive(ctx):
    b = ctx.paho("myclientid2", keepalive=0)
    b.subscribe([(ctx.topics[4], 2)])
    a = ctx.raw("myclientid", keepalive=2, will={"topic": ctx.topics[4], "payload": b"keepalive expiry", "qos": 1})
    started = time.time()
    closed = a.closed_within(6)
    elapsed = time.time() - started
    check(closed, "a silent client must be disconnected after 1.5 x its keep alive")
    check(2.5 <= elapsed <= 5.0, f"disconnected after {elapsed:.1f}s, expected about 3s (1.5 x 2s)")
    if ctx.v5:
        check(getattr(closed, "reason", None) == 0x8D, f"5.0: DISCONNECT should be 0x8D, got {closed}")
    messages = b.received(1, 3)
    b.disconnect()
    check([m.payload for m in messages] == [b"keepalive expiry"], f"will after keep-alive expiry: {messages}")


@scenario("redelivery_on_reconnect")
def redelivery(ctx):
    props = {SESSION_EXPIRY: 99999} if ctx.v5 else None
    b = ctx.raw("myclientid2", clean=ctx.v5, props=props)
    check(b.subscribe([(ctx.wild[6], 2)]).reasons == [2], "SUBACK")
    a = ctx.paho("myclientid")
    a.publish(ctx.topics[1], b"qos 1", 1)
    a.publish(ctx.topics[3], b"qos 2", 2)
    a.disconnect()
    first = [b.expect(3), b.expect(3)]
    # b never acknowledges them, and goes away.
    b.disconnect(props={SESSION_EXPIRY: 99999} if ctx.v5 else None)
    b = ctx.raw("myclientid2", clean=False, props=props)
    check(b.connack.session_present, "session present after reconnect")
    again = [b.expect(3), b.expect(3)]
    check(sorted(p.qos for p in again) == [1, 2], f"resent QoS {[p.qos for p in again]}")
    check(all(p.dup for p in again), f"re-sent PUBLISHes must have DUP set: {again}")
    check(sorted(p.packet_id for p in again) == sorted(p.packet_id for p in first), "same packet ids on resend")
    for packet in again:
        b.ack(4 if packet.qos == 1 else 5, packet.packet_id)
    pubrel = b.expect(6)
    b.ack(7, pubrel.packet_id)
    check(b.read(0.5) is None, "nothing more after the exchanges completed")
    b.disconnect()


@scenario("qos2_exactly_once_on_duplicate_publish")
def qos2_duplicate(ctx):
    b = ctx.paho("myclientid2")
    b.subscribe([(ctx.topics[0], 2)])
    a = ctx.raw("myclientid")
    a.publish(ctx.topics[0], b"once", 2, packet_id=7)
    check(a.expect(5).packet_id == 7, "PUBREC")
    a.publish(ctx.topics[0], b"once", 2, packet_id=7, dup=True)
    check(a.expect(5).packet_id == 7, "PUBREC for the duplicate")
    a.ack(6, 7)
    check(a.expect(7).packet_id == 7, "PUBCOMP")
    a.disconnect()
    b.received(2, 1)
    messages = b.received(0, 0)
    b.disconnect()
    check(len(messages) == 1, f"a QoS 2 message re-sent before PUBREL is delivered once, got {len(messages)}")


@scenario("subscribe_failure")
def subscribe_failure(ctx):
    a = ctx.paho("myclientid")
    reasons = a.subscribe([(ctx.nosubscribe, 2)])
    a.disconnect()
    expected = 0x87 if ctx.v5 else 0x80
    check(reasons == [expected], f"SUBACK for a refused filter should be 0x{expected:02x}, got {reasons}")


@scenario("dollar_topics_not_matched_by_wildcards")
def dollar_topics(ctx):
    b = ctx.paho("myclientid2", keepalive=0)
    b.subscribe([("#", 2), ("+/" + ctx.topics[1].split("/", 1)[1], 2)])
    time.sleep(0.5)
    b.clear()
    rc = b.publish("$" + ctx.topics[1], b"", 1)
    time.sleep(0.5)
    dollar = [m.topic for m in b.received(0, 0) if m.topic.startswith("$")]
    b.disconnect()
    # A server may refuse publishes to $ topics (5.0: 0x87); it must never match them with
    # filters starting with a wildcard.
    check(rc in (0, 0x10, 0x87), f"PUBACK {rc}")
    check(dollar == [], f"$ topics matched by wildcard filters: {dollar}")


@scenario("unsubscribe")
def unsubscribe(ctx):
    b = ctx.paho("myclientid2")
    for topic in ctx.topics[:3]:
        b.subscribe([(topic, 2)])
    reasons = b.unsubscribe([ctx.topics[0]])
    if ctx.v5:
        check(reasons == [0], f"UNSUBACK for an existing subscription: {reasons}")
        reasons = b.unsubscribe([ctx.prefix + "never-subscribed"])
        check(reasons == [0x11], f"UNSUBACK for no subscription should be 0x11: {reasons}")
    b.clear()
    a = ctx.paho("myclientid")
    for index, topic in enumerate(ctx.topics[:3]):
        a.publish(topic, f"topic {index}".encode(), 1)
    b.received(3, 1.5)
    time.sleep(0.3)
    messages = b.received(0, 0)
    a.disconnect()
    b.disconnect()
    check(sorted(m.payload for m in messages) == [b"topic 1", b"topic 2"], f"got {[m.payload for m in messages]}")


@scenario("persistent_session_present")
def session_present(ctx):
    a = persistent(ctx, "myclientid", clean=True)
    check(not a.connack["session_present"], "a clean start has no session")
    a.subscribe([(ctx.topics[0], 1)])
    a.disconnect()
    a = persistent(ctx, "myclientid", clean=False)
    check(a.connack["session_present"], "the session should still exist")
    a.disconnect()
    a = ctx.paho("myclientid2")
    a.publish(ctx.topics[0], b"after", 1)
    a.disconnect()
    b = ctx.paho("myclientid", clean=True, expiry=0 if ctx.v5 else None)
    check(not b.connack["session_present"], "a clean start discards the session")
    messages = b.received(1, 0.5)
    b.disconnect()
    check(messages == [], f"a clean start must not receive the old session's messages: {len(messages)}")


@scenario("session_expiry", protocols=("5",))
def session_expiry(ctx):
    a = ctx.paho("myclientid", clean=True, expiry=0)
    check(not a.connack["session_present"], "clean start")
    a.subscribe([(ctx.topics[0], 2)])
    a.disconnect()
    a = ctx.paho("myclientid", clean=False, expiry=0)
    check(not a.connack["session_present"], "expiry 0: the session ends with the connection")
    a.disconnect()

    a = ctx.paho("myclientid", clean=True, expiry=3)
    a.subscribe([(ctx.topics[0], 2)])
    a.disconnect()
    time.sleep(1)
    a = ctx.paho("myclientid", clean=False, expiry=3)
    check(a.connack["session_present"], "expiry 3: present after 1s")
    a.disconnect()
    time.sleep(4.2)
    a = ctx.paho("myclientid", clean=False, expiry=3)
    check(not a.connack["session_present"], "expiry 3: gone after 4s")
    a.disconnect()

    a = ctx.paho("myclientid", clean=True, expiry=1)
    a.subscribe([(ctx.topics[0], 2)])
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 5
    a.disconnect(properties=props)
    time.sleep(2)
    a = ctx.paho("myclientid", clean=False, expiry=1)
    check(a.connack["session_present"], "DISCONNECT raised the expiry to 5: present after 2s")
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    a.disconnect(properties=props)
    a = ctx.paho("myclientid", clean=False, expiry=1)
    check(not a.connack["session_present"], "DISCONNECT with expiry 0 ends the session at once")
    a.disconnect()


def property_publishes(ctx, props):
    a = ctx.paho("myclientid")
    a.subscribe([(ctx.topics[0], 2)])
    for qos in (0, 1, 2):
        a.publish(ctx.topics[0], b"", qos, properties=props)
    messages = a.received(3)
    a.disconnect()
    check(len(messages) == 3, f"expected 3 messages, got {len(messages)}")
    check(qos_set(messages) == [0, 1, 2], f"QoS {qos_set(messages)}")
    return messages


@scenario("user_properties", protocols=("5",))
def user_properties(ctx):
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "2"), ("c", "3"), ("a", "4")]
    for message in property_publishes(ctx, props):
        user = getattr(message.properties, "UserProperty", None)
        check(user == [("a", "2"), ("c", "3"), ("a", "4")], f"user properties, in order and repeated: {user}")


@scenario("payload_format_and_content_type", protocols=("5",))
def payload_format(ctx):
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.ContentType = "My name"
    for message in property_publishes(ctx, props):
        check(getattr(message.properties, "PayloadFormatIndicator", None) == 1, "payload format indicator")
        check(getattr(message.properties, "ContentType", None) == "My name", "content type")


@scenario("message_expiry", protocols=("5",))
def message_expiry(ctx):
    b = ctx.paho("myclientid2", clean=True, expiry=99999)
    b.subscribe([(ctx.topics[0], 2)])
    b.disconnect()
    a = ctx.paho("myclientid")
    for seconds, label in ((1, b"expire"), (6, b"don't expire")):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = seconds
        a.publish(ctx.topics[0], b"qos 1 - " + label, 1, properties=props)
        a.publish(ctx.topics[0], b"qos 2 - " + label, 2, properties=props)
    a.disconnect()
    time.sleep(2.5)
    b = ctx.paho("myclientid2", clean=False, expiry=99999)
    b.received(2, 3)
    time.sleep(0.5)
    messages = b.received(0, 0)
    b.disconnect()
    payloads = sorted(m.payload for m in messages)
    check(payloads == [b"qos 1 - don't expire", b"qos 2 - don't expire"], f"delivered {payloads}")
    for message in messages:
        left = getattr(message.properties, "MessageExpiryInterval", None)
        check(left is not None and left < 6, f"the remaining expiry must be sent and below 6: {left}")


@scenario("subscribe_options", protocols=("5",))
def subscribe_options(ctx):
    a = ctx.paho("myclientid")
    b = ctx.paho("myclientid2")
    a.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, noLocal=True))])
    b.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, noLocal=True))])
    a.publish(ctx.topics[0], b"noLocal test", 1)
    b.received(1, 3)
    time.sleep(0.5)
    check(a.received(0, 0) == [], "noLocal: the publisher must not get its own message")
    check(len(b.received(0, 0)) == 1, "noLocal: the other subscriber gets it")
    a.disconnect()
    b.disconnect()

    a = ctx.paho("myclientid")
    a.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, retainAsPublished=True))])
    a.publish(ctx.topics[0], b"retain as published false", 1, retain=False)
    a.publish(ctx.topics[0], b"retain as published true", 1, retain=True)
    messages = a.received(2, 3)
    a.disconnect()
    check([(m.payload, m.retain) for m in messages] ==
          [(b"retain as published false", False), (b"retain as published true", True)],
          f"retainAsPublished: {[(m.payload, m.retain) for m in messages]}")
    a = ctx.paho("myclientid")
    a.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, retainAsPublished=False))])
    messages = a.received(1, 2)
    a.clear()
    a.publish(ctx.topics[0], b"live retained", 1, retain=True)
    live = a.received(1, 3)
    a.publish(ctx.topics[0], b"", 0, retain=True)
    a.disconnect()
    check(len(messages) == 1 and messages[0].retain, "a retained message sent on subscribe keeps RETAIN")
    check(len(live) == 1 and not live[0].retain, "without retainAsPublished a live message has RETAIN 0")

    a = ctx.paho("myclientid")
    a.publish(ctx.topics[1], b"qos 0", 0, retain=True)
    a.publish(ctx.topics[2], b"qos 1", 1, retain=True)
    a.publish(ctx.topics[3], b"qos 2", 2, retain=True)
    time.sleep(0.3)
    a.subscribe([(ctx.wild[5], SubscribeOptions(qos=2, retainHandling=1))])
    messages = a.received(3, 3)
    check(qos_set(messages) == [0, 1, 2], f"retainHandling 1, new subscription: {qos_set(messages)}")
    a.clear()
    a.subscribe([(ctx.wild[5], SubscribeOptions(qos=2, retainHandling=1))])
    time.sleep(0.5)
    check(a.received(0, 0) == [], "retainHandling 1, existing subscription: no retained messages")
    a.disconnect()

    a = ctx.paho("myclientid")
    a.subscribe([(ctx.wild[5], SubscribeOptions(qos=2, retainHandling=2))])
    a.subscribe([(ctx.wild[5], SubscribeOptions(qos=2, retainHandling=2))])
    time.sleep(0.5)
    check(a.received(0, 0) == [], "retainHandling 2: never retained messages")
    a.disconnect()

    a = ctx.paho("myclientid")
    for _ in range(2):
        a.clear()
        a.subscribe([(ctx.wild[5], SubscribeOptions(qos=2, retainHandling=0))])
        messages = a.received(3, 3)
        check(qos_set(messages) == [0, 1, 2], f"retainHandling 0: every subscribe, got {qos_set(messages)}")
    a.disconnect()


@scenario("subscription_identifiers", protocols=("5",))
def subscription_identifiers(ctx):
    a = ctx.paho("myclientid")
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 456789
    a.subscribe([(ctx.topics[0], 2)], properties=props)
    b = ctx.paho("myclientid2")
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 2
    b.subscribe([(ctx.topics[0], 2)], properties=props)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 3
    b.subscribe([(ctx.topics[0] + "/#", 2)], properties=props)
    b.publish(ctx.topics[0], b"sub identifier test", 1)
    a_messages = a.received(1, 3)
    b_messages = b.received(1, 3)
    time.sleep(0.3)
    b_messages = b.received(0, 0)
    a.disconnect()
    b.disconnect()
    check(len(a_messages) == 1, f"a: {len(a_messages)} messages")
    check(getattr(a_messages[0].properties, "SubscriptionIdentifier", None) == [456789],
          f"a's identifiers: {getattr(a_messages[0].properties, 'SubscriptionIdentifier', None)}")
    check(len(b_messages) == 1, f"b: one message for two overlapping subscriptions, got {len(b_messages)}")
    got = sorted(getattr(b_messages[0].properties, "SubscriptionIdentifier", []))
    check(got == [2, 3], f"b's identifiers: {got}")


@scenario("request_response", protocols=("5",))
def request_response(ctx):
    a = ctx.paho("myclientid")
    b = ctx.paho("myclientid2")
    a.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, noLocal=True))])
    b.subscribe([(ctx.topics[0], SubscribeOptions(qos=2, noLocal=True))])
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = ctx.topics[0]
    props.CorrelationData = b"334"
    a.publish(ctx.topics[0], b"request", 1, properties=props)
    requests = b.received(1, 3)
    check(len(requests) == 1, f"responder got {len(requests)}")
    request = requests[0].properties
    check(getattr(request, "ResponseTopic", None) == ctx.topics[0], "response topic forwarded")
    check(getattr(request, "CorrelationData", None) == b"334", "correlation data forwarded")
    reply = Properties(PacketTypes.PUBLISH)
    reply.CorrelationData = request.CorrelationData
    b.publish(request.ResponseTopic, b"response", 1, properties=reply)
    responses = a.received(1, 3)
    a.disconnect()
    b.disconnect()
    check([m.payload for m in responses] == [b"response"], f"requester got {[m.payload for m in responses]}")
    check(getattr(responses[0].properties, "CorrelationData", None) == b"334", "correlation data on the response")


@scenario("client_topic_alias", protocols=("5",))
def client_topic_alias(ctx):
    a = ctx.raw("myclientid")
    maximum = a.connack.props.get(TOPIC_ALIAS_MAXIMUM, 0)
    a.publish(ctx.topics[0], b"topic alias 0", 1, props={TOPIC_ALIAS: 0})
    closed = a.closed_within(3)
    check(getattr(closed, "reason", None) == 0x94, f"alias 0 must be refused with DISCONNECT 0x94, got {closed}")
    if maximum == 0:
        return
    a = ctx.raw("myclientid", props={SESSION_EXPIRY: 60})
    check(a.subscribe([(ctx.topics[0], 1)]).reasons == [1], "SUBACK")
    a.publish(ctx.topics[0], b"topic alias 1", 1, props={TOPIC_ALIAS: 1})
    a.publish("", b"topic alias 2", 1, props={TOPIC_ALIAS: 1})
    payloads = []
    deadline = time.time() + 3
    while len(payloads) < 2 and time.time() < deadline:
        packet = a.read(deadline - time.time())
        if packet is not None and packet.kind == 3:
            payloads.append((packet.topic, packet.payload))
            a.ack(4, packet.packet_id)
    check(sorted(payloads) == [(ctx.topics[0], b"topic alias 1"), (ctx.topics[0], b"topic alias 2")],
          f"messages through an alias: {payloads}")
    a.disconnect()
    # Aliases belong to one connection: the next one does not know alias 1.
    a = ctx.raw("myclientid", clean=False, props={SESSION_EXPIRY: 0})
    a.publish("", b"topic alias 4", 1, props={TOPIC_ALIAS: 1})
    closed = a.closed_within(3)
    check(getattr(closed, "reason", 0) >= 0x80, f"an unknown alias must close the connection, got {closed}")
    above = ctx.raw("myclientid")
    above.publish(ctx.topics[0], b"above", 0, props={TOPIC_ALIAS: maximum + 1})
    closed = above.closed_within(3)
    check(getattr(closed, "reason", None) == 0x94, f"alias above the maximum: 0x94, got {closed}")


@scenario("server_topic_alias", protocols=("5",))
def server_topic_alias(ctx):
    a = ctx.raw("myclientid", props={TOPIC_ALIAS_MAXIMUM: 1})
    check(a.subscribe([(ctx.topics[0], 2)]).reasons == [2], "SUBACK")
    b = ctx.paho("myclientid2")
    for qos in (0, 1, 2):
        b.publish(ctx.topics[0], b"topic alias", qos)
    b.disconnect()
    received = []
    deadline = time.time() + 3
    while len(received) < 3 and time.time() < deadline:
        packet = a.read(deadline - time.time())
        if packet is None:
            break
        if packet.kind == 3:
            received.append(packet)
            if packet.qos == 1:
                a.ack(4, packet.packet_id)
            elif packet.qos == 2:
                a.ack(5, packet.packet_id)
        elif packet.kind == 6:
            a.ack(7, packet.packet_id)
    a.disconnect()
    check(len(received) == 3, f"expected 3 messages, got {received}")
    aliases = [p.props.get(TOPIC_ALIAS) for p in received]
    check(all(alias is not None and 1 <= alias <= 1 for alias in aliases), f"aliases used: {aliases}")
    check(received[0].topic == ctx.topics[0], "the first message sets the alias with the topic")
    check(all(p.topic == "" for p in received[1:]), f"later messages use the alias alone: {received}")

    # A client that allows no aliases (the default) never gets one.
    for props in ({}, {TOPIC_ALIAS_MAXIMUM: 0}):
        a = ctx.raw("myclientid", props=props)
        a.subscribe([(ctx.topics[0], 0)])
        b = ctx.paho("myclientid2")
        for _ in range(2):
            b.publish(ctx.topics[0], b"no alias", 0)
        b.disconnect()
        packets = [a.expect(3), a.expect(3)]
        a.disconnect()
        check(all(TOPIC_ALIAS not in p.props and p.topic == ctx.topics[0] for p in packets),
              f"aliases sent to a client that allows none: {packets}")


@scenario("maximum_packet_size", protocols=("5",))
def maximum_packet_size(ctx):
    a = ctx.raw("myclientid")
    server_maximum = a.connack.props.get(MAXIMUM_PACKET_SIZE)
    check(server_maximum == 256 * 1024, f"Maximum Packet Size announced: {server_maximum}")
    a.publish(ctx.topics[0], b"." * server_maximum, 0)
    closed = a.closed_within(5)
    check(getattr(closed, "reason", None) == 0x95, f"a packet over the maximum: DISCONNECT 0x95, got {closed}")

    a = ctx.raw("myclientid", props={MAXIMUM_PACKET_SIZE: 64})
    a.subscribe([(ctx.topics[0], 2)])
    b = ctx.paho("myclientid2")
    b.publish(ctx.topics[0], b"." * 32, 0)
    b.publish(ctx.topics[0], b"." * 64, 1)
    b.publish(ctx.topics[0], b"." * 16, 1)
    b.disconnect()
    sizes = []
    deadline = time.time() + 2
    while time.time() < deadline:
        packet = a.read(deadline - time.time())
        if packet is None:
            break
        if packet.kind == 3:
            sizes.append(len(packet.payload))
            if packet.qos == 1:
                a.ack(4, packet.packet_id)
    a.disconnect()
    check(sizes == [32, 16], f"a packet over the client's maximum must be skipped, got payload sizes {sizes}")


@scenario("server_keep_alive", protocols=("5",))
def server_keep_alive(ctx):
    a = ctx.paho("myclientid", keepalive=120)
    within = getattr(a.connack["properties"], "ServerKeepAlive", None)
    a.disconnect()
    check(within is None or within == 120, f"a keep alive within the cap is kept: {within}")
    a = ctx.paho("myclientid", keepalive=0)
    capped = getattr(a.connack["properties"], "ServerKeepAlive", None)
    a.disconnect()
    check(capped is not None and capped > 0, f"keep alive 0 with a server cap: Server Keep Alive announced: {capped}")
    a = ctx.paho("myclientid", keepalive=65535)
    above = getattr(a.connack["properties"], "ServerKeepAlive", None)
    a.disconnect()
    check(above == capped, f"a keep alive above the cap is told the cap ({capped}): {above}")


@scenario("flow_control_client_receive_maximum", protocols=("5",))
def flow_control_client(ctx):
    a = ctx.raw("myclientid", props={RECEIVE_MAXIMUM: 2, SESSION_EXPIRY: 0})
    check(a.subscribe([(ctx.topics[0], 2)]).reasons == [2], "SUBACK")
    b = ctx.paho("myclientid2")
    for index in (1, 2, 3):
        b.publish(ctx.topics[0], f"message {index}".encode(), 1)
    b.disconnect()
    first = a.expect(3)
    second = a.expect(3)
    check(a.read(1.0) is None, "a third QoS 1 message arrived beyond the client's Receive Maximum of 2")
    a.ack(4, first.packet_id)
    third = a.expect(3)
    check(third.payload == b"message 3", f"third message after an ack: {third}")
    a.ack(4, second.packet_id)
    a.ack(4, third.packet_id)
    a.disconnect()


@scenario("flow_control_server_receive_maximum", protocols=("5",))
def flow_control_server(ctx):
    a = ctx.raw("myclientid")
    maximum = a.connack.props.get(RECEIVE_MAXIMUM, 65535)
    check(maximum < 65535, f"Receive Maximum announced: {maximum}")
    # QoS 2 publishes that are never released stay unacknowledged: one more than the maximum
    # is a protocol violation (0x93).
    data = b"".join(
        Raw.frame(0x34, utf8(ctx.topics[0]) + struct.pack("!H", i) + b"\x00" + b"x") for i in range(1, maximum + 2))
    a.send(data)
    closed = False
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            packet = a.read(deadline - time.time())
        except Closed:
            break
        if packet is None:
            break
        if packet.kind == 14:
            closed = packet
            break
    a.close()
    check(getattr(closed, "reason", None) == 0x93, f"exceeding Receive Maximum: DISCONNECT 0x93, got {closed}")


@scenario("will_delay", protocols=("5",))
def will_delay(ctx):
    for delay, expiry, expected in ((3, 5, 3), (5, 0, 0), (5, 2, 2)):
        b = ctx.paho("myclientid2")
        b.subscribe([(ctx.topics[0], 2)])
        a = ctx.raw("myclientid", props={SESSION_EXPIRY: expiry},
                    will={"topic": ctx.topics[0], "payload": b"will delay", "qos": 1, "props": {WILL_DELAY: delay}})
        a.drop()
        started = time.time()
        messages = b.received(1, expected + 4)
        elapsed = time.time() - started
        b.disconnect()
        check(len(messages) == 1, f"will delay {delay}, expiry {expiry}: no will")
        # The gateway fires due wills every 0.5 s; the upper bound leaves room for a busy host
        # but stays below the next case (a delay of 5 s cut to a session expiry of 2 s).
        check(expected - 0.5 <= elapsed <= expected + 2.0,
              f"will delay {delay}, session expiry {expiry}: will after {elapsed:.1f}s, expected ~{expected}s")
    # A reconnect within the delay cancels the will.
    b = ctx.paho("myclientid2")
    b.subscribe([(ctx.topics[0], 2)])
    a = ctx.raw("myclientid", props={SESSION_EXPIRY: 10},
                will={"topic": ctx.topics[0], "payload": b"cancelled", "qos": 1, "props": {WILL_DELAY: 2}})
    a.drop()
    a = ctx.raw("myclientid", clean=False, props={SESSION_EXPIRY: 0})
    messages = b.received(1, 3)
    a.disconnect()
    b.disconnect()
    check(messages == [], "a reconnect within the will delay must cancel the will")


@scenario("shared_subscriptions")
def shared_subscriptions(ctx):
    shared = "$share/sharename/" + ctx.prefix + "x"
    a = ctx.paho("myclientid")
    b = ctx.paho("myclientid2")
    for client in (a, b):
        check(client.subscribe([(shared, 2), (ctx.topics[0], 2)]) == [2, 2], "SUBACK for shared and plain")
    b.publish(ctx.topics[0], b"plain", 0)
    check(len(a.received(1, 2)) == 1 and len(b.received(1, 2)) == 1, "both get a plain subscription's message")
    a.clear()
    b.clear()
    for index in range(4):
        b.publish(ctx.prefix + "x", f"shared {index}".encode(), 1)
    wait_for(lambda: len(a.messages) + len(b.messages) >= 4, 3)
    time.sleep(0.3)
    got = sorted(m.payload for m in a.received(0, 0) + b.received(0, 0))
    a.disconnect()
    b.disconnect()
    check(got == sorted(f"shared {i}".encode() for i in range(4)), f"each shared message exactly once: {got}")


@scenario("qos_downgrade_to_the_subscription")
def qos_downgrade(ctx):
    a = ctx.paho("myclientid")
    a.subscribe([(ctx.topics[0], 1)])
    a.publish(ctx.topics[0], b"sent at 2", 2)
    messages = a.received(1)
    a.disconnect()
    check([m.qos for m in messages] == [1], f"a QoS 2 message to a QoS 1 subscription arrives at QoS 1: {messages}")


@scenario("message_order_and_large_payload")
def order_and_size(ctx):
    a = ctx.paho("myclientid")
    a.subscribe([(ctx.topics[0], 1)])
    b = ctx.paho("myclientid2")
    for index in range(200):
        b.publish(ctx.topics[0], str(index).encode(), 1, wait=False)
    big = bytes(range(256)) * 800  # 200 KiB, under the 256 KiB maximum packet size
    b.publish(ctx.topics[0], big, 1)
    messages = a.received(201, 10)
    b.disconnect()
    a.disconnect()
    check(len(messages) == 201, f"expected 201 messages, got {len(messages)}")
    order = [int(m.payload) for m in messages[:200]]
    check(order == list(range(200)), "QoS 1 messages from one publisher arrive in order")
    check(messages[200].payload == big, "a 200 KiB payload arrives intact")


@scenario("session_takeover")
def takeover(ctx):
    first = ctx.raw("myclientid")
    second = ctx.paho("myclientid")
    closed = first.closed_within(3)
    check(closed, "a second connection with the same client id must close the first")
    if ctx.v5:
        check(getattr(closed, "reason", None) == 0x8E, f"5.0: DISCONNECT 0x8E (session taken over), got {closed}")
    check(second.connack["rc"] == 0 and not second.disconnects, "the newcomer stays connected")
    second.disconnect()


@scenario("will_only_when_the_client_vanishes")
def will_rules(ctx):
    b = ctx.paho("myclientid2")
    b.subscribe([(ctx.topics[2], 1)])
    a = ctx.raw("myclientid", will={"topic": ctx.topics[2], "payload": b"gone", "qos": 1})
    a.disconnect()
    check(b.received(1, 1.0) == [], "a normal DISCONNECT discards the will")
    if ctx.v5:
        a = ctx.raw("myclientid", will={"topic": ctx.topics[2], "payload": b"with will", "qos": 1})
        a.send(Raw.frame(0xE0, b"\x04\x00"))  # DISCONNECT 0x04: disconnect with will message
        a.close()
        messages = b.received(1, 3)
        check([m.payload for m in messages] == [b"with will"], f"DISCONNECT 0x04 publishes the will: {messages}")
    b.disconnect()


@scenario("ping")
def ping(ctx):
    a = ctx.raw("myclientid", keepalive=10)
    a.send(b"\xc0\x00")
    response = a.read(3)
    a.disconnect()
    check(response is not None and response.kind == 13, f"PINGREQ is answered with PINGRESP, got {response}")


@scenario("device_and_application_in_the_free_namespace")
def device_in_free_namespace(ctx):
    if not ctx.device:
        raise Failure("no device credentials given (--device ID:TOKEN)")
    device, token = ctx.device
    app = ctx.paho("myclientid")
    check(app.subscribe([(ctx.prefix + "free/#", 1), ("devices/+/telemetry", 1)]) == [1, 1], "application SUBACK")
    dev = DeviceClient(ctx, device, token)
    check(dev.publish(ctx.prefix + "free/from-device", b"hello", 1) == 0, "device publishes in the free namespace")
    check(dev.publish(f"devices/{device}/telemetry", b'{"temp": 21.5}', 1) == 0, "device telemetry")
    messages = app.received(2, 5)
    app.disconnect()
    topics = sorted(m.topic for m in messages)
    check(topics == sorted([ctx.prefix + "free/from-device", f"devices/{device}/telemetry"]),
          f"the application gets the device's free-namespace message and its telemetry: {topics}")
    # SPEC §7: an application publishes to no device topic (5.0: 0x87; 3.1.1: dropped).
    other = ctx.paho("myclientid2")
    rc = other.publish(f"devices/{device}/operations", b"{}", 1)
    other.disconnect()
    check(rc == (0x87 if ctx.v5 else 0), f"application publish to a device topic: {rc}")
    dev.disconnect()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--app", action="append", required=True, help="KEY_ID:KEY, at least two")
    parser.add_argument("--device", help="DEVICE_ID:TOKEN of a device of the tenant")
    parser.add_argument("--protocol", choices=["311", "5"], required=True)
    parser.add_argument("--only", action="append", help="run only these scenarios")
    args = parser.parse_args()
    ctx = Context(args, args.protocol)
    for name, protocols, function in SCENARIOS:
        if args.protocol not in protocols or (args.only and name not in args.only):
            continue
        started = time.time()
        ok, reason = True, ""
        try:
            ctx.clean_sessions()
            ctx.clear_retained()
            function(ctx)
        except Failure as failure:
            ok, reason = False, str(failure)
        except Exception as error:  # a crash in the scenario is a failure too, with its trace
            ok, reason = False, f"{type(error).__name__}: {error} | " + traceback.format_exc(limit=3).replace("\n", " ")
        finally:
            ctx.close_all()
        print(json.dumps({"scenario": name, "protocol": args.protocol, "ok": ok, "reason": reason,
                          "seconds": round(time.time() - started, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
