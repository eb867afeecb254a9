"""Wire format between edges and the server (``specedge.proto``): its conversions.

A tree travels as its tokens (root first) and the parent index of every non-root node; the
reply is the accepted path below the root and the bonus token. Both are packed varints, so a
node costs its token (1-3 bytes) plus its parent (1 byte while the tree has < 128 nodes).
"""

from __future__ import annotations

from specedge.algorithm.goodput import encode
from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Verdict
from specedge.serving.protocol import specedge_pb2 as pb


def request_from_tree(client_id: int, request_id: int, tree: TokenTree, prefill: bool = False,
                      prompt: list[int] | None = None, round_index: int = 0,
                      survival: list[float] | None = None) -> pb.ValidateRequest:
    """A Validate request. A prefill round carries the prompt, unless the server has it cached.
    ``round_index`` makes every round's message distinct, so the server can tell a retry of
    the round it applied last (answered again, not re-applied) from the next round.
    ``survival``: each node's chance of acceptance, for a goodput-budget server."""
    return pb.ValidateRequest(
        client_id=client_id, request_id=request_id, prefill=prefill, prompt=prompt or [],
        tokens=tree.tokens, parents=tree.parents[1:], round=round_index,
        survival=encode(survival) if survival is not None else b"")


def reply_from_verdict(verdict: Verdict, queue_s: float = 0.0, verify_s: float = 0.0,
                       kept: int = 0) -> pb.ValidateReply:
    """The server's timings ride along so an edge can split its wait into network, queue and
    verification without comparing clocks across machines; ``kept``: the drafted nodes it
    verified."""
    return pb.ValidateReply(accepted=verdict.path[1:], bonus=verdict.bonus,
                            queue_us=round(queue_s * 1e6), verify_us=round(verify_s * 1e6),
                            kept=kept)


def verdict_from_reply(reply: pb.ValidateReply) -> Verdict:
    return Verdict(path=[0, *reply.accepted], bonus=reply.bonus)
