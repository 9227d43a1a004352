"""Jinja2 rendering: HTML autoescaped (``*.html.j2``), a plain-text twin for each.

Templates hold no logic beyond loops and formatting; amounts arrive formatted.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notifications.formats import count


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("notifications", "templates"),
        # select_autoescape matches by suffix: ".html.j2" must be named to be escaped.
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates ship with the package: no stat of each one at every email.
        auto_reload=False,
    )
    # Counts arrive as ints (templates test them); this writes them grouped: 1,000.
    env.filters["number"] = count
    return env


def render(name: str, **context: Any) -> tuple[str, str]:
    """The (text, html) pair of template ``name``."""
    env = environment()
    text = env.get_template(f"{name}.txt.j2").render(**context)
    html = env.get_template(f"{name}.html.j2").render(**context)
    return text, html
