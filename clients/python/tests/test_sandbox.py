"""End-to-end test of the Python client: builds chainbroker, starts `chainbroker sandbox` (domain A, domain B
and the broker) with every listener on a free loopback port, and calls ChainService and AuditService over gRPC.

CHAINBROKER_BIN=/path/to/chainbroker skips the build and runs that binary instead.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc

from chainbroker_client import OUTCOME_FAILURE, OUTCOME_SUCCESS, ChainClient, ChainError

REPO_ROOT = Path(__file__).resolve().parents[3]
ALICE_SUB_A = "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c"  # alice in domain A
ALICE_SUB_B = "c3d4e5f6-a7b8-4c9d-8e0f-112233445566"  # alice's linked user in domain B
BUILD_TIMEOUT = 300  # a cold `go build` compiles grpc, jwx, go-redis...
READY_TIMEOUT = 120
CALL_TIMEOUT = 30.0

_sandbox = None  # the running sandbox (setUpModule)


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


class Sandbox:
    """`chainbroker sandbox` with every listen address (each `-*-addr` flag its help lists) on a free port,
    so that it never takes a default port another test may hold."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="chainbroker-py-")
        binary = os.environ.get("CHAINBROKER_BIN")
        if not binary:
            binary = os.path.join(self.tmp.name, "chainbroker")
            subprocess.run(["go", "build", "-o", binary, "./cmd/chainbroker"], cwd=REPO_ROOT, check=True,
                           timeout=BUILD_TIMEOUT)
        usage = subprocess.run([binary, "sandbox", "-h"], capture_output=True, text=True, timeout=60)
        flags = sorted(set(re.findall(r"^\s+-{1,2}([a-z0-9-]+-addr)\b", usage.stdout + usage.stderr, re.M)))
        for required in ("grpc-addr", "http-addr", "domain-a-addr", "domain-b-addr"):
            if required not in flags:
                raise AssertionError(f"chainbroker sandbox -h lists no --{required}:\n{usage.stdout}{usage.stderr}")
        self.ports = {flag: free_port() for flag in flags}
        args = [binary, "sandbox"]
        for flag, port in self.ports.items():
            args += [f"--{flag}", f"127.0.0.1:{port}"]
        self.log = open(os.path.join(self.tmp.name, "sandbox.log"), "w+b")
        # Its own session (process group), so that stop() ends the sandbox and anything it started.
        self.proc = subprocess.Popen(args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"http://127.0.0.1:{self.ports['http-addr']}/readyz"
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"chainbroker sandbox exited early ({self.proc.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as res:
                    if res.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening or not ready yet
            if time.monotonic() > deadline:
                raise AssertionError(f"chainbroker sandbox not ready after {READY_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.2)

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


def setUpModule():
    global _sandbox
    _sandbox = Sandbox()


def tearDownModule():
    if _sandbox is not None:
        _sandbox.stop()


class SandboxTest(unittest.TestCase):
    def setUp(self):
        self.client = ChainClient(_sandbox.grpc_target(), timeout=CALL_TIMEOUT)
        self.addCleanup(self.client.close)

    def test_chain_returns_domain_b_token_and_audit_records_it(self):
        res = self.client.chain(_sandbox.token("alice"), "domain-b")

        self.assertTrue(res.access_token, "access_token is empty")
        claims = jwt_payload(res.access_token)
        self.assertEqual(claims["iss"], f"http://127.0.0.1:{_sandbox.ports['domain-b-addr']}/realms/domain-b")
        self.assertEqual(claims["sub"], ALICE_SUB_B)
        self.assertEqual(res.token_type, "Bearer")
        self.assertEqual(res.issued_token_type, "urn:ietf:params:oauth:token-type:access_token")
        self.assertGreater(res.expires_in, 0)
        self.assertTrue(res.audit_id, "audit_id is empty")
        self.assertEqual([h.domain for h in res.hops], ["domain-a", "domain-b"])
        for hop in res.hops:
            self.assertTrue(hop.endpoint.startswith("http://127.0.0.1:"), hop.endpoint)
            self.assertTrue(hop.HasField("duration"), "hop without duration")

        events = {e.id: e for e in self.client.list_audit_events(subject=ALICE_SUB_A).events}
        self.assertIn(res.audit_id, events)
        event = events[res.audit_id]
        self.assertEqual(event.outcome, OUTCOME_SUCCESS)
        self.assertEqual(event.subject, ALICE_SUB_A)
        self.assertEqual(event.source_domain, "domain-a")
        self.assertEqual(event.target_domain, "domain-b")
        self.assertEqual(event.reason, "")
        self.assertTrue(event.HasField("time"), "event without time")

        got = self.client.get_audit_event(res.audit_id)
        self.assertEqual(got.id, res.audit_id)
        self.assertEqual(got.outcome, OUTCOME_SUCCESS)

    def test_refused_chain_raises_chain_error_with_reason(self):
        with self.assertRaises(ChainError) as caught:
            self.client.chain(_sandbox.token("alice"), "nope")
        err = caught.exception
        self.assertEqual(err.code, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.assertEqual(err.reason, "DOMAIN_UNKNOWN")
        self.assertEqual(err.domain, "chainbroker")
        self.assertEqual(err.metadata.get("field"), "target_domain")
        self.assertIn("DOMAIN_UNKNOWN", str(err))
        self.assertIsInstance(err.__cause__, grpc.RpcError)

        failures = self.client.list_audit_events(target_domain="nope", outcome=OUTCOME_FAILURE).events
        self.assertIn("DOMAIN_UNKNOWN", [e.reason for e in failures])

    def test_list_domains(self):
        res = self.client.list_domains()
        # The sandbox may configure further targets; these two and the chain between them are always there.
        self.assertLessEqual({"domain-a", "domain-b"}, {d.name for d in res.domains})
        self.assertIn(("domain-a", "domain-b"), [(c.source_domain, c.target_domain) for c in res.chains])

    def test_list_audit_events_pages(self):
        # Five refusals into a target domain no other test uses: the filter sees exactly these events.
        token = _sandbox.token("bob")
        for _ in range(5):
            with self.assertRaises(ChainError) as caught:
                self.client.chain(token, "paging-py")
            self.assertEqual(caught.exception.reason, "DOMAIN_UNKNOWN")

        pages, page_token = [], ""
        while True:
            page = self.client.list_audit_events(target_domain="paging-py", page_size=2, page_token=page_token)
            pages.append([e.id for e in page.events])
            if not page.next_page_token:
                break
            self.assertLess(len(pages), 10, f"paging does not end: {pages}")
            page_token = page.next_page_token
        self.assertEqual([len(p) for p in pages], [2, 2, 1])
        ids = [i for p in pages for i in p]
        self.assertEqual(len(set(ids)), 5, ids)

        # iter_audit_events follows the pages itself, newest first, in the same order.
        events = list(self.client.iter_audit_events(target_domain="paging-py", page_size=2))
        self.assertEqual([e.id for e in events], ids)
        times = [e.time.ToNanoseconds() for e in events]
        self.assertEqual(times, sorted(times, reverse=True))
        self.assertEqual([e.id for e in self.client.iter_audit_events(target_domain="paging-py", page_size=2,
                                                                       max_events=3)], ids[:3])

    def test_credentials_are_sent_as_metadata(self):
        # The sandbox takes anonymous callers and configures neither API keys nor a caller JWT issuer, so a
        # call presenting either credential is refused (never downgraded to anonymous): that refusal, naming
        # the credential, shows the metadata reached the broker.
        for name, kwargs, refusal in [
            ("x-api-key", {"api_key": "k-123"}, r"(?i)API key"),
            ("authorization: Bearer", {"bearer_token": "t-456"}, r"(?i)bearer token"),
        ]:
            with self.subTest(name), ChainClient(_sandbox.grpc_target(), timeout=CALL_TIMEOUT, **kwargs) as c:
                with self.assertRaises(ChainError) as caught:
                    c.list_domains()
                self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED, str(caught.exception))
                self.assertRegex(caught.exception.message, refusal)

    def test_credentials_with_line_breaks_are_refused(self):
        for kwargs in ({"api_key": "k\r\nx-evil: 1"}, {"bearer_token": "t\n"}):
            with self.subTest(kwargs), self.assertRaises(ValueError):
                ChainClient(_sandbox.grpc_target(), **kwargs)

    def test_deadline(self):
        # A deadline already over when the call starts: the default of the client, then a per-call one.
        with ChainClient(_sandbox.grpc_target(), timeout=1e-9) as c:
            with self.assertRaises(ChainError) as caught:
                c.list_domains()
        self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(caught.exception.reason, "")
        with self.assertRaises(ChainError) as caught:
            self.client.list_domains(timeout=1e-9)
        self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_unreachable_broker(self):
        with ChainClient(f"127.0.0.1:{free_port()}", timeout=CALL_TIMEOUT) as c:
            with self.assertRaises(ChainError) as caught:
                c.list_domains()
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(caught.exception.reason, "")
        self.assertEqual(caught.exception.metadata, {})


if __name__ == "__main__":
    unittest.main()
