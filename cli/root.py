"""The root group of ``bitvelocity``: the one place every command's help and failures pass.

Typer builds the subcommands first and this group last, so ``__init__`` sees the whole tree and
reflows its help (``cli.help_text``); every command runs inside ``invoke``, so a failure the CLI
reports itself (``cli.errors.error_line``) ends as one ``error:`` line and exit 2 here.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from cli.console import fail
from cli.errors import error_line
from cli.help_text import reflow_tree


class BitVelocityGroup(TyperGroup):
    """Reflows every command's help once; turns reported failures into one line and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reflow_tree(self)

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context is not public API
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except (typer.Exit, typer.Abort, typer.TyperException):  # click's own flow: usage, exit
            raise
        except Exception as exc:
            line = error_line(exc)
            if line is None:
                raise
            fail(line)
