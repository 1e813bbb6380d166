"""A report as one self-contained HTML page: figures are embedded as
``data:image/png;base64`` images, so the page needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from gencli.reports.build import build_document
from gencli.reports.document import Document

if TYPE_CHECKING:
    from gencli.density.model import DensityModel

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.6em; border-bottom: 2px solid #345; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #345; }
table { border-collapse: collapse; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f0f3f6; }
td:first-child, th:first-child { text-align: left; }
table.kv th { text-align: left; font-weight: 600; }
table.kv td { text-align: left; font-family: ui-monospace, monospace; font-size: 13px; }
tr.chosen td { background: #eef7ee; font-weight: 600; }
.note { color: #666; font-style: italic; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
"""


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        chosen = ' class="chosen"' if row and row[-1] == "✓" else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{chosen}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(doc: Document) -> str:
    parts = [f"<h1>{html.escape(doc.title)}</h1>"]
    for kind, body in doc.blocks:
        if kind == "h":
            parts.append(f"<h2>{html.escape(body)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(body)}</p>")
        elif kind == "kv":
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in body
            )
            parts.append(f'<table class="kv"><tbody>{rows}</tbody></table>')
        elif kind == "table":
            headers, rows, note = body
            parts.append(_html_table(headers, rows))
            if note:
                parts.append(f'<p class="note">{html.escape(note)}</p>')
        elif kind == "list":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in body)
            parts.append(f"<ul>{items}</ul>")
        elif kind == "figure":
            caption, png = body
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )


def render_html(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The report as one self-contained HTML page: inline stylesheet, figures as data URIs."""
    return html_page(build_document(record, model, X))
