"""Report files: the format from the extension (:data:`REPORT_FORMATS`), the figure files a
Markdown report writes beside it, and writing them all atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gencli.errors import OutputError
from gencli.reports.build import build_document
from gencli.reports.html import render_html
from gencli.reports.json_report import render_json
from gencli.reports.markdown import markdown_text

if TYPE_CHECKING:
    from gencli.density.model import DensityModel

#: Extensions a report can have, and the format each one means.
REPORT_FORMATS = {
    ".json": "json",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
}


def report_format(path: str | os.PathLike[str]) -> str:
    """'json', 'markdown' or 'html' from ``path``'s extension; OutputError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_FORMATS:
        found = f"'{suffix}'" if suffix else "no extension"
        raise OutputError(
            f"{path}: cannot tell the report format from {found}; use one of "
            f"{', '.join(REPORT_FORMATS)}"
        )
    return REPORT_FORMATS[suffix]


#: The most figures any report holds (a fit: selection and density; an evaluation:
#: correlations and density).
MAX_FIGURES = 2


def report_outputs(path: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """:func:`report_files`, each with what it is, for :func:`gencli.io.atomic.check_outputs`."""
    files = report_files(path)
    return [(files[0], "the report"), *((f, "a figure of the report") for f in files[1:])]


def report_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file a report at ``path`` may write: the report, then (Markdown) its figures
    ``<name>.fig1.png``, ... beside the file the path leads to. Commands check them all
    against their inputs and other outputs before any work (:func:`gencli.io.atomic.check_outputs`),
    so a figure can never overwrite the data or the model."""
    from gencli.io.atomic import resolve_target

    fmt = report_format(path)
    if fmt != "markdown":
        return [Path(path)]
    target, _special = resolve_target(path)
    base = target if Path(path).is_symlink() else Path(path)
    stem = base.name[: -len(base.suffix)] if base.suffix else base.name
    figures = [base.with_name(f"{stem}.fig{i}.png") for i in range(1, MAX_FIGURES + 1)]
    return [Path(path), *figures]


def write_report(
    path: str | os.PathLike[str],
    record: dict[str, Any],
    model: DensityModel | None,
    X: Any = None,
) -> list[Path]:
    """Write a fit record (from ``fit``) or an evaluation result (from
    :func:`gencli.evaluate.evaluate`) as a report, in the format of ``path``'s extension.

    ``X`` is the rows the figures show (the training rows for a fit, the evaluated rows for
    an evaluation), in the model's column order; None draws no data figures. A Markdown
    report also writes its figures beside it as ``<name>.fig1.png``, ... (first, so that
    the report never points at a missing figure). Every file is written atomically.

    Returns:
        The paths written, the report last.
    """
    from gencli.io.atomic import atomic_write

    fmt = report_format(path)
    target = Path(path)
    written: list[Path] = []
    if fmt == "json":
        text = render_json(record, model, X)
    elif fmt == "html":
        text = render_html(record, model, X)
    else:
        doc = build_document(record, model, X)
        figures = report_files(path)[1:]
        if len(doc.figures) > len(figures):
            raise OutputError(f"{path}: a report has at most {len(figures)} figures; report it")
        for figure, png in zip(figures, doc.figures, strict=False):
            with atomic_write(figure) as handle:
                handle.write(png)
            written.append(figure)
        text = markdown_text(doc, [figure.name for figure in figures[: len(doc.figures)]])
    with atomic_write(target) as handle:
        handle.write(text.encode("utf-8", "backslashreplace"))
    written.append(target)
    return written
