"""One report page: sections of text, tables and figures (seaborn PNGs embedded as data
URIs) rendered through ``templates/page.html.j2`` into one self-contained file."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure

LABELS = {"auto_batch": "Autoregressive", "server_only": "Server-only", "specedge": "SpecEdge"}
ORDER = ["auto_batch", "server_only", "specedge"]
PALETTE = dict(zip([LABELS[b] for b in ORDER], sns.color_palette("colorblind", 3), strict=True))


class ReportError(ValueError):
    """Nothing to report on, or an input that is not what the report reads."""


@dataclass
class Plot:
    uri: str
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[Plot] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    anchor: str = ""  # the section's id, for links into the page


def png(fig: Figure, caption: str) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Plot("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), caption)


def html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, na_rep="-", escape=True,
                      float_format=lambda v: f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}")


def render(path: Path, title: str, subtitle: str, sections: list[Section],
           notes: list[str] | None = None) -> Path:
    env = Environment(loader=PackageLoader("specedge", "templates"),
                      autoescape=select_autoescape(default=True))
    html = env.get_template("page.html.j2").render(title=title, subtitle=subtitle,
                                                   sections=sections, notes=notes or [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def generated() -> str:
    return datetime.now(UTC).strftime("generated %Y-%m-%d %H:%M UTC")
