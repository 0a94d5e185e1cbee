"""End-to-end test of the Python client against `chainbroker sandbox` (domain A, domain B and the broker, every
listener on a free loopback port): ChainService and AuditService over gRPC.

CHAINBROKER_BIN=/path/to/chainbroker skips the build and runs that binary instead.
"""

import unittest

import grpc

from chainbroker_client import OUTCOME_FAILURE, OUTCOME_SUCCESS, ChainClient, ChainError

from ._sandbox import ALICE_SUB_A, ALICE_SUB_B, CALL_TIMEOUT, Sandbox, free_port, jwt_payload

_sandbox = None  # the running sandbox (setUpModule)


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
