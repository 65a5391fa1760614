"""The shape of the package: no import cycles, registries as the single source of names, model
kinds as plug-ins, and commands that refuse in one line what a model cannot do."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from pyrovae.config import VAEConfig, load_config
from pyrovae.runtime.errors import ConfigError
from pyrovae.components.priors import Prior
from pyrovae.runtime.registry import LIKELIHOODS, MODEL_KINDS, OBJECTIVES, PRIORS, Registry

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyrovae"
SSVAE_DIGITS = str(ROOT / "configs" / "ssvae-digits.toml")
DIGITS = str(ROOT / "configs" / "digits.toml")
SMALL = ["--set", "epochs=1", "--set", "progress=false", "--set", "data.train_size=300",
         "--set", "data.test_size=100"]


# ---- import graph ------------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(node: ast.AST, package: str, files) -> list[str]:
    """The dotted names an import statement (or ``importlib.import_module("literal")``) names:
    'from pkg import mod' imports the module, 'from pkg import name' the package."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            parts = package.split(".")
            stem = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module
                                                                    else []))
        else:
            stem = node.module or ""
        return [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
            == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return [node.args[0].value]
    return []


def import_edges() -> dict[str, dict[str, str]]:
    """module -> {pyrovae module it imports: where ('path:line')}, for every import of the
    module's source: at module level, inside functions and classes, under ``if
    TYPE_CHECKING``, and ``importlib.import_module`` of a literal name."""
    files = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    edges: dict[str, dict[str, str]] = {m: {} for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for t in _imported_names(node, package, files):
                while t and t not in files and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in files and t != mod:
                    edges[mod].setdefault(t, f"{path.relative_to(ROOT)}:{node.lineno}")
    return edges


def import_graph() -> dict[str, set[str]]:
    """module -> the pyrovae modules it imports, at module level or inside functions."""
    return {mod: set(targets) for mod, targets in import_edges().items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(edges):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_every_form_of_import(tmp_path, monkeypatch):
    """Module-level, function-local, relative and TYPE_CHECKING imports and import_module of a
    literal name are edges; an attribute of a package is an edge to the package."""
    pkg = tmp_path / "pyrovae"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__", "a", "b", "c", "d", "e", "sub/__init__", "sub/f"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "a.py").write_text(
        "from __future__ import annotations\nimport importlib\nfrom typing import TYPE_CHECKING\n"
        "from . import b\nif TYPE_CHECKING:\n    from pyrovae.c import C\n"
        "def f():\n    import pyrovae.d\n    importlib.import_module('pyrovae.e')\n"
        "class K:\n    from pyrovae.sub import thing\n")
    (pkg / "sub" / "f.py").write_text("from ..a import f\nfrom . import f as self_\n")
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph = import_graph()
    assert graph["pyrovae.a"] == {"pyrovae.b", "pyrovae.c", "pyrovae.d", "pyrovae.e",
                                  "pyrovae.sub"}
    assert graph["pyrovae.sub.f"] == {"pyrovae.a"}


def test_no_import_cycles_between_modules():
    """Function-local imports count: a cycle through them is still a cycle."""
    assert find_cycle(import_graph()) is None


def test_no_import_cycles_between_folders():
    """pyrovae.X (a sub-package or top-level module) -> pyrovae.Y edges form no cycle; the
    package root (the public API, importing everything) is left out."""
    folders: dict[str, set[str]] = {}
    for mod, targets in import_graph().items():
        if mod == "pyrovae":
            continue
        src = ".".join(mod.split(".")[:2])
        for t in targets:
            dst = ".".join(t.split(".")[:2])
            if dst != src and t != "pyrovae":
                folders.setdefault(src, set()).add(dst)
    assert find_cycle(folders) is None, folders


def test_no_module_imports_the_package_root():
    """The root's __init__ imports everything (the public API), so importing it from inside
    would close a cycle; the version lives in _version.py for that reason."""
    importers = [m for m, targets in import_graph().items() if "pyrovae" in targets]
    assert importers == [], importers


#: (layer, the layers it must not import, why): a layer is pyrovae/<folder>, every module in
#: it, and an import anywhere in a module counts (function-local ones too)
LAYER_RULES = [
    ("cli", ("kinds",), "the CLI reaches a kind through the registry and its capabilities"),
    ("training", ("kinds", "evaluation", "reports"),
     "the loop knows no kind; evaluation and reports plug in as callbacks"),
    ("applications", ("kinds",), "applications use the model interface, not a kind's class"),
    ("evaluation", ("kinds", "training"), "evaluation reads a model, not a kind or the loop"),
    ("reports", ("kinds",), "reports draw what the interface gives"),
    ("runs", ("kinds",), "the run folder layer rebuilds kinds through the registry"),
    ("components", ("config", "training"), "components take their own settings, not a config"),
    ("objectives", ("config",), "objectives know no config module"),
    ("data", ("kinds", "components"), "data knows no model"),
    ("runtime", ("components", "kinds"), "runtime sits below every model layer"),
]
#: rules still broken while their fixes land (issue 29): layer -> reason of the xfail; empty
#: when every rule holds
XFAIL_RULES: dict[str, str] = {}


def _rule_param(rule):
    layer = rule[0]
    marks = ([pytest.mark.xfail(strict=False, reason=XFAIL_RULES[layer])]
             if layer in XFAIL_RULES else [])
    return pytest.param(*rule, id=f"{layer}-imports-no-{'-'.join(rule[1])}", marks=marks)


def layer_violations(edges, layer: str, banned) -> list[str]:
    """'module -> target (path:line)' for every import of a banned layer by ``layer``."""
    def within(mod, folder):
        return mod == f"pyrovae.{folder}" or mod.startswith(f"pyrovae.{folder}.")
    return [f"{mod} -> {t} ({where})" for mod, targets in sorted(edges.items())
            if within(mod, layer) for t, where in sorted(targets.items())
            if any(within(t, b) for b in banned)]


def test_every_layer_of_the_rules_exists():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    named = {r[0] for r in LAYER_RULES} | {b for r in LAYER_RULES for b in r[1]}
    assert named <= folders, named - folders


@pytest.mark.parametrize("layer, banned, why", [_rule_param(r) for r in LAYER_RULES])
def test_layer_imports_none_of_the_layers_above_it(layer, banned, why):
    bad = layer_violations(import_edges(), layer, banned)
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_layer_violations_finds_a_function_local_import():
    edges = {"pyrovae.cli.x": {"pyrovae.kinds.vae.model": "pyrovae/cli/x.py:9"},
             "pyrovae.cli": {"pyrovae.runs": "pyrovae/cli/__init__.py:1"},
             "pyrovae.clix": {"pyrovae.kinds": "pyrovae/clix.py:1"}}
    assert layer_violations(edges, "cli", ("kinds",)) == [
        "pyrovae.cli.x -> pyrovae.kinds.vae.model (pyrovae/cli/x.py:9)"]


def test_run_folder_layer_sits_below_training_and_applications():
    graph = import_graph()
    below = [m for m in graph if m.startswith("pyrovae.runs")]
    for mod in below:
        bad = [t for t in graph[mod] if t.startswith(("pyrovae.training", "pyrovae.applications",
                                                     "pyrovae.kinds.ssvae", "pyrovae.kinds.vae.model"))]
        assert not bad, (mod, bad)
    assert any(t.startswith("pyrovae.runs") for t in graph["pyrovae.applications.runs"])


#: the folders that know no model kind: every kind comes from the registry (MODEL_KINDS)
GENERIC = ("cli", "applications", "training", "evaluation", "reports", "runs", "experiments",
           "objectives", "runtime", "data", "components")
#: kind leaks found while their fixes land: folder -> reason of the xfail; empty when none
XFAIL_LEAKS: dict[str, str] = {}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def kind_leaks(folder: str) -> list[str]:
    """'path:line: what' for each place in pyrovae/<folder> that names a registered model kind:
    its name as a string ("ssvae", also inside an f-string), its class (SSVAE) or the name of
    an old kind package (semisupervised). Docstrings and comments (the docs) may name kinds;
    the registrations live in pyrovae/kinds and pyrovae/config, not in these folders."""
    names = set(MODEL_KINDS)
    classes = {MODEL_KINDS.get(n).__name__ for n in names if isinstance(MODEL_KINDS.get(n), type)}
    leaks = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs:
                quoted = [n for n in names if node.value == n or f'"{n}"' in node.value
                          or f"'{n}'" in node.value]
                leaks += [f"{where}:{node.lineno}: the kind name {n!r}" for n in quoted]
                if "semisupervised" in node.value:
                    leaks.append(f"{where}:{node.lineno}: 'semisupervised'")
            elif isinstance(node, (ast.Name, ast.Attribute, ast.alias)):
                ident = {ast.Name: "id", ast.Attribute: "attr", ast.alias: "name"}[type(node)]
                value = getattr(node, ident).rsplit(".", 1)[-1]
                if value in classes:
                    leaks.append(f"{where}:{getattr(node, 'lineno', '?')}: the kind class "
                                 f"{value}")
    return leaks


def test_kind_leaks_finds_a_name_a_class_and_skips_docs(tmp_path, monkeypatch):
    pkg = tmp_path / "pyrovae"
    (pkg / "gen").mkdir(parents=True)
    (pkg / "gen" / "x.py").write_text(
        '"""Docs may say kind = "ssvae"."""\n# a comment: "hvae"\n'
        'def f(c):\n    """kind "cvae" in a docstring"""\n'
        '    if c.kind == "ssvae":\n        return SSVAE\n'
        '    raise ValueError(f"not for kind = \\"hvae\\" {c}")\n')
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert kind_leaks("gen") == ["pyrovae/gen/x.py:5: the kind name 'ssvae'",
                                 "pyrovae/gen/x.py:6: the kind class SSVAE",
                                 "pyrovae/gen/x.py:7: the kind name 'hvae'"]


@pytest.mark.parametrize("folder", [
    pytest.param(f, marks=[pytest.mark.xfail(strict=False, reason=XFAIL_LEAKS[f])]
                 if f in XFAIL_LEAKS else []) for f in GENERIC])
def test_generic_layers_name_no_model_kind(folder):
    """The generic folders know no kind: no registered kind's name as a string, no kind class
    (kinds come from the registry and declare what they can do as capabilities)."""
    assert (PACKAGE / folder).is_dir(), folder
    leaks = kind_leaks(folder)
    assert not leaks, "\n".join(leaks)


# ---- registries ----------------------------------------------------------------------------

def test_registry_refuses_unknown_and_duplicate_names():
    reg = Registry("widget", "model.widget")
    reg.register("a", object(), fast=True)
    reg.register("b", object())
    assert list(reg) == ["a", "b"] and "a" in reg and reg.where(fast=True).names() == ("a",)
    with pytest.raises(ConfigError, match="model.widget = 'c' is not a registered widget "
                                          r"\(valid: a, b\)"):
        reg.get("c")
    with pytest.raises(LookupError, match="already registered"):
        reg.register("a", object())


def test_config_choices_are_the_registries():
    from pyrovae.config import LikelihoodConfig

    assert set(LikelihoodConfig.__dataclass_fields__["name"].metadata["choices"]) == set(LIKELIHOODS)
    assert set(MODEL_KINDS) >= {"vae", "ssvae", "module"}
    assert {"trace", "meanfield", "iwae", "enum"} <= set(OBJECTIVES)
    assert set(OBJECTIVES.where(analytic_kl=True)) == {"meanfield", "jit-meanfield"}


class LaplacePrior(Prior):
    """p(z) = prod_d Laplace(z_d; 0, 1): a prior registered by this test file alone."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self):
        return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)


@pytest.fixture
def laplace_prior():
    PRIORS.register("test-laplace", LaplacePrior, analytic_kl=False)
    yield "test-laplace"
    PRIORS.unregister("test-laplace")


def test_a_prior_registered_in_a_test_file_trains_from_a_config(laplace_prior, tmp_path, capsys):
    """Adding a prior is one class and its registration: it is then a config choice (with the
    analytic-KL check reading its capability), trains and evaluates."""
    config = tmp_path / "laplace.toml"
    config.write_text(Path(DIGITS).read_text().replace('elbo = "meanfield"', 'elbo = "trace"')
                      + "")
    edits = ["--set", f"prior={laplace_prior}", "--set", "elbo=trace"]
    assert main(["train", str(config), *SMALL, *edits, "--out", str(tmp_path / "run")]) == 0
    run = pyrovae.load(tmp_path / "run")
    assert isinstance(run.vae.prior, LaplacePrior)
    assert run.config.model.prior.name == "test-laplace"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_elbo"] < 0
    with pytest.raises(ConfigError, match="needs a closed-form KL"):
        load_config(config, [f"prior={laplace_prior}", "elbo=meanfield"])


# ---- capabilities: SSVAE everywhere, one-line refusals ------------------------------------

@pytest.fixture(scope="module")
def ssvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssvae") / "run"
    assert main(["train", SSVAE_DIGITS, "--set", "epochs=2", "--set", "progress=false",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", [
    ["evaluate", "--nll-samples", "50", "--quiet"],
    ["export", "--arviz", "{out}/post.nc", "--draws", "50"],
    ["traverse", "--top", "3"], ["interpolate"], ["latent-map"], ["anomaly"],
    ["anomaly", "--score", "latent"], ["sample"], ["reconstruct"],
])
def test_every_command_runs_on_an_ssvae_run(ssvae_run, command, tmp_path, capsys):
    command = [c.format(out=tmp_path) for c in command]
    assert main([command[0], str(ssvae_run), *command[1:], "--out", str(tmp_path)]
                if command[0] != "export" else [command[0], str(ssvae_run), *command[1:]]) == 0


def test_ssvae_evaluation_has_accuracy_and_a_bounded_nll(ssvae_run, capsys):
    assert main(["evaluate", str(ssvae_run), "--nll-samples", "200", "--quiet"]) == 0
    result = json.loads((ssvae_run / "eval.json").read_text())
    assert 0 <= result["test_accuracy"] <= 1
    assert result["test_nll"] <= -result["test_elbo"] + 3 * result["test_elbo_se"]
    assert result["kl_estimator"] == "analytic"  # y summed out exactly, z's KL in closed form


def test_impute_refuses_an_ssvae_in_one_line(ssvae_run, capsys):
    assert main(["impute", str(ssvae_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrovae: error: impute needs a decoder p(x|z)")


def test_compare_varies_a_key_of_another_model_kind(tmp_path, capsys):
    """--vary takes every key --set takes, e.g. the SSVAE's alpha."""
    from pyrovae.experiments import expand

    base = load_config(SSVAE_DIGITS)
    runs, invalid = expand(base, ["alpha=50,500"])
    assert [r.config.model.alpha for r in runs] == [50.0, 500.0] and not invalid
