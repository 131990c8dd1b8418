"""Markdown pages from the Jinja2 templates in ``vaebench/report/templates``: the one way the
gradient study, the paper reproductions and ``vaebench verify --against`` render their pages.

The template is read by path, beside this file, so that rendering imports nothing of the
report package (a stage that renders a page depends on its template and this file only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "report" / "templates"


def render(template: str, *, trim: bool = False, **context: Any) -> str:
    """``TEMPLATES/template`` rendered with ``context``. A name the template uses but the
    context lacks is an error (StrictUndefined); the trailing newline is kept. ``trim``: a
    block tag's own line leaves no blank line behind (trim_blocks, lstrip_blocks)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=trim, lstrip_blocks=trim)
    return env.from_string((TEMPLATES / template).read_text(encoding="utf-8")).render(**context)
