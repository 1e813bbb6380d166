"""A griffe extension for the API reference: the docstrings' Sphinx roles as code.

gencli's docstrings name other objects the Sphinx way (``:class:`~gencli.DensityModel```);
mkdocstrings would print the role as text, so each becomes a code span
(`DensityModel`), with ``~`` keeping the last part of the name, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite every docstring's roles before mkdocstrings renders it."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)
