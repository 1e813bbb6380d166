"""A report as Markdown. A Markdown *file* references PNGs written beside it
(``<name>.fig1.png``, ...), because most Markdown viewers (GitHub's among them) do not show
data-URI images; :func:`render_markdown` on its own embeds them as data URIs so that the
string stands alone.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from gencli.reports.build import build_document
from gencli.reports.document import Document

if TYPE_CHECKING:
    from gencli.density.model import DensityModel


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown_text(doc: Document, figure_names: list[str] | None) -> str:
    lines = [f"# {doc.title}", ""]
    figure_index = 0
    for kind, body in doc.blocks:
        if kind == "h":
            lines += [f"## {body}", ""]
        elif kind == "p":
            lines += [body, ""]
        elif kind == "kv":
            lines += [*_md_table(["", ""], [[f"**{k}**", v] for k, v in body]), ""]
        elif kind == "table":
            headers, rows, note = body
            lines += [*_md_table(headers, rows), ""]
            if note:
                lines += [f"*{note}*", ""]
        elif kind == "list":
            lines += [*(f"- {item}" for item in body), ""]
        elif kind == "figure":
            caption, png = body
            if figure_names is not None:
                src = figure_names[figure_index]
            else:
                src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            figure_index += 1
            lines += [f"![{caption}]({src})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The report as Markdown, figures embedded as data-URI PNGs (see :func:`write_report`
    for the file, whose figures are PNGs beside it)."""
    return markdown_text(build_document(record, model, X), None)
