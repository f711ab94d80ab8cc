"""The import graph of ``unet_keras`` has no upward arrow: data flows files -> readers ->
preprocess -> splits/pipeline -> config -> model -> inference -> training -> evaluation ->
web/CLIs, and no module imports one of a later layer (function-level imports included), nor
does any import go round in a cycle. ``__main__`` modules are entry points (``python -m``) and
may import the CLIs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unet_keras"

#: Layers, bottom first; a module belongs to the first layer holding its name or a package
#: above it (``unet_keras.data.tfrecord.reader`` -> ``unet_keras.data.tfrecord``).
LAYERS: list[tuple[str, ...]] = [
    ("_quiet", "atomic", "backend", "model_meta", "batchnorm", "metrics", "postprocess",
     "schedule", "viz"),
    ("losses", "optimizers", "distribute"),
    ("data.records", "data.slices"),
    ("data.formats", "data.images", "data.synthetic", "data.hard_examples"),
    ("data.figshare", "data.lgg", "data.folders"),
    ("data.readers",),
    ("data.preprocess", "data.summary", "data.preview", "data.loader"),
    ("data.splits", "data.pipeline"),
    ("data.tfrecord.reader",),
    ("data.tfrecord.writer",),
    ("data.tfrecord",),
    ("data",),
    ("config",),
    ("blocks",),
    ("model",),
    ("flops", "precision", "throughput"),
    ("inference",),
    ("",),  # the package itself: re-exports up to inference
    ("torch_mirror", "predict_files", "scoring"),
    ("run_dir",),
    ("training",),
    ("evaluation",),
    ("web",),
    ("cli",),
]


def layer_of(module: str) -> int:
    name = module.removeprefix("unet_keras").removeprefix(".")
    parts = name.split(".") if name else [""]
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for index, layer in enumerate(LAYERS):
            if prefix in layer:
                return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: place it")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The ``unet_keras`` modules ``path`` imports, at any level of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("unet_keras")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unet_keras"):
            for alias in node.names:  # ``from unet_keras import data`` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_a_later_layer():
    upward = [f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
              for a, targets in graph().items() if not a.endswith("__main__")
              for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {a: {b for b in targets if b != a} for a, targets in graph().items()
             if not a.endswith("__main__")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
