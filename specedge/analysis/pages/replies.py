"""The comparison report's replies: what the pair wrote, beside the target's own greedy
decode."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from specedge.analysis.pages.page import Section, html_table

if TYPE_CHECKING:
    from specedge.analysis.pages.comparison import Run


def _output_ids(run: Run) -> dict[int, list[int]]:
    out = run.records.outputs
    return {int(r): list(ids) for r, ids in zip(out["request_id"], out["output_ids"],
                                               strict=True)}


def replies_section(runs: list[Run], examples: int = 3) -> Section | None:
    """What the pair actually wrote, and how often each run wrote exactly what plain greedy
    decoding of the target (the auto-batch run) wrote."""
    with_outputs = [r for r in runs if r.records.outputs is not None and len(r.records.outputs)]
    if not with_outputs:
        return None
    text, tables = [], []
    reference = next((r for r in with_outputs if r.summary["baseline"] == "auto_batch"), None)
    if reference is not None:
        greedy = _output_ids(reference)
        rows = []
        for run in with_outputs:
            ids = _output_ids(run)
            same = sum(greedy.get(k) == v for k, v in ids.items())
            rows.append({"baseline": run.label, "dtype": run.summary.get("dtype", "?"),
                         "requests": len(ids), "same as greedy": same,
                         "match rate": same / len(ids)})
        tables.append(html_table(pd.DataFrame(rows)))
        text.append(
            "Auto-batch is the target's own greedy decoding. In fp32 every run equals it token "
            "for token (the tests check this). In bf16 or fp16, a 16-token verification and a "
            "1-token decode can round a near-tie differently; a speculative run can then take "
            "the other token, and from there it follows the target's greedy continuation of "
            "what it has written. The match rate counts such requests.")
    first = with_outputs[0].records.outputs.sort_values("request_id").head(examples)
    details = []
    for rid, prompt in zip(first["request_id"], first["prompt"], strict=True):
        replies = [f"--- {run.label} reply\n{_reply_text(run, int(rid))}"
                   for run in with_outputs]
        details.append((f"request {rid}", "--- prompt\n" + str(prompt) + "\n" +
                        "\n".join(replies)))
    return Section("Prompts and replies", text=text, tables=tables, details=details)


def _reply_text(run: Run, request_id: int) -> str:
    out = run.records.outputs
    rows = out[out["request_id"] == request_id]
    return str(rows["text"].iloc[0]) if len(rows) else "(this run has no such request)"
