"""A Griffe extension for the API reference (`make docs`, mkdocs.yml): the docstrings are plain
prose with math and a few reStructuredText habits; this turns those into Markdown.

- a Sphinx role, :func:`train` or :class:`pyrovae.Run`, becomes the code `train`, or a link to
  the object's entry when the name is a full ``pyrovae.`` path;
- a shape written after a bracket, ``E[x|z] [..., D]``, is not a Markdown reference link (the
  second bracket is escaped outside code);
- the attributes a method sets on ``self`` (``self.device = ...``) are left out unless they
  have a docstring: they are the object's state, not its API;
- a block indented under the prose stays indented (a code block) even where it is all that
  follows the first line: the docstring is dedented by its statement's own indentation, not by
  the smallest indentation of its lines (which would flatten such a block into prose).

Indented blocks and code spans are left as they are.
"""

from __future__ import annotations

import ast
import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?\.?([^`]+)`")
SHAPE_AFTER_BRACKET = re.compile(r"\] \[")


def _role(match: re.Match) -> str:
    name = match.group(1)
    return f"[`{name}`][{name}]" if name.startswith("pyrovae.") else f"`{name}`"


def _prose(text: str) -> str:
    """Convert one line of prose, leaving its code spans alone."""
    text = ROLE.sub(_role, text)
    parts = re.split(r"(`+[^`]*`+)", text)
    return "".join(part if i % 2 else SHAPE_AFTER_BRACKET.sub(r"] \\[", part)
                   for i, part in enumerate(parts))


def to_markdown(docstring: str) -> str:
    """The docstring with its roles and bracketed shapes converted (see the module text)."""
    return "\n".join(line if line.startswith("    ") else _prose(line)
                     for line in docstring.split("\n"))


def dedent(raw: str, indent: int) -> str:
    """The docstring ``raw`` of a statement indented ``indent`` columns: its first line
    stripped, the others with that indentation removed, blank lines at the ends dropped."""
    first, *rest = raw.expandtabs().split("\n")
    lines = [first.strip()] + [line[indent:] if len(line) - len(line.lstrip()) >= indent
                               else line.lstrip() for line in rest]
    return "\n".join(lines).strip("\n").rstrip()


def _raw_docstring(node) -> str | None:
    """The docstring of a module, class or function node as written, dedented by the body's
    indentation; None for other nodes (Griffe's own cleaning is kept)."""
    if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    body = node.body[0] if node.body else None
    if not (isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant)
            and isinstance(body.value.value, str)):
        return None
    return dedent(body.value.value, body.col_offset)


class DocstringsToMarkdown(griffe.Extension):
    """Applies :func:`to_markdown` to every docstring as Griffe loads it."""

    def on_instance(self, *, node=None, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            raw = _raw_docstring(node)
            obj.docstring.value = to_markdown(raw if raw is not None else obj.docstring.value)

    def on_class_members(self, *, cls: griffe.Class, **kwargs) -> None:
        for name, member in list(cls.members.items()):
            if (not member.is_alias and member.is_attribute and member.docstring is None
                    and "instance-attribute" in member.labels):
                cls.del_member(name)
