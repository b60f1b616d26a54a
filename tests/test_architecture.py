"""Imports flow one way: genome -> tokenizer -> data -> train/evaluate/score -> pipelines; `model` imports none of ours."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER_RANK = {"genome": 0, "tokenizer": 1, "data": 2, "train": 3, "evaluate": 3, "score": 3}
SHARED = {"errors", "atomic", "manifest", "lazy", "parallel"}  # project-wide helpers below every layer (not model)


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_import_direction():
    problems = []
    for path in sorted((ROOT / "genomics_bigbird").rglob("*.py")):
        parts = path.relative_to(ROOT / "genomics_bigbird").parts
        layer = parts[0] if len(parts) > 1 else None
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "pipelines":
                problems.append(f"{path}: library imports pipelines")
            if top == "deepspeed" and path.relative_to(ROOT).as_posix() != "genomics_bigbird/train/engine.py":
                problems.append(f"{path}: deepspeed is imported only in train/engine.py")
            if top != "genomics_bigbird" or layer is None:
                continue
            target = module.split(".")[1] if "." in module else ""
            if layer == "model":
                if target != "model":
                    problems.append(f"{path}: model imports {module}")
                continue
            if target in SHARED or target == "model":
                continue
            if target == "" or LAYER_RANK.get(target, 99) > LAYER_RANK.get(layer, -1) or (
                    target != layer and LAYER_RANK.get(target) == LAYER_RANK.get(layer)):
                problems.append(f"{path}: {layer} imports {module}")
    assert not problems, "\n".join(problems)
