"""The documentation site (mkdocs.yml, docs/, `make docs`): the API reference covers every module
of the package, the docstrings' reStructuredText habits become Markdown, and the strict build
that CI runs fails on a broken link or anchor. (The site itself is built by `make docs` in
.ci/run, before the tests.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyrovae"
DIRECTIVE = re.compile(r"^::: (pyrovae[\w.]*)\n((?:    .*\n)*)", re.M)


def api_directives() -> dict[str, str]:
    """module -> the options block of its ``:::`` line, over docs/api/*.md."""
    found = {}
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for m in DIRECTIVE.finditer(page.read_text()):
            found[m.group(1)] = m.group(2)
    return found


def test_every_module_of_the_package_is_in_the_api_reference():
    """Each top-level module and sub-package (with all its modules) is on an API page, so a new
    one is not left out of the site and every ``pyrovae.a.b`` reference has its entry."""
    directives = api_directives()
    assert "pyrovae" in directives  # the root: its exports
    for path in sorted(PACKAGE.iterdir()):
        if path.name.startswith("_") or not (path.suffix == ".py" or (path / "__init__.py").exists()):
            continue
        name = f"pyrovae.{path.stem}"
        assert name in directives, f"{name} is on no page of docs/api/"
        if path.is_dir():
            assert "show_submodules: true" in directives[name], f"{name}: its modules too"


def docs_extension():
    """docs/griffe_docstrings.py, the Griffe extension of the API reference."""
    pytest.importorskip("griffe")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import griffe_docstrings
    finally:
        sys.path.remove(str(ROOT / "docs"))
    return griffe_docstrings


def test_docstring_roles_and_shapes_become_markdown():
    to_markdown = docs_extension().to_markdown
    text = ("Returns a :class:`Run` (:func:`pyrovae.train`); E[x|z] [..., D] and "
            "``E[x|z] [..., D]`` in code.\n\n    E[x|z] [n, D]   (an indented block)")
    assert to_markdown(text) == (
        "Returns a `Run` ([`pyrovae.train`][pyrovae.train]); E[x|z] \\[..., D] and "
        "``E[x|z] [..., D]`` in code.\n\n    E[x|z] [n, D]   (an indented block)")


def test_a_block_right_after_the_first_line_stays_a_code_block():
    """Dedented by the statement's indentation: a usage block under the summary line keeps its
    4 columns (inspect.cleandoc would remove them, making it prose)."""
    dedent = docs_extension().dedent
    module = "``cmd``: what it does.\n\n    cmd NAME [--a N]\n         [--b K]\n"
    assert dedent(module, 0) == "``cmd``: what it does.\n\n    cmd NAME [--a N]\n         [--b K]"
    method = "Summary.\n\n        Prose.\n\n            code\n        "
    assert dedent(method, 8) == "Summary.\n\nProse.\n\n    code"


def test_the_strict_build_fails_on_a_broken_link_and_anchor(tmp_path):
    """mkdocs.yml's strict mode and link validation, on a two-page site."""
    pytest.importorskip("mkdocs")
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        "# Home\n\n[fine](other.md#a-heading), [gone](missing.md), [no anchor](other.md#nope)\n")
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A heading\n")
    small = {"site_name": "t", "docs_dir": "docs", "strict": config["strict"],
             "validation": config["validation"], "markdown_extensions": ["toc"],
             "nav": ["index.md", "other.md"]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(small))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-f",
                           str(tmp_path / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "'missing.md'" in proc.stderr and "'#nope'" in proc.stderr, proc.stderr
    assert "a-heading" not in proc.stderr
