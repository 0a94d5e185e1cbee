"""ChainClient: a small wrapper over the generated ChainService and AuditService stubs."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
from google.protobuf import timestamp_pb2

from chainbroker.v1 import audit_service_pb2, audit_service_pb2_grpc, chain_service_pb2, chain_service_pb2_grpc

from ._errors import ChainError

PathLike = Union[str, "os.PathLike[str]"]

# The default deadline of every call, in seconds. A chain makes two calls to authorization servers (each
# bounded by the domain's own timeout, 10 s by default) plus the broker's work.
DEFAULT_TIMEOUT = 30.0
# The broker answers at most 1000 events per page (ListAuditEventsRequest.page_size).
MAX_PAGE_SIZE = 1000


def _read(path: Optional[PathLike]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _header_value(name: str, value: str) -> str:
    # A header value cannot hold a line break; gRPC would refuse the call with a less helpful error.
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name} must not contain line breaks or NUL")
    return value


class ChainClient:
    """gRPC client for a chainbroker broker (chainbroker.v1.ChainService and AuditService).

    target is the broker's gRPC listener as host:port (its --grpc-addr, e.g. "127.0.0.1:9090"), or any gRPC
    target string ("dns:///broker.example.com:443").

    Credentials, sent as metadata on every call: api_key as x-api-key, bearer_token as
    "authorization: Bearer <token>". Transport: plaintext HTTP/2 unless tls is true or a ca_file, a client
    certificate or a server_name is given; ca_file (PEM) replaces the system roots, cert_file and key_file (PEM)
    present a client certificate (mTLS), server_name overrides the name checked in the server's certificate.
    timeout is the default deadline of every call in seconds (None: no deadline); each method takes its own.

    Failed calls raise ChainError (with .code, .reason, .metadata). Use it as a context manager, or call
    close(), to close the channel.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: Optional[str] = None,
        bearer_token: Optional[str] = None,
        tls: bool = False,
        ca_file: Optional[PathLike] = None,
        cert_file: Optional[PathLike] = None,
        key_file: Optional[PathLike] = None,
        server_name: Optional[str] = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        options: Sequence[Tuple[str, object]] = (),
    ):
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together (mTLS)")
        metadata: List[Tuple[str, str]] = []
        if api_key:
            metadata.append(("x-api-key", _header_value("api_key", api_key)))
        if bearer_token:
            metadata.append(("authorization", "Bearer " + _header_value("bearer_token", bearer_token)))
        self._metadata = tuple(metadata)
        self._timeout = timeout

        opts = list(options)
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        if tls or ca_file is not None or cert_file is not None or server_name:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file),
                private_key=_read(key_file),
                certificate_chain=_read(cert_file),
            )
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self.chain_stub = chain_service_pb2_grpc.ChainServiceStub(self._channel)
        """The generated ChainService stub, for calls the wrapper does not cover (pass metadata yourself)."""
        self.audit_stub = audit_service_pb2_grpc.AuditServiceStub(self._channel)
        """The generated AuditService stub."""

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "ChainClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------------------
    def _call(self, method, request, timeout: Optional[float]):
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ChainError.from_rpc_error(err) from err

    def chain(
        self,
        subject_token: str,
        target_domain: str,
        *,
        source_domain: str = "",
        scopes: Iterable[str] = (),
        resources: Iterable[str] = (),
        audience: str = "",
        subject_token_type: str = "",
        actor_token: str = "",
        actor_token_type: str = "",
        timeout: Optional[float] = None,
    ) -> chain_service_pb2.ChainResponse:
        """Exchanges subject_token (the user's token from the source domain) for an access token in
        target_domain. Returns the ChainResponse (access_token, expires_in, scope, audit_id, hops)."""
        request = chain_service_pb2.ChainRequest(
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            source_domain=source_domain,
            target_domain=target_domain,
            scope=list(scopes),
            resource=list(resources),
            audience=audience,
            actor_token=actor_token,
            actor_token_type=actor_token_type,
        )
        return self._call(self.chain_stub.Chain, request, timeout)

    def list_domains(self, *, timeout: Optional[float] = None) -> chain_service_pb2.ListDomainsResponse:
        """Lists the configured domains and the chains the caller may use (never a secret)."""
        return self._call(self.chain_stub.ListDomains, chain_service_pb2.ListDomainsRequest(), timeout)

    def list_audit_events(
        self,
        *,
        subject: str = "",
        caller: str = "",
        source_domain: str = "",
        target_domain: str = "",
        outcome: int = audit_service_pb2.OUTCOME_UNSPECIFIED,
        start_time: Optional[timestamp_pb2.Timestamp] = None,
        end_time: Optional[timestamp_pb2.Timestamp] = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: Optional[float] = None,
    ) -> audit_service_pb2.ListAuditEventsResponse:
        """Returns one page of audit events, newest first (events, next_page_token).

        page_size 0 means the broker's default (50); at most 1000. Pass the answer's next_page_token as
        page_token for the next page (empty when there is none), or use iter_audit_events.
        """
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        request = audit_service_pb2.ListAuditEventsRequest(
            subject=subject,
            caller=caller,
            source_domain=source_domain,
            target_domain=target_domain,
            outcome=outcome,
            page_size=page_size,
            page_token=page_token,
        )
        if start_time is not None:
            request.start_time.CopyFrom(start_time)
        if end_time is not None:
            request.end_time.CopyFrom(end_time)
        return self._call(self.audit_stub.ListAuditEvents, request, timeout)

    def iter_audit_events(self, *, max_events: Optional[int] = None, **filters) -> Iterator[audit_service_pb2.AuditEvent]:
        """Yields audit events newest first, following next_page_token page after page.

        Takes list_audit_events's keyword arguments (filters, page_size, page_token, timeout: per page);
        max_events stops after that many events.
        """
        if max_events is not None and max_events < 0:
            raise ValueError("max_events must not be negative")
        yielded = 0
        page_token = filters.pop("page_token", "")
        while max_events is None or yielded < max_events:
            page = self.list_audit_events(page_token=page_token, **filters)
            for event in page.events:
                if max_events is not None and yielded >= max_events:
                    return
                yield event
                yielded += 1
            # A token equal to the one sent would repeat the same page forever.
            if not page.next_page_token or page.next_page_token == page_token:
                return
            page_token = page.next_page_token

    def get_audit_event(self, event_id: str, *, timeout: Optional[float] = None) -> audit_service_pb2.AuditEvent:
        """Returns one audit event by id (ChainResponse.audit_id)."""
        return self._call(self.audit_stub.GetAuditEvent, audit_service_pb2.GetAuditEventRequest(id=event_id), timeout).event
