from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AwsCredentials(_message.Message):
    __slots__ = ["access_key_id", "expiration", "secret_access_key", "session_token"]
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    expiration: _timestamp_pb2.Timestamp
    secret_access_key: str
    session_token: str
    def __init__(self, access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ..., session_token: _Optional[str] = ..., expiration: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Chain(_message.Message):
    __slots__ = ["audience", "default_scopes", "mode", "profile", "source_domain", "target_domain"]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SCOPES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TARGET_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    audience: str
    default_scopes: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    profile: str
    source_domain: str
    target_domain: str
    def __init__(self, source_domain: _Optional[str] = ..., target_domain: _Optional[str] = ..., audience: _Optional[str] = ..., default_scopes: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ..., profile: _Optional[str] = ...) -> None: ...

class ChainRequest(_message.Message):
    __slots__ = ["actor_token", "actor_token_type", "audience", "dpop_proof", "resource", "scope", "source_domain", "source_dpop_proof", "subject_token", "subject_token_type", "target_domain"]
    ACTOR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    DPOP_PROOF_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DPOP_PROOF_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    actor_token: str
    actor_token_type: str
    audience: str
    dpop_proof: str
    resource: _containers.RepeatedScalarFieldContainer[str]
    scope: _containers.RepeatedScalarFieldContainer[str]
    source_domain: str
    source_dpop_proof: str
    subject_token: str
    subject_token_type: str
    target_domain: str
    def __init__(self, subject_token: _Optional[str] = ..., subject_token_type: _Optional[str] = ..., source_domain: _Optional[str] = ..., target_domain: _Optional[str] = ..., scope: _Optional[_Iterable[str]] = ..., resource: _Optional[_Iterable[str]] = ..., audience: _Optional[str] = ..., actor_token: _Optional[str] = ..., actor_token_type: _Optional[str] = ..., dpop_proof: _Optional[str] = ..., source_dpop_proof: _Optional[str] = ...) -> None: ...

class ChainResponse(_message.Message):
    __slots__ = ["access_token", "audit_id", "aws_credentials", "expires_in", "hops", "issued_token_type", "profile", "scope", "token_type"]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    AWS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    audit_id: str
    aws_credentials: AwsCredentials
    expires_in: int
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    issued_token_type: str
    profile: str
    scope: str
    token_type: str
    def __init__(self, access_token: _Optional[str] = ..., issued_token_type: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., scope: _Optional[str] = ..., audit_id: _Optional[str] = ..., hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ..., profile: _Optional[str] = ..., aws_credentials: _Optional[_Union[AwsCredentials, _Mapping]] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ["client_auth_method", "client_id", "issuer", "jwks_uri", "kind", "name", "token_endpoint"]
    CLIENT_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    client_auth_method: str
    client_id: str
    issuer: str
    jwks_uri: str
    kind: str
    name: str
    token_endpoint: str
    def __init__(self, name: _Optional[str] = ..., issuer: _Optional[str] = ..., token_endpoint: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., client_id: _Optional[str] = ..., client_auth_method: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ["assertion_jti_hash", "domain", "duration", "endpoint", "grant_type"]
    ASSERTION_JTI_HASH_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    GRANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    assertion_jti_hash: str
    domain: str
    duration: _duration_pb2.Duration
    endpoint: str
    grant_type: str
    def __init__(self, domain: _Optional[str] = ..., endpoint: _Optional[str] = ..., grant_type: _Optional[str] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., assertion_jti_hash: _Optional[str] = ...) -> None: ...

class ListDomainsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListDomainsResponse(_message.Message):
    __slots__ = ["chains", "domains"]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    chains: _containers.RepeatedCompositeFieldContainer[Chain]
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[Chain, _Mapping]]] = ...) -> None: ...
