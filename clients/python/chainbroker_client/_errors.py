"""ChainError: a failed call, with the broker's reason code from google.rpc.ErrorInfo."""

from __future__ import annotations

from typing import Mapping, Optional

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

# Every chainbroker error is a gRPC status whose details hold one google.rpc.ErrorInfo. gRPC carries the
# serialized google.rpc.Status in this binary trailer (grpc-go writes it whenever a status has details).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"
# gRPC already bounds the metadata it receives (channel option grpc.max_metadata_size); whatever that is set
# to, a status detail larger than this is not parsed.
_MAX_STATUS_DETAILS = 64 * 1024


def _field(name: str, number: int, ftype: int, label: int = 1, type_name: str = "") -> descriptor_pb2.FieldDescriptorProto:
    f = descriptor_pb2.FieldDescriptorProto(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    return f


def _error_details_classes():
    """google.rpc.Status and google.rpc.ErrorInfo, described field for field as upstream.

    Their .proto files are not part of this repository (its protos import only well-known types) and Debian
    has no python3-googleapis-common-protos, so the two messages are described here, in a private descriptor
    pool: the default pool keeps its google.rpc names free for googleapis-common-protos or grpcio-status, if
    an application also uses them.
    """
    T = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    f = descriptor_pb2.FileDescriptorProto(
        name="chainbroker_client/google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    status = f.message_type.add(name="Status")
    status.field.extend([
        _field("code", 1, T.TYPE_INT32),
        _field("message", 2, T.TYPE_STRING),
        _field("details", 3, T.TYPE_MESSAGE, T.LABEL_REPEATED, ".google.protobuf.Any"),
    ])
    info = f.message_type.add(name="ErrorInfo")
    info.field.extend([
        _field("reason", 1, T.TYPE_STRING),
        _field("domain", 2, T.TYPE_STRING),
        _field("metadata", 3, T.TYPE_MESSAGE, T.LABEL_REPEATED, ".google.rpc.ErrorInfo.MetadataEntry"),
    ])
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, T.TYPE_STRING), _field("value", 2, T.TYPE_STRING)])
    pool.Add(f)

    def cls(name: str):
        desc = pool.FindMessageTypeByName(name)
        get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
        return get(desc) if get else message_factory.MessageFactory(pool).GetPrototype(desc)

    return cls("google.rpc.Status"), cls("google.rpc.ErrorInfo")


Status, ErrorInfo = _error_details_classes()


class ChainError(Exception):
    """A failed chainbroker call.

    Attributes:
        code: the gRPC status code (grpc.StatusCode), e.g. INVALID_ARGUMENT or UNAVAILABLE.
        reason: the broker's reason code from google.rpc.ErrorInfo (e.g. "DOMAIN_UNKNOWN", see the README's
            error table); "" when the error did not come from the broker (a network failure, a deadline).
        domain: ErrorInfo's domain, "chainbroker" for broker errors.
        metadata: ErrorInfo's metadata, e.g. {"field": "target_domain"} or the authorization server's
            {"hop": "jwt_bearer", "error": "invalid_grant", "error_description": "..."}.
        message: the status message (never holds a token).
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "", domain: str = "",
                 metadata: Optional[Mapping[str, str]] = None):
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        super().__init__(f"{code.name}: {reason + ': ' if reason else ''}{message}")

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> "ChainError":
        """Builds a ChainError from what a grpc call raised, decoding ErrorInfo from the status details."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else None) or ""
        trailers = (err.trailing_metadata() if hasattr(err, "trailing_metadata") else None) or ()
        info = error_info_from_trailers(trailers)
        if info is None:
            return cls(code, message)
        return cls(code, message, info.reason, info.domain, dict(info.metadata))


def error_info_from_trailers(trailers) -> Optional["ErrorInfo"]:
    """Returns the first google.rpc.ErrorInfo in a call's grpc-status-details-bin trailer, or None."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes) or len(value) > _MAX_STATUS_DETAILS:
            continue
        status = Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed trailer is not an ErrorInfo; the status code still stands
            return None
        for detail in status.details:
            if detail.type_url == ERROR_INFO_TYPE_URL:
                info = ErrorInfo()
                try:
                    info.ParseFromString(detail.value)
                except Exception:
                    return None
                return info
    return None
