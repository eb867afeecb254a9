"""Wire format between edges and the server (``specedge.proto``): the generated messages
(``pb``) and service stubs (``rpc``); the conversions to and from trees and verdicts are in
:mod:`specedge.serving.protocol.convert` (apart, so a process that only talks to a server,
the launcher, imports no tree or model code).
"""

from __future__ import annotations

from specedge.serving.protocol import specedge_pb2 as pb
from specedge.serving.protocol import specedge_pb2_grpc as rpc

__all__ = ["pb", "rpc"]
