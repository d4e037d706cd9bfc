"""What each stage depends on, found in its code: the ``deps`` and ``params`` lists of ``dvc.yaml``.

Code: every ``import remodiff...`` / ``from remodiff... import ...`` anywhere in a module (also inside functions: a
lazy import is code the stage may run) is followed, with the ``__init__.py`` of every package on the way, because
importing a module runs them. The validation pass (``remodiff.check``) is not followed: see NOT_DEPENDENCIES.
Params: the ``PARAMS`` tuple each stage module declares beside its ``run`` (read from the source, nothing is
imported); a run with ``REMODIFF_PARAMS_READ`` set logs what a stage really read (:mod:`remodiff.pipeline.entry`).

``python -m remodiff.pipeline.deps`` prints each stage's lists; ``python -m remodiff.pipeline.deps --write``
rewrites the code deps and the params of every stage of ``dvc.yaml`` in place (its other deps and its outs are left
as they are); ``tests/pipeline/test_dvc_deps.py`` checks that ``dvc.yaml`` says exactly this.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "remodiff"
# Validation only: it refuses a run or lets it go and computes nothing a stage writes, so a change to it cannot
# change an output; following it would make every stage depend on every plug-in.
NOT_DEPENDENCIES = {"remodiff.check"}


def module_file(module: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """The ``remodiff`` modules one file imports (a ``from package import name`` counts ``name`` when it is a
    module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}", root) is not None}
    return found


def closure(entry: Path, root: Path = ROOT) -> list[str]:
    """Repository-relative paths of every ``remodiff`` file that running ``entry`` can import, sorted."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        for module in imported_modules(path, root) - NOT_DEPENDENCIES:
            for name in with_parents(module):
                file = module_file(name, root)
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return sorted(str(p.relative_to(root)) for p in seen)


def package_files(folder: Path, root: Path = ROOT) -> set[str]:
    return {str(p.relative_to(root)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def by_folder(files: list[str], root: Path = ROOT) -> list[str]:
    """``files`` with every package folder whose ``.py`` files are all among them written as the folder: the same
    code (``.dvcignore`` keeps ``__pycache__`` out of a folder's hash), and a much shorter ``dvc.lock``, which DVC
    parses several times per stage it runs."""
    kept = set(files)
    for folder in sorted({(root / f).parent for f in files}, key=lambda p: len(p.parts)):
        inside = package_files(folder, root)
        name = str(folder.relative_to(root))
        if folder != root / PACKAGE and inside <= kept and not any(name.startswith(f"{k}/") for k in kept):
            kept = (kept - inside) | {name}
    return sorted(kept)


def stage_code(script: str, root: Path = ROOT) -> list[str]:
    """A stage's code deps: its script (``stages/<name>.py``) and the package files it imports, a package folder
    that it imports whole written as the folder (:func:`by_folder`)."""
    return [script, *by_folder(closure(root / script, root), root)]


def stage_params(stage: str, variable: str = "PARAMS", root: Path = ROOT) -> list[str]:
    """The params stage ``stage`` declares: the literal ``PARAMS`` of ``remodiff/pipeline/<stage>.py``; with
    ``variable="UNTRACKED"`` the params it reads that cannot change what it writes (none when it has no such
    tuple)."""
    path = root / "remodiff" / "pipeline" / f"{stage}.py"
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [variable]:
            return list(ast.literal_eval(node.value))
    if variable == "PARAMS":
        raise ValueError(f"{path} declares no PARAMS (the params its stage reads)")
    return []


def undeclared(stage: str, read: set[str] | list[str], params: dict, args: tuple | list = ()) -> list[str]:
    """The keys of ``read`` (what a run of ``stage`` with ``params`` and matrix ``args`` read of them) that its
    declared params do not cover. ``${item.<x>}`` is the run's first argument, ``${a.b}`` the value of ``a.b``, a
    key named by a template counts as declared (DVC resolves it), so do the stage's ``UNTRACKED`` keys."""
    covering = list(stage_params(stage, "UNTRACKED"))
    for key in stage_params(stage):
        for name in re.findall(r"\$\{([\w.]+)\}", key):
            if name.startswith("item."):
                value = args[0]
            else:
                covering.append(name)
                value = params
                for part in name.split("."):
                    value = value[part]
            key = key.replace(f"${{{name}}}", str(value))
        covering.append(key)
    return sorted(k for k in read if not any(k == c or k.startswith(f"{c}.") for c in covering))


def with_stage_deps(dvc_yaml: str, root: Path = ROOT) -> str:
    """``dvc_yaml`` with each stage's ``stages/`` and ``remodiff/`` deps replaced by :func:`stage_code` and its
    ``params:`` list by :func:`stage_params`."""
    lines, stage, in_params = [], None, False
    for line in dvc_yaml.splitlines():
        if match := re.match(r"^  (\w+):\s*$", line):
            stage = match.group(1)
        if re.match(r"^ {4}\S", line):
            in_params = False
        if re.match(r"^ {6}- (stages|remodiff)/", line) or (in_params and re.match(r"^ {6}- ", line)):
            continue
        lines.append(line)
        if stage and re.match(r"^ {4}deps:", line):
            lines += [f"      - {dep}" for dep in stage_code(f"stages/{stage}.py", root)]
        if stage and re.match(r"^ {4}params:", line):
            in_params = True
            lines += [f"      - {key}" for key in stage_params(stage, root=root)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        (ROOT / "dvc.yaml").write_text(with_stage_deps((ROOT / "dvc.yaml").read_text()))
        sys.exit()
    for script in sys.argv[1:] or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "stages").glob("*.py")):
        print(f"{script}:\n    deps:")
        for dep in stage_code(script):
            print(f"      - {dep}")
        print("    params:")
        for key in stage_params(Path(script).stem):
            print(f"      - {key}")
