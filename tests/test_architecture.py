"""Import direction of the package's layers (docs/ARCHITECTURE.md).

Every module of ``denseshift_speech`` belongs to one layer, ranked bottom to top:

    0 errors                      UserError (imports nothing of the package)
    1 kernels (with its _C ext.)  code format, packed layout, ops, reference ops
    2 core                        quantizer math, parametrization, quantize_, optim, diagnostics
    3 packed                      packed modules, pack_, file format, inference spec
    4 streaming                   chunked decoding of a packed model
    5 data                        corpora, augmentation, preparers, audio checks
    6 integrations                SpeechBrain glue (hparams, recipes' helpers, export, LM, demo)
    7 cli, benchmarks             the user-facing verbs; benchmarks against the alternatives

A module may import modules of its own layer or of a lower one, never of a higher one.
On top of that, the inference layers (kernels, core, packed, streaming) and data never
import ``integrations`` or ``cli``, whatever the ranks say.  Every ``import`` counts,
including the ones inside functions (lazy imports).  The package root
(``denseshift_speech/__init__.py``, ``__main__.py``) is the public face and is not ranked.
"""
import ast
import os

import pytest

PACKAGE = "denseshift_speech"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)

LAYERS = {
    "errors": 0, "fsio": 0, "onnx_runtime": 0,
    "kernels": 1,
    "core": 2,
    "packed": 3,
    "streaming": 4,
    "data": 5,
    "integrations": 6,
    "cli": 7, "benchmarks": 7,
}
INFERENCE = ("kernels", "core", "packed", "streaming", "data")
TRAINING_GLUE_AND_UI = ("integrations", "cli")


def _top(module: str):
    """``denseshift_speech.<top>...`` -> ``<top>``; the root package -> ``''``; else None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str, source: str, is_package: bool):
    """Absolute names of the package's modules that ``source`` (module ``module``) imports."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                # `from pkg import sub` imports pkg.sub when sub is a module
                yield node.lineno, f"{target}.{alias.name}"


def check_source(module: str, source: str, is_package: bool = False) -> list:
    """Layering violations of one module, as readable strings."""
    importer = _top(module)
    if importer in (None, "", "__main__"):  # the public face is not ranked
        return []
    if importer not in LAYERS:
        return [f"{module}: not assigned to a layer (add '{importer}' to LAYERS in "
                f"tests/test_architecture.py and to docs/ARCHITECTURE.md)"]
    out = []
    for lineno, name in _imports(module, source, is_package):
        target = _top(name)
        if target not in LAYERS:
            # outside the package, the root package (the public API), or a name imported
            # from the root (`from .. import DenseShiftConfig`); new top-level modules are
            # caught by test_every_top_level_module_has_a_layer
            continue
        if LAYERS[target] > LAYERS[importer]:
            out.append(f"{module}:{lineno} imports {name}: layer '{importer}' "
                       f"({LAYERS[importer]}) must not import the higher layer '{target}' "
                       f"({LAYERS[target]})")
        elif importer in INFERENCE and target in TRAINING_GLUE_AND_UI:
            out.append(f"{module}:{lineno} imports {name}: inference/data code must not "
                       f"import '{target}'")
    return out


def check_tree(root: str = ROOT, package: str = PACKAGE) -> list:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "csrc")]
        for fname in sorted(files):
            if not fname.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, fname), os.path.dirname(root))
            parts = rel[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            parts[0] = package
            with open(os.path.join(folder, fname)) as f:
                out += check_source(".".join(parts), f.read(), is_package)
    return out


def test_the_package_imports_point_down():
    assert check_tree() == []


def test_every_top_level_module_has_a_layer():
    names = {n[:-3] if n.endswith(".py") else n for n in os.listdir(ROOT)
             if (n.endswith(".py") or os.path.isfile(os.path.join(ROOT, n, "__init__.py")))}
    names -= {"__init__", "__main__"}
    assert sorted(names - set(LAYERS)) == []


@pytest.mark.parametrize("module, source", [
    # a lower layer importing a higher one, absolute and relative, eager and lazy
    ("denseshift_speech.kernels.layout", "from denseshift_speech.core import quant\n"),
    ("denseshift_speech.kernels.reference", "from ..packed import load_packed\n"),
    ("denseshift_speech.core.quant", "def f():\n    from ..packed import pack_\n"),
    ("denseshift_speech.errors", "import denseshift_speech.cli\n"),
    ("denseshift_speech.data.synth", "from ..integrations.speechbrain import recipe\n"),
    # inference importing the training glue or the CLI
    ("denseshift_speech.streaming.model",
     "from ..integrations.speechbrain.recipe import module_container\n"),
    ("denseshift_speech.packed.fileformat", "from ..cli import UserError\n"),
    ("denseshift_speech.streaming.run", "from denseshift_speech import cli\n"),
])
def test_the_checker_catches_a_bad_import(module, source):
    assert check_source(module, source), f"{module}: {source!r} not reported"


@pytest.mark.parametrize("module, source", [
    ("denseshift_speech.core.quant", "from ..kernels.codes import check_bits\n"),
    ("denseshift_speech.packed.pack", "from .modules import PackedLinear\nfrom .. import kernels\n"),
    ("denseshift_speech.streaming.model", "from ..packed.spec import module_container\n"),
    ("denseshift_speech.integrations.speechbrain.recipe", "from ...packed import pack_\n"),
    ("denseshift_speech.cli.stream", "from ..streaming.model import load_model\n"),
    ("denseshift_speech.benchmarks.inference", "from .. import DenseShiftConfig, quantize_\n"),
])
def test_the_checker_accepts_imports_that_point_down(module, source):
    assert check_source(module, source) == []


def test_the_checker_finds_a_violation_in_a_tree(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels" / "__init__.py").write_text("from . import bad\n")
    (pkg / "kernels" / "bad.py").write_text("def f():\n    from ..integrations import x\n")
    found = check_tree(str(pkg))
    assert len(found) == 1 and "kernels.bad:2" in found[0], found


def _module_graph(root: str = ROOT, package: str = PACKAGE) -> dict:
    """``{module: {modules of the package it imports}}`` (lazy imports included; a name
    imported from a module counts as that module)."""
    sources = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "csrc")]
        for fname in files:
            if fname.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, fname),
                                        os.path.dirname(root))[:-3].split(os.sep)
                is_package = parts[-1] == "__init__"
                parts = parts[:-1] if is_package else parts
                parts[0] = package
                with open(os.path.join(folder, fname)) as f:
                    sources[".".join(parts)] = (f.read(), is_package)
    graph = {}
    for module, (source, is_package) in sources.items():
        graph[module] = set()
        for _, name in _imports(module, source, is_package):
            while name and name not in sources:
                name = name.rpartition(".")[0]
            if name and name not in (module, package):
                graph[module].add(name)
    return graph


def import_cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_two_modules_import_each_other():
    """Not even lazily: a circle means two modules are one design cut in two."""
    assert import_cycles(_module_graph()) == []


def test_the_cycle_finder_finds_a_circle_of_three():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
