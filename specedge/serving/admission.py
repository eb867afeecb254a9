"""Admission control: what the server checks in a Validate request before the model sees it.

Edges are untrusted machines on a WAN. A malformed request must get a gRPC error that names
the problem, and must never reach the batched target forward, where one bad token id or parent
index would fail (or corrupt) every other edge's verification in the same batch. The checks are
pure functions of the request, the client's id and the server's :class:`Limits`, so they are
tested directly as well as through a live server.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from specedge.algorithm.goodput import decode, sanitized
from specedge.algorithm.tree import TokenTree
from specedge.serving.protocol import pb


class Rejected(Exception):
    """A request the server refuses: the gRPC status and a message naming the problem."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    num_clients: int
    vocab_size: int  # token ids must be in [0, vocab_size)
    max_tree_nodes: int  # root included
    max_len: int  # positions must stay below this (the model's configured context)


def _invalid(message: str) -> Rejected:
    return Rejected(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_client(client_id: int, limits: Limits) -> None:
    if not 0 <= client_id < limits.num_clients:
        raise _invalid(f"client_id {client_id} is not in 0..{limits.num_clients - 1}")


def _check_tokens(what: str, tokens: list[int], vocab_size: int) -> None:
    bad = next((t for t in tokens if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise _invalid(f"{what} holds token id {bad}, outside the vocabulary 0..{vocab_size - 1}")


def check_tree(msg: pb.ValidateRequest, limits: Limits) -> TokenTree:
    """The request's tree, if it is one: a root, then nodes whose parents come earlier."""
    tokens, parents = list(msg.tokens), list(msg.parents)
    if not tokens:
        raise _invalid("the tree is empty: tokens must hold at least the root")
    if len(parents) != len(tokens) - 1:
        raise _invalid(f"{len(tokens)} tokens need {len(tokens) - 1} parent indices (one per "
                       f"node below the root), got {len(parents)}")
    if len(tokens) > limits.max_tree_nodes:
        raise _invalid(f"the tree has {len(tokens)} nodes; this server takes at most "
                       f"{limits.max_tree_nodes} (the root, plus edge.max_budget or, with "
                       "proactive drafting, edge.proactive.max_budget if larger)")
    for node, parent in enumerate(parents, start=1):
        if parent >= node:
            raise _invalid(f"node {node} has parent {parent}: a parent must be an earlier node "
                           f"(0..{node - 1})")
    _check_tokens("the tree", tokens, limits.vocab_size)
    return TokenTree.from_wire(tokens, [-1, *parents])


def check_survival(msg: pb.ValidateRequest, tree: TokenTree) -> list[float]:
    """The tree's survivals for the goodput budget (one byte per node), distrusted: clamped
    to [0, 1] and to each node's parent (:func:`specedge.algorithm.goodput.sanitized`)."""
    if len(msg.survival) != len(tree):
        raise _invalid(f"server.verify_budget = goodput needs one survival byte per tree node: "
                       f"the tree has {len(tree)} nodes, the request {len(msg.survival)} bytes "
                       "(an edge run with another server.verify_budget?)")
    return sanitized(decode(msg.survival), tree.parents)


def check_prompt(msg: pb.ValidateRequest, limits: Limits) -> list[int]:
    prompt = list(msg.prompt)
    if len(prompt) >= limits.max_len:
        raise Rejected(grpc.StatusCode.OUT_OF_RANGE, f"the prompt has {len(prompt)} tokens; "
                       f"the model takes fewer than max_len = {limits.max_len}")
    _check_tokens("the prompt", prompt, limits.vocab_size)
    return prompt


def check_fits(committed: int, tree: TokenTree, limits: Limits) -> None:
    """The deepest node sits at position committed - 1 + depth; the bonus token after it."""
    last = committed - 1 + max(tree.depths) + 1
    if last >= limits.max_len:
        raise Rejected(grpc.StatusCode.OUT_OF_RANGE,
                       f"the tree reaches position {last}, past max_len = {limits.max_len} "
                       f"({committed} committed tokens, depth {max(tree.depths)})")
