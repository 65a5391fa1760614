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


def import_graph() -> dict[str, set[str]]:
    """module -> the pyrovae modules it imports, at module level or inside functions."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # 'from pkg import mod' imports the module; 'from pkg import name' the package
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in files and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in files and t != mod:
                    edges[mod].add(t)
    return edges


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


def test_run_folder_layer_sits_below_training_and_applications():
    graph = import_graph()
    below = [m for m in graph if m.startswith("pyrovae.runs")]
    for mod in below:
        bad = [t for t in graph[mod] if t.startswith(("pyrovae.training", "pyrovae.applications",
                                                     "pyrovae.kinds.ssvae", "pyrovae.kinds.vae.model"))]
        assert not bad, (mod, bad)
    assert any(t.startswith("pyrovae.runs") for t in graph["pyrovae.applications.runs"])


def test_generic_layers_name_no_model_kind():
    """The trainer, the run layer and the evaluation know no kind: no 'ssvae' and no SSVAE
    import in them (kinds come from the registry)."""
    for folder in ("training", "runs", "evaluation", "experiments", "reports"):
        for path in (PACKAGE / folder).rglob("*.py"):
            text = path.read_text()
            assert '"ssvae"' not in text and "semisupervised" not in text, path


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
    assert set(VAEConfig.__dataclass_fields__["likelihood"].metadata["choices"]) == set(LIKELIHOODS)
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
