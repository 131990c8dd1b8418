"""Markdown pages from Jinja2 templates: the one way the gradient study, the paper
reproductions and ``vaebench verify --against`` render their pages.

The stages' templates live in ``vaebench/report/templates``; those of commands outside the
pipeline (``vaebench verify``) in ``vaebench/templates``, so that editing them leaves every
stage up to date. A template is read by path, beside this file, so that rendering imports
nothing of the report package (a stage that renders a page depends on its template and this
file only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "report" / "templates"  # the stages' pages
COMMAND_TEMPLATES = Path(__file__).parent / "templates"  # pages of commands outside dvc.yaml


def render(template: str, *, trim: bool = False, **context: Any) -> str:
    """``template`` (from ``TEMPLATES``, else ``COMMAND_TEMPLATES``) rendered with
    ``context``. A name the template uses but the context lacks is an error (StrictUndefined);
    the trailing newline is kept. ``trim``: a block tag's own line leaves no blank line behind
    (trim_blocks, lstrip_blocks)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=trim, lstrip_blocks=trim)
    path = TEMPLATES / template
    if not path.is_file():
        path = COMMAND_TEMPLATES / template
    return env.from_string(path.read_text(encoding="utf-8")).render(**context)
