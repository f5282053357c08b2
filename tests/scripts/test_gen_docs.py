"""docs/architecture.md matches the code, and the files the tree cites exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
_SOURCES = ("contract", "dataflows", "deploy", "docs", "edge", "gateway", "scripts", "simulators")
_CITED = re.compile(r"(?<![\w./-])((?:docs|tests)/[\w./-]*?\.(?:md|py))\b")


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_doc_is_what_the_generator_writes() -> None:
    gen = _gen_docs()
    current = gen.DOC.read_text()
    assert gen.render(current) == current, (
        f"docs/architecture.md is out of date with the code: run `{gen.REGENERATE}` and commit it"
    )


def test_every_table_is_generated_once() -> None:
    gen = _gen_docs()
    names = re.findall(r"<!-- generated:([a-z-]+) -->", gen.DOC.read_text())
    assert sorted(names) == sorted(gen.TABLES)


def test_readme_links_the_architecture_doc() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()


def _texts() -> list[Path]:
    files = [*ROOT.glob("*.md")]
    for top in (*_SOURCES, "tests"):
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in {".py", ".md"}]
    return [p for p in files if "__pycache__" not in p.parts]


def test_every_cited_doc_and_test_file_exists() -> None:
    missing = sorted(
        f"{path.relative_to(ROOT)}: {cited}"
        for path in _texts()
        for cited in set(_CITED.findall(path.read_text(errors="replace")))
        if not (ROOT / cited).exists()
    )
    assert not missing, "files cited but not in the tree:\n" + "\n".join(missing)
