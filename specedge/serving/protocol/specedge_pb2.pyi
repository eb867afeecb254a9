from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateRequest(_message.Message):
    __slots__ = ("client_id", "request_id", "prefill", "prompt", "tokens", "parents", "round", "survival")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    request_id: int
    prefill: bool
    prompt: _containers.RepeatedScalarFieldContainer[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    parents: _containers.RepeatedScalarFieldContainer[int]
    round: int
    survival: bytes
    def __init__(self, client_id: _Optional[int] = ..., request_id: _Optional[int] = ..., prefill: _Optional[bool] = ..., prompt: _Optional[_Iterable[int]] = ..., tokens: _Optional[_Iterable[int]] = ..., parents: _Optional[_Iterable[int]] = ..., round: _Optional[int] = ..., survival: _Optional[bytes] = ...) -> None: ...

class ValidateReply(_message.Message):
    __slots__ = ("accepted", "bonus", "queue_us", "verify_us", "kept")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BONUS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_US_FIELD_NUMBER: _ClassVar[int]
    VERIFY_US_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    accepted: _containers.RepeatedScalarFieldContainer[int]
    bonus: int
    queue_us: int
    verify_us: int
    kept: int
    def __init__(self, accepted: _Optional[_Iterable[int]] = ..., bonus: _Optional[int] = ..., queue_us: _Optional[int] = ..., verify_us: _Optional[int] = ..., kept: _Optional[int] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    def __init__(self, client_id: _Optional[int] = ...) -> None: ...

class SyncReply(_message.Message):
    __slots__ = ("num_clients",)
    NUM_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    num_clients: int
    def __init__(self, num_clients: _Optional[int] = ...) -> None: ...

class FinishRequest(_message.Message):
    __slots__ = ("client_id", "lost")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    lost: bool
    def __init__(self, client_id: _Optional[int] = ..., lost: _Optional[bool] = ...) -> None: ...

class FinishReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
