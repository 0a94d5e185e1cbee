"""ChainError's decoding of google.rpc.ErrorInfo from the grpc-status-details-bin trailer, edge cases included
(the well-formed case against the broker is in test_sandbox)."""

import unittest

import grpc

from chainbroker_client import ChainError, error_info_from_trailers
from chainbroker_client._errors import ERROR_INFO_TYPE_URL, STATUS_DETAILS_KEY, ErrorInfo, Status


def status_bytes(*details) -> bytes:
    status = Status(code=3, message="m")
    for type_url, value in details:
        d = status.details.add()
        d.type_url = type_url
        d.value = value
    return status.SerializeToString()


def info_bytes(reason="DOMAIN_UNKNOWN", **metadata) -> bytes:
    info = ErrorInfo(reason=reason, domain="chainbroker")
    info.metadata.update(metadata)
    return info.SerializeToString()


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed unary call raises: a grpc.RpcError that is also a grpc.Call."""

    def __init__(self, code, details, trailers):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


class ErrorInfoTest(unittest.TestCase):
    def test_decoding(self):
        other = ("type.googleapis.com/google.rpc.RetryInfo", b"\x0a\x02\x08\x01")
        cases = [
            ("ErrorInfo", [(STATUS_DETAILS_KEY, status_bytes((ERROR_INFO_TYPE_URL, info_bytes(field="target_domain"))))],
             ("DOMAIN_UNKNOWN", {"field": "target_domain"})),
            ("after another detail", [(STATUS_DETAILS_KEY, status_bytes(other, (ERROR_INFO_TYPE_URL, info_bytes("X"))))],
             ("X", {})),
            ("no trailer", [], None),
            ("other trailers only", [("x-other", "v")], None),
            ("no ErrorInfo detail", [(STATUS_DETAILS_KEY, status_bytes(other))], None),
            ("malformed status", [(STATUS_DETAILS_KEY, b"\xff\xff\xff")], None),
            ("malformed ErrorInfo", [(STATUS_DETAILS_KEY, status_bytes((ERROR_INFO_TYPE_URL, b"\x0a\xff")))], None),
            ("oversized", [(STATUS_DETAILS_KEY, status_bytes((ERROR_INFO_TYPE_URL, info_bytes("A" * 70000))))], None),
            ("text value", [(STATUS_DETAILS_KEY, "not bytes")], None),
        ]
        for name, trailers, want in cases:
            with self.subTest(name):
                info = error_info_from_trailers(trailers)
                if want is None:
                    self.assertIsNone(info)
                else:
                    self.assertEqual((info.reason, dict(info.metadata)), want)

    def test_chain_error_from_rpc_error(self):
        trailers = [(STATUS_DETAILS_KEY, status_bytes((ERROR_INFO_TYPE_URL, info_bytes(hop="jwt_bearer", error="invalid_grant"))))]
        err = ChainError.from_rpc_error(FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "refused", trailers))
        self.assertEqual(err.code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(err.reason, "DOMAIN_UNKNOWN")
        self.assertEqual(err.domain, "chainbroker")
        self.assertEqual(err.metadata, {"hop": "jwt_bearer", "error": "invalid_grant"})
        self.assertEqual(err.message, "refused")
        self.assertEqual(str(err), "PERMISSION_DENIED: DOMAIN_UNKNOWN: refused")

        bare = ChainError.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, None, None))
        self.assertEqual((bare.reason, bare.domain, bare.metadata, bare.message), ("", "", {}, ""))
        self.assertEqual(str(bare), "UNAVAILABLE: ")


if __name__ == "__main__":
    unittest.main()
