"""TLS and mTLS options of ChainClient against a real `chainbroker serve` with TLS on its listeners, a client
CA (mTLS callers named by their certificate's URI SAN) and an API key, chaining through the sandbox's domains.
Certificates are made for the test with the openssl command.
"""

import hashlib
import os
import subprocess
import tempfile
import textwrap
import unittest

import grpc

from chainbroker_client import OUTCOME_SUCCESS, ChainClient, ChainError

from ._sandbox import ALICE_SUB_B, CALL_TIMEOUT, Process, Sandbox, free_port, jwt_payload

AGENT = "spiffe://test.example/agent"  # the mTLS caller: the client certificate's URI SAN
SERVER_NAME = "broker.test"  # the only name in the broker's certificate
API_KEY = "py-client-test-key"

_sandbox = None
_broker = None
_certs = None  # the temporary directory holding the certificates and the configuration


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)


def _make_leaf(d, name, ca, ext):
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    os.chmod(os.path.join(d, f"{name}.key"), 0o600)


def setUpModule():
    global _sandbox, _broker, _certs
    _certs = tempfile.TemporaryDirectory(prefix="chainbroker-py-tls-")
    d = _certs.name
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", "ca", f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n")
    _make_leaf(d, "agent", "ca", f"subjectAltName=URI:{AGENT}\nextendedKeyUsage=clientAuth\n")
    _make_leaf(d, "stranger", "other-ca", "subjectAltName=URI:spiffe://test.example/stranger\nextendedKeyUsage=clientAuth\n")

    _sandbox = Sandbox()
    a = f"127.0.0.1:{_sandbox.ports['domain-a-addr']}"
    b = f"127.0.0.1:{_sandbox.ports['domain-b-addr']}"
    ports = {"grpc": free_port(), "http": free_port(), "admin": free_port()}
    config = os.path.join(d, "config.yaml")
    with open(config, "w") as f:
        f.write(textwrap.dedent(f"""\
            listen:
              grpc: 127.0.0.1:{ports['grpc']}
              http: 127.0.0.1:{ports['http']}
              admin: 127.0.0.1:{ports['admin']}
              shutdown_timeout: 2s
            tls:
              cert_file: {d}/server.pem
              key_file: {d}/server.key
              client_ca_file: {d}/ca.pem
            callers:
              mtls: true
              api_keys:
                - name: key-caller
                  sha256: {hashlib.sha256(API_KEY.encode()).hexdigest()}
            policy:
              - caller: {AGENT}
                roles: [audit]
                chains:
                  - source: domain-a
                    target: domain-b
                    scopes: ["*"]
            store:
              backend: memory
            domains:
              - name: domain-a
                issuer: http://{a}/realms/domain-a
                allow_insecure_http: true
                token_endpoint: http://{a}/realms/domain-a/protocol/openid-connect/token
                jwks_uri: http://{a}/realms/domain-a/protocol/openid-connect/certs
                client:
                  client_id: chainbroker
                  auth_method: client_secret_basic
                  client_secret_env: CHAINBROKER_SANDBOX_SECRET_A
                token_exchange:
                  subject_token_type: urn:ietf:params:oauth:token-type:access_token
                  requested_token_type: urn:ietf:params:oauth:token-type:access_token
              - name: domain-b
                issuer: http://{b}/realms/domain-b
                allow_insecure_http: true
                token_endpoint: http://{b}/realms/domain-b/protocol/openid-connect/token
                jwks_uri: http://{b}/realms/domain-b/protocol/openid-connect/certs
                client:
                  client_id: chainbroker
                  auth_method: client_secret_basic
                  client_secret_env: CHAINBROKER_SANDBOX_SECRET_B
            chains:
              - source: domain-a
                target: domain-b
                audience: http://{b}/realms/domain-b
            """))
    # The sandbox's fixed demo secrets for its `chainbroker` clients (examples/sandbox.yaml).
    env = dict(os.environ, CHAINBROKER_SANDBOX_SECRET_A="chainbroker-secret-a",
               CHAINBROKER_SANDBOX_SECRET_B="chainbroker-secret-b")
    _broker = Process(["serve", "--config", config], f"http://127.0.0.1:{ports['admin']}/readyz", env=env)
    _broker.target = f"127.0.0.1:{ports['grpc']}"


def tearDownModule():
    for p in (_broker, _sandbox):
        if p is not None:
            p.stop()
    if _certs is not None:
        _certs.cleanup()


def _file(name):
    return os.path.join(_certs.name, name)


class TLSTest(unittest.TestCase):
    def client(self, **kwargs) -> ChainClient:
        c = ChainClient(_broker.target, timeout=CALL_TIMEOUT, **kwargs)
        self.addCleanup(c.close)
        return c

    def test_mtls_caller_chains_and_is_audited_by_certificate(self):
        c = self.client(ca_file=_file("ca.pem"), cert_file=_file("agent.pem"), key_file=_file("agent.key"),
                        server_name=SERVER_NAME)
        self.assertIn(("domain-a", "domain-b"), [(x.source_domain, x.target_domain) for x in c.list_domains().chains])
        res = c.chain(_sandbox.token("alice"), "domain-b")
        self.assertEqual(jwt_payload(res.access_token)["sub"], ALICE_SUB_B)
        events = list(c.iter_audit_events(caller=AGENT))
        self.assertIn(res.audit_id, [e.id for e in events])
        event = next(e for e in events if e.id == res.audit_id)
        self.assertEqual(event.caller, AGENT)
        self.assertEqual(event.outcome, OUTCOME_SUCCESS)

    def test_tls_with_api_key(self):
        c = self.client(ca_file=_file("ca.pem"), server_name=SERVER_NAME, api_key=API_KEY)
        self.assertEqual(len(c.list_domains().chains), 0)  # its caller has no policy entry: no chain
        # The refusal names the caller the key identified, with the broker's reason.
        with self.assertRaises(ChainError) as caught:
            c.chain(_sandbox.token("alice"), "domain-b")
        self.assertEqual(caught.exception.code, grpc.StatusCode.PERMISSION_DENIED, str(caught.exception))
        self.assertEqual(caught.exception.reason, "CHAIN_NOT_ALLOWED")
        self.assertEqual(caught.exception.domain, "chainbroker")
        self.assertIn('"key-caller"', caught.exception.message)

    def test_tls_without_credentials_is_unauthenticated(self):
        c = self.client(ca_file=_file("ca.pem"), server_name=SERVER_NAME)
        with self.assertRaises(ChainError) as caught:
            c.list_domains()
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED, str(caught.exception))

    def test_handshake_failures_are_unavailable(self):
        cases = {
            "plaintext to a TLS listener": {},
            "broker certificate from an untrusted CA": {"ca_file": _file("other-ca.pem"), "server_name": SERVER_NAME},
            "name not in the broker's certificate": {"ca_file": _file("ca.pem")},  # 127.0.0.1 is not a SAN
            "client certificate from an untrusted CA": {"ca_file": _file("ca.pem"), "server_name": SERVER_NAME,
                                                        "cert_file": _file("stranger.pem"),
                                                        "key_file": _file("stranger.key")},
        }
        for name, kwargs in cases.items():
            with self.subTest(name):
                c = self.client(api_key=API_KEY, **kwargs)
                with self.assertRaises(ChainError) as caught:
                    c.list_domains(timeout=10)
                self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE, str(caught.exception))
                self.assertEqual(caught.exception.reason, "")

    def test_certificate_and_key_go_together(self):
        for kwargs in ({"cert_file": _file("agent.pem")}, {"key_file": _file("agent.key")}):
            with self.subTest(kwargs), self.assertRaises(ValueError):
                ChainClient(_broker.target, **kwargs)


if __name__ == "__main__":
    unittest.main()
