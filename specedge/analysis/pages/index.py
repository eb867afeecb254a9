"""The index page: every report, with what one machine can and cannot show."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

from specedge.analysis.pages.page import ReportError, Section, generated, render
from specedge.analysis.pages.scenarios import read_projection


class _TitleParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self._in = "", False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = False


CAN_AND_CANNOT = (
    "What this run can show: that SpecEdge's output equals the target's own greedy decode, how "
    "the serving system behaves (rounds, batching, proactive drafting, failures) with real "
    "processes and real gRPC, and, on the validation runs, that the performance model "
    "reproduces what was measured. What it cannot show: SpecEdge's economics. On one CPU the "
    "edges are no extra hardware (they share the server's cores), so the comparison report's "
    "costs and speeds say nothing about GPUs; every figure for GPUs (the projection) is "
    "simulated, from derived latency profiles and labelled acceptance scenarios.")


def index_page(reports: list[Path], out: Path, scenarios: Path | None = None) -> Path:
    links = []
    for report in reports:
        parser = _TitleParser()
        parser.feed(Path(report).read_text(encoding="utf-8"))
        href = os.path.relpath(Path(report).resolve(), out.parent.resolve())
        links.append((href, parser.title or report.name, report.name))
    section = Section("Reports", links=links, text=[
        "Each report is one self-contained HTML file (figures embedded)."])
    first = Section("What this run can and cannot show", text=[CAN_AND_CANNOT])
    if scenarios is not None:
        sens = read_projection(scenarios)["sensitivity"]
        projection = next((href for href, _, name in links if name == "projection.html"), None)
        if projection is None:
            raise ReportError("--scenarios needs projection.html among the reports (its "
                              "headline is linked)")
        first.text.append(f"The projection's headline (SIMULATED, batch "
                          f"{sens['headline_batch']}): " + " ".join(sens["verdict"]))
        first.links.append((f"{projection}#headline", "The projection's headline",
                            "the paper's protocol, simulated, beside the paper's figures"))
    return render(out, "SpecEdge experiment reports", generated(), [first, section])
