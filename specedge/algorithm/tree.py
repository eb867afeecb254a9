"""The draft token tree of one request (SpecExec).

Node 0 is the *root*: the last committed token, whose KV is not cached yet, so the forward that
processes it yields the distribution of the first drafted token. Every other node is a drafted
token with a parent. Parents always precede their children (index order is topological), which
keeps ancestry a single forward pass and lets the tree travel as two flat lists (tokens,
parents) from which the receiver rebuilds the attention mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import torch


class NodeStatus(StrEnum):
    drafted = "drafted"  # proposed, not yet forwarded through the draft model (a leaf)
    forwarded = "forwarded"  # forwarded: its children have been proposed


@dataclass
class TokenTree:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # -1 for the root
    depths: list[int] = field(default_factory=list)  # root 0
    scores: list[float] = field(default_factory=list)  # cumulative (decayed) log-probability
    status: list[NodeStatus] = field(default_factory=list)

    @classmethod
    def rooted(cls, token: int) -> TokenTree:
        return cls([token], [-1], [0], [0.0], [NodeStatus.drafted])

    @classmethod
    def from_wire(cls, tokens: list[int], parents: list[int]) -> TokenTree:
        """Rebuild a tree from its tokens and parent indices, checking that it is one."""
        if len(tokens) != len(parents) or not tokens:
            raise ValueError(f"a tree needs as many parents as tokens (got {len(tokens)} tokens, "
                             f"{len(parents)} parents) and at least the root")
        if parents[0] != -1:
            raise ValueError(f"node 0 is the root and must have parent -1, got {parents[0]}")
        depths = [0]
        for i, p in enumerate(parents[1:], start=1):
            if not 0 <= p < i:
                raise ValueError(
                    f"node {i} has parent {p}; parents must be earlier nodes (0..{i - 1})")
            depths.append(depths[p] + 1)
        n = len(tokens)
        return cls(list(tokens), list(parents), depths, [0.0] * n, [NodeStatus.drafted] * n)

    def __len__(self) -> int:
        return len(self.tokens)

    def add_child(self, parent: int, token: int, score: float) -> int:
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.scores.append(score)
        self.status.append(NodeStatus.drafted)
        return len(self.tokens) - 1

    def children(self, node: int) -> list[int]:
        return [i for i, p in enumerate(self.parents) if p == node]

    def path_to(self, node: int) -> list[int]:
        """Indices from the root down to ``node``, inclusive."""
        path = []
        while node != -1:
            path.append(node)
            node = self.parents[node]
        return path[::-1]

    def ancestry(self) -> torch.Tensor:
        """``[N, N]`` bool: entry (i, j) is true when j is i or an ancestor of i."""
        n = len(self)
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parents):
            if p >= 0:
                anc[i] = anc[p]
            anc[i, i] = True
        return anc

    def keep_nodes(self, keep: list[int]) -> None:
        """Keep only the nodes ``keep`` (sorted, root first, ancestors included), reindexed."""
        new_index = {old: new for new, old in enumerate(keep)}
        if any(self.parents[i] not in new_index for i in keep[1:]):
            raise ValueError("pruning would orphan a node: a kept node's parent was dropped")
        self.parents = [-1] + [new_index[self.parents[i]] for i in keep[1:]]
        self.tokens = [self.tokens[i] for i in keep]
        self.depths = [self.depths[i] for i in keep]
        self.scores = [self.scores[i] for i in keep]
        self.status = [self.status[i] for i in keep]

    def snapshot(self) -> list[dict[str, object]]:
        """A JSON-friendly dump, one dict per node, for debugging and logs."""
        return [
            {"index": i, "token": t, "parent": p, "depth": d, "score": round(s, 4),
             "status": st.value}
            for i, (t, p, d, s, st) in enumerate(
                zip(self.tokens, self.parents, self.depths, self.scores, self.status, strict=True))
        ]
