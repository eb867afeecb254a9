"""Who may talk to the verification server: shared-token authentication and TLS.

Both are off by default (the server binds to 127.0.0.1). The token and the keys are read from
files named in ``server.*``; only the file names are ever in a config, a log or a run
directory. A call without the right token is refused with ``UNAUTHENTICATED`` before any
handler runs, so it touches no request state and no model.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from specedge.base.config.server import ServerConfig

TOKEN_HEADER = "authorization"


class SecurityError(ValueError):
    """A token or key file that cannot be used; the message names the file, not its content."""


def read_token(path: str) -> str:
    lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise SecurityError(f"server.auth_token_file {path}: the first line is empty")
    return token


def _read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).expanduser().read_bytes()


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuses every call whose ``authorization`` metadata is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        sent = dict(details.invocation_metadata or ()).get(TOKEN_HEADER, "")
        sent_bytes = sent.encode() if isinstance(sent, str) else bytes(sent)
        if hmac.compare_digest(sent_bytes, self._expected):
            return await continuation(details)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong auth token (server.auth_token_file)")

        return grpc.unary_unary_rpc_method_handler(deny)


def make_server(cfg: ServerConfig) -> grpc.aio.Server:
    interceptors = [TokenAuth(read_token(cfg.auth_token_file))] if cfg.auth_token_file else []
    limit = cfg.max_message_bytes
    return grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])


def bind(server: grpc.aio.Server, cfg: ServerConfig) -> int:
    """Listen on ``host:port`` (TLS when a certificate is configured); the port bound."""
    address = f"{cfg.host}:{cfg.port}"
    if cfg.tls_cert is None:
        return server.add_insecure_port(address)
    key, cert = _read(cfg.tls_key), _read(cfg.tls_cert)
    assert key is not None and cert is not None
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=_read(cfg.tls_client_ca),
                                        require_client_auth=cfg.tls_client_ca is not None)
    return server.add_secure_port(address, creds)


def open_channel(cfg: ServerConfig, address: str) -> grpc.aio.Channel:
    """An edge's channel to the server: TLS trusting the server's certificate when it is on."""
    options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
               ("grpc.max_send_message_length", cfg.max_message_bytes)]
    if cfg.tls_cert is None:
        return grpc.aio.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(root_certificates=_read(cfg.tls_cert),
                                         private_key=_read(cfg.tls_client_key),
                                         certificate_chain=_read(cfg.tls_client_cert))
    return grpc.aio.secure_channel(address, creds, options=options)


def call_metadata(cfg: ServerConfig) -> tuple[tuple[str, str], ...]:
    """What an edge sends with every call: the token, when auth is on."""
    if cfg.auth_token_file is None:
        return ()
    return ((TOKEN_HEADER, f"Bearer {read_token(cfg.auth_token_file)}"),)
