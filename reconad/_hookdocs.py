"""docs/plugins.md's hook reference, generated from reconad/hookspecs.py so the page is not a second copy.

``python -m reconad._hookdocs --markdown`` prints the generated part; ``--update docs/plugins.md`` rewrites it
in place, between the ``BEGIN`` and ``END`` lines. tests/test_plugins.py fails when the page differs.
"""
from __future__ import annotations

import inspect
import re
import sys

from . import hookspecs

__all__ = ["BEGIN", "END", "hook_markdown", "markdown", "update"]

BEGIN = "<!-- generated from reconad/hookspecs.py by `python -m reconad._hookdocs --update`: edit the docstrings -->"
END = "<!-- end of generated part -->"


def markdown() -> str:
    """The generated part: hookspecs' module docstring (less its first paragraph), then every hook's."""
    intro = (hookspecs.__doc__ or "").split("\n\n", 1)[1]
    parts = [BEGIN, "## How reconad calls plugins", _markdown(intro), "## Hooks"]
    for name, fn in vars(hookspecs).items():  # definition order
        if name.startswith("reconad_") and callable(fn):
            parts += [f"### `{name}`", hook_markdown(name)]
    return "\n\n".join(parts + [END]) + "\n"


def hook_markdown(hook: str) -> str:
    """One hook's docstring in Markdown."""
    return _markdown(inspect.getdoc(getattr(hookspecs, hook)) or "")


def _markdown(doc: str) -> str:
    """The two docstring conventions hookspecs uses, in Markdown: ``code``, and a line ending in ``::``
    followed by an indented block (a Python example)."""
    out: list[str] = []
    code: list[str] | None = None
    for line in inspect.cleandoc(doc).splitlines():
        if code is not None:
            if not line.strip() or line.startswith("    "):
                code.append(line[4:])
                continue
            out += _fence(code) + [""]
            code = None
        if line.endswith("::"):
            out += [_inline(line[:-1]), ""]
            code = []
        else:
            out.append(_inline(line))
    if code is not None:
        out += _fence(code)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def _fence(code: list[str]) -> list[str]:
    return ["```python", *"\n".join(code).strip("\n").splitlines(), "```"]


def _inline(line: str) -> str:
    return re.sub(r"``(.+?)``", r"`\1`", line)


def update(path: str) -> None:
    """Rewrite the generated part of the Markdown file ``path``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{path}: expected one generated part, between the lines {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + markdown().rstrip("\n") + rest.split(END, 1)[1])


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
    elif len(args) == 2 and args[0] == "--update":
        update(args[1])
    else:
        raise SystemExit("usage: python -m reconad._hookdocs --markdown | --update docs/plugins.md")
