"""Help text that reflows to the terminal: docstrings are written wrapped at 100 columns.

Typer's rich help keeps every line break inside a paragraph, so a docstring wrapped at 100
columns printed in an 80-column terminal leaves a half-empty line after each source line.
``reflow`` joins the lines of each paragraph, and the root group applies it to every command
once, so docstrings stay as they are written. Kept as written: paragraphs (blank line between),
list items (a line starting ``-``, ``*``, ``1.`` or ``1)``), indented lines, and paragraphs that
start with click's no-rewrap marker ``\\b``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_OWN_LINE = re.compile(r"^(\s+\S|[-*] |\d+[.)] )")


def reflow(text: str) -> str:
    """``text`` with the single line breaks inside each paragraph joined (pure)."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.split("\n"):
            if lines and line.strip() and not _OWN_LINE.match(line):
                lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_tree(command: Any) -> None:
    """Reflow the help of a click/Typer command and of every command below it, in place.

    Typed loosely: Typer vendors its own click, whose classes are not public API.
    """
    if command.help:
        command.help = reflow(command.help)
    for child in getattr(command, "commands", {}).values():
        reflow_tree(child)
