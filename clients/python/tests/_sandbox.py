"""Test helpers: a `chainbroker sandbox` on free loopback ports, free ports, JWT payloads.

CHAINBROKER_BIN=/path/to/chainbroker skips the build and runs that binary instead; otherwise the binary is
built once per test run (`go build ./cmd/chainbroker`) into a temporary directory.
"""

import atexit
import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
ALICE_SUB_A = "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c"  # alice in domain A
ALICE_SUB_B = "c3d4e5f6-a7b8-4c9d-8e0f-112233445566"  # alice's linked user in domain B
BUILD_TIMEOUT = 300  # a cold `go build` compiles grpc, jwx, go-redis...
READY_TIMEOUT = 120
CALL_TIMEOUT = 30.0

_built = {}  # the binary built by chainbroker_binary(), and its temporary directory


def chainbroker_binary() -> str:
    """$CHAINBROKER_BIN, else chainbroker built once per test run (removed at exit)."""
    binary = os.environ.get("CHAINBROKER_BIN")
    if binary:
        return binary
    if "bin" not in _built:
        tmp = tempfile.TemporaryDirectory(prefix="chainbroker-py-bin-")
        atexit.register(tmp.cleanup)
        binary = os.path.join(tmp.name, "chainbroker")
        subprocess.run(["go", "build", "-o", binary, "./cmd/chainbroker"], cwd=REPO_ROOT, check=True,
                       timeout=BUILD_TIMEOUT)
        _built["bin"] = binary
    return _built["bin"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jwt_payload(jwt: str) -> dict:
    parts = jwt.split(".")
    if len(parts) != 3:
        raise AssertionError("access token is not a compact JWS")
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(body))


class Process:
    """A chainbroker command in its own session (process group), its output in a temporary file; ready once
    GET ready_url answers 200."""

    def __init__(self, args, ready_url: str, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="chainbroker-py-")
        self.log = open(os.path.join(self.tmp.name, "output.log"), "w+b")
        # Its own session, so that stop() ends the command and anything it started.
        self.proc = subprocess.Popen([chainbroker_binary()] + list(args), cwd=REPO_ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready(ready_url)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def _wait_ready(self, url: str):
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"chainbroker exited early ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as res:
                    if res.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening or not ready yet
            if time.monotonic() > deadline:
                raise AssertionError(f"chainbroker not ready after {READY_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.log.close()
        self.tmp.cleanup()


class Sandbox(Process):
    """`chainbroker sandbox` with every listen address (each `-*-addr` flag its help lists) on a free port,
    so that it never takes a default port another test may hold."""

    def __init__(self):
        usage = subprocess.run([chainbroker_binary(), "sandbox", "-h"], capture_output=True, text=True, timeout=60)
        flags = sorted(set(re.findall(r"^\s+-{1,2}([a-z0-9-]+-addr)\b", usage.stdout + usage.stderr, re.M)))
        for required in ("grpc-addr", "http-addr", "domain-a-addr", "domain-b-addr"):
            if required not in flags:
                raise AssertionError(f"chainbroker sandbox -h lists no --{required}:\n{usage.stdout}{usage.stderr}")
        self.ports = {flag: free_port() for flag in flags}
        args = ["sandbox"]
        for flag, port in self.ports.items():
            args += [f"--{flag}", f"127.0.0.1:{port}"]
        super().__init__(args, f"http://127.0.0.1:{self.ports['http-addr']}/readyz")

    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc-addr']}"

    def token(self, user: str) -> str:
        """The user's access token from domain A (password grant of the public client sandbox-agent)."""
        url = f"http://127.0.0.1:{self.ports['domain-a-addr']}/realms/domain-a/protocol/openid-connect/token"
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": "sandbox-agent",
                                       "username": user, "password": user}).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=CALL_TIMEOUT) as res:
            body = json.load(res)
        if not body.get("access_token"):
            raise AssertionError(f"domain A returned no access_token: {sorted(body)}")
        return body["access_token"]
