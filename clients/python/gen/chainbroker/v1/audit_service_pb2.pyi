from chainbroker.v1 import chain_service_pb2 as _chain_service_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
OUTCOME_CACHE_HIT: Outcome
OUTCOME_FAILURE: Outcome
OUTCOME_SUCCESS: Outcome
OUTCOME_UNSPECIFIED: Outcome

class AuditEvent(_message.Message):
    __slots__ = ["actor", "actor_token_hash", "assertion_audience", "assertion_issuer", "assertion_jti_hash", "aws_access_key_id_hash", "caller", "dpop_jkt", "hops", "id", "mapped_subject", "message", "mode", "outcome", "profile", "reason", "scopes", "source_domain", "subject", "subject_token_hash", "subject_verified", "target_domain", "time", "transcribed_claims", "unverified_subject", "upstream_error", "upstream_error_description"]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_ISSUER_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_JTI_HASH_FIELD_NUMBER: _ClassVar[int]
    AWS_ACCESS_KEY_ID_HASH_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    DPOP_JKT_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MAPPED_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    TARGET_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIBED_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    UNVERIFIED_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ERROR_FIELD_NUMBER: _ClassVar[int]
    actor: str
    actor_token_hash: str
    assertion_audience: _containers.RepeatedScalarFieldContainer[str]
    assertion_issuer: str
    assertion_jti_hash: str
    aws_access_key_id_hash: str
    caller: str
    dpop_jkt: str
    hops: _containers.RepeatedCompositeFieldContainer[_chain_service_pb2.Hop]
    id: str
    mapped_subject: str
    message: str
    mode: str
    outcome: Outcome
    profile: str
    reason: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    source_domain: str
    subject: str
    subject_token_hash: str
    subject_verified: bool
    target_domain: str
    time: _timestamp_pb2.Timestamp
    transcribed_claims: _containers.RepeatedScalarFieldContainer[str]
    unverified_subject: str
    upstream_error: str
    upstream_error_description: str
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., caller: _Optional[str] = ..., subject: _Optional[str] = ..., source_domain: _Optional[str] = ..., target_domain: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., reason: _Optional[str] = ..., upstream_error: _Optional[str] = ..., upstream_error_description: _Optional[str] = ..., hops: _Optional[_Iterable[_Union[_chain_service_pb2.Hop, _Mapping]]] = ..., subject_token_hash: _Optional[str] = ..., assertion_jti_hash: _Optional[str] = ..., assertion_issuer: _Optional[str] = ..., assertion_audience: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., mode: _Optional[str] = ..., mapped_subject: _Optional[str] = ..., transcribed_claims: _Optional[_Iterable[str]] = ..., subject_verified: bool = ..., unverified_subject: _Optional[str] = ..., actor: _Optional[str] = ..., actor_token_hash: _Optional[str] = ..., profile: _Optional[str] = ..., dpop_jkt: _Optional[str] = ..., aws_access_key_id_hash: _Optional[str] = ...) -> None: ...

class GetAuditEventRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetAuditEventResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: AuditEvent
    def __init__(self, event: _Optional[_Union[AuditEvent, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ["caller", "end_time", "outcome", "page_size", "page_token", "source_domain", "start_time", "subject", "target_domain"]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TARGET_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    caller: str
    end_time: _timestamp_pb2.Timestamp
    outcome: Outcome
    page_size: int
    page_token: str
    source_domain: str
    start_time: _timestamp_pb2.Timestamp
    subject: str
    target_domain: str
    def __init__(self, subject: _Optional[str] = ..., caller: _Optional[str] = ..., source_domain: _Optional[str] = ..., target_domain: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
