#!/usr/bin/env python3
"""Runs the Eclipse Paho MQTT interoperability suites (client_test.py for 3.1.1, client_test5.py
for 5.0) against a fresh `rampart serve`, through TLS, as applications of one tenant whose free
namespace is open for applications with one deny rule (subscribe `test/nosubscribe`).

The suites are not ours and are not vendored: pass the `interoperability` directory of a
checkout of the Paho testing repository. They assume a plain broker on localhost:1883 with no
credentials, so this script changes only how they reach the broker: every socket their client
libraries open goes to a local forwarder that carries it over TLS (trusting the platform CA) to
Rampart's MQTT port, and every CONNECT carries the API key as `<tenant>/<key id>` + key. Their
assertions are untouched.

    cargo build --release
    python3 tools/paho-interop.py --paho /path/to/paho.mqtt.testing/interoperability

Prints each suite's unittest summary and one line per suite: "<suite>: <passed>/<ran> passed".
"""
import argparse
import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PASSWORD = "interop-Admin-password-1"

# Runs inside the suite's process: TLS and credentials, then the suite as __main__.
SHIM = r"""
import os, runpy, socket as real_socket, sys, types
suite_dir = os.path.dirname(os.path.abspath(sys.argv[1]))
sys.path.insert(0, suite_dir)
os.chdir(suite_dir)
port = int(os.environ["INTEROP_PORT"])

class RedirectedSocket(real_socket.socket):
    def connect(self, address):
        super().connect(("127.0.0.1", port))

shim = types.ModuleType("socket")
shim.__dict__.update(real_socket.__dict__)
shim.socket = RedirectedSocket
import mqtt.clients.V311.main as v311, mqtt.clients.V5.main as v5
for module in (v311, v5):
    module.socket = shim
    original = module.Client.connect
    def connect(self, *args, _original=original, **kwargs):
        kwargs.setdefault("username", os.environ["INTEROP_USERNAME"])
        kwargs.setdefault("password", os.environ["INTEROP_PASSWORD"].encode())
        return _original(self, *args, **kwargs)
    module.Client.connect = connect
script = sys.argv[1]
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""


def start_tls_forwarder(mqtt_port, context):
    """A plain-TCP listener on loopback whose every connection is forwarded over TLS to
    Rampart's MQTT port (what stunnel would do): the suites' clients read and write one socket
    from two threads, which a Python TLS socket does not allow. Answers the listening port."""
    ready = threading.Event()
    listening = {}

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def forward(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", mqtt_port, ssl=context, server_hostname="localhost")
        except (OSError, ssl.SSLError):
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def serve():
        server = await asyncio.start_server(forward, "127.0.0.1", 0)
        listening["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    return listening["port"]


def call(base, context, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, context=context) as response:
        return json.loads(response.read() or b"null")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--paho", required=True, help="the interoperability directory of paho.mqtt.testing")
    parser.add_argument("--binary", default="target/release/rampart")
    parser.add_argument("--no-deny-rule", action="store_true", help="open the namespace with no rule")
    parser.add_argument("--verbose", action="store_true", help="print the suites' whole output")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="rampart-interop-")
    env = dict(os.environ, RAMPART_ADMIN_PASSWORD=PASSWORD)
    env = {name: value for name, value in env.items() if not name.startswith("RAMPART_") or name == "RAMPART_ADMIN_PASSWORD"}
    log = open(os.path.join(data_dir, "server.log"), "w")
    server = subprocess.Popen(
        [args.binary, "serve", "--data-dir", data_dir, "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"],
        env=env, stdout=log, stderr=log)
    try:
        endpoints_path = os.path.join(data_dir, "endpoints.json")
        for _ in range(300):
            if os.path.exists(endpoints_path):
                try:
                    endpoints = json.load(open(endpoints_path))
                    break
                except ValueError:
                    pass
            time.sleep(0.1)
        else:
            sys.exit("rampart did not start; see " + log.name)
        ca = os.path.join(data_dir, "tls", "ca.pem")
        context = ssl.create_default_context(cafile=ca)
        base = "https://localhost:" + endpoints["http"].rsplit(":", 1)[1]
        login = lambda tenant: call(base, context, "POST", "/api/v1/auth/login", body={
            "tenant": tenant, "username": "admin", "password": PASSWORD})["access_token"]
        admin = login("platform")
        call(base, context, "POST", "/api/v1/tenants", admin, {
            "id": "interop", "name": "interop", "admin": {"username": "admin", "password": PASSWORD}})
        tenant_admin = login("interop")
        rules = [] if args.no_deny_rule else [
            {"principal": "application", "action": "subscribe", "topic": "test/nosubscribe", "effect": "deny"}]
        call(base, context, "PUT", "/api/v1/tenant/topic-policies", tenant_admin, {
            "free_namespace": {"applications": True, "devices": False}, "rules": rules})
        key = call(base, context, "POST", "/api/v1/api-keys", tenant_admin, {"name": "paho", "roles": ["admin"]})
        forwarder = start_tls_forwarder(int(endpoints["mqtt"].rsplit(":", 1)[1]), context)
        suite_env = dict(os.environ, INTEROP_PORT=str(forwarder),
                         INTEROP_USERNAME="interop/" + key["id"], INTEROP_PASSWORD=key["key"])
        totals = []
        for suite in ("client_test.py", "client_test5.py"):
            run = subprocess.run([sys.executable, "-c", SHIM, os.path.join(args.paho, suite)],
                                 env=suite_env, capture_output=True, text=True, timeout=1800)
            output = run.stdout + run.stderr
            if args.verbose:
                print(output)
            ran = int((re.search(r"Ran (\d+) test", output) or [0, 0])[1])
            failures = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", output))
            failed = re.findall(r"^(?:FAIL|ERROR): (\S+)", output, re.M)
            print(f"== {suite}\n" + "\n".join(line for line in output.splitlines()
                                            if line.startswith(("FAIL:", "ERROR:", "Ran ", "OK", "FAILED"))))
            totals.append((suite, ran - failures, ran, failed))
        for suite, passed, ran, failed in totals:
            print(f"{suite}: {passed}/{ran} passed" + (f" (failed: {', '.join(failed)})" if failed else ""))
        print(f"total: {sum(t[1] for t in totals)}/{sum(t[2] for t in totals)} passed")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
