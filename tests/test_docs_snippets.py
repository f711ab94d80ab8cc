"""The code blocks of README.md and REPRODUCE.md that are meant to be run are run.

A block is runnable when the line directly above its fence is a marker comment::

    <!-- runnable -->
    <!-- runnable: OLD => NEW ;; OLD2 => NEW2 -->
    <!-- runnable: continues ;; OLD => NEW -->

``OLD => NEW`` replaces every occurrence of ``OLD`` in the block before it runs (tiny settings
instead of a long run, a sample file for a placeholder); an ``OLD`` that is no longer in the
block fails the test, so a marker cannot silently stop applying. ``continues`` runs the block in
the same copy right after the runnable block before it (e.g. a snippet that reads what the
previous one wrote); every other block starts from its own fresh copy. Blocks tagged ``bash``
run with ``bash -e -o pipefail``, ``python`` blocks with this interpreter.

How a block runs, and why so:

* **A fresh copy of the working tree as it is**: the files git tracks plus the untracked ones
  it does not ignore, as they are on disk now (uncommitted edits included, deleted files
  left out), copied into a temporary directory. A ``git clone`` would test the last commit,
  not the tree under test; copying the whole directory would carry ignored build outputs,
  runs and caches that a fresh clone does not have.
* **The package is the copy's**: ``PYTHONPATH`` points at the copy, so ``python train.py``,
  ``python -m unet_keras...`` and the console scripts (``unet-predict``, ``unet-convert``,
  installed once by ``pip install -e .``) import the copy's ``unet_keras`` (checked first),
  and ``pip install ...`` commands are dropped from the blocks: installing into the
  environment the test suite runs in would change it under every other test, and needs a
  package index. The dependencies are those of the environment running the tests.
* **Data**: ``../shared/data`` next to the copy is a link to the real data (env
  ``UNET_KERAS_DATA``, default ``<repo>/../shared/data``), so the commands that use it run
  as written.
* The test command (``python -m pytest``) is not marked: it would run this test inside itself.
  Blocks needing a GPU, several hosts (``TF_CONFIG``), the full Figshare download or a server
  that runs until stopped are not marked either.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "REPRODUCE.md")
MARKER = re.compile(r"^\s*<!--\s*runnable(?::(?P<spec>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
#: ``pip install ...`` alone on a line, or chained before the next command with ``&&``.
PIP_INSTALL = re.compile(r"pip install (?:\"[^\"]*\"|'[^']*'|[^\s&;|]+| )*?(?:&&\s*|$)",
                         re.MULTILINE)
#: Seconds one group of blocks may take (they are tiny runs; the machine may be busy).
TIMEOUT = 900


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    substitutions: list[tuple[str, str]] = field(default_factory=list)
    continues: bool = False

    def prepared(self) -> str:
        """The code with the substitutions applied and ``pip install`` dropped."""
        code = self.code
        for old, new in self.substitutions:
            if old not in code:
                raise AssertionError(f"{self.doc}:{self.line}: the marker substitutes {old!r}, "
                                     "which is no longer in the block")
            code = code.replace(old, new)
        return PIP_INSTALL.sub("", code) if self.lang in ("bash", "sh", "") else code


def parse_marker(spec: str | None) -> tuple[list[tuple[str, str]], bool]:
    substitutions, continues = [], False
    for item in (spec or "").split(";;"):
        item = item.strip()
        if not item:
            continue
        if item == "continues":
            continues = True
        elif "=>" in item:
            old, new = (part.strip() for part in item.split("=>", 1))
            substitutions.append((old, new))
        else:
            raise ValueError(f"not a substitution (OLD => NEW) or 'continues': {item!r}")
    return substitutions, continues


def runnable_blocks(doc: str, text: str) -> list[Block]:
    """The marked fenced blocks of a markdown text, in order (indented fences included)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        marker = MARKER.match(lines[i - 1]) if i else None
        if marker:
            indent = len(opening["indent"])
            code = "\n".join(line[indent:] if line[:indent].isspace() else line
                             for line in lines[i + 1:end]) + "\n"
            substitutions, continues = parse_marker(marker["spec"])
            blocks.append(Block(doc, i + 1, opening["lang"], code, substitutions, continues))
        i = end + 1
    return blocks


def groups() -> list[list[Block]]:
    """Blocks that share a copy: a block and the ``continues`` blocks after it."""
    out: list[list[Block]] = []
    for doc in DOCS:
        for block in runnable_blocks(doc, (REPO / doc).read_text()):
            if block.continues:
                assert out and out[-1][0].doc == doc, f"{doc}:{block.line}: nothing to continue"
                out[-1].append(block)
            else:
                out.append([block])
    return out


def working_tree_files() -> list[str]:
    """Tracked files and untracked, not ignored ones, that exist now (relative paths)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
        capture_output=True, check=True).stdout.decode().split("\0")
    return sorted({f for f in listed if f and (REPO / f).is_file()})


def fresh_copy(root: Path) -> Path:
    """``root/repo``: the working tree as it is, with ``root/shared/data`` -> the real data."""
    copy = root / "repo"
    for rel in working_tree_files():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, copy / rel)
    data = Path(os.environ.get("UNET_KERAS_DATA", REPO.parent / "shared" / "data")).resolve()
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(data, target_is_directory=True)
    return copy


def run_block(block: Block, copy: Path, env: dict[str, str]) -> None:
    code = block.prepared()
    if block.lang == "python":
        argv = [sys.executable, "-c", code]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    done = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, (
        f"{block.doc}:{block.line} failed (exit {done.returncode}):\n{code}\n"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")


GROUPS = groups()


def test_the_documents_mark_their_runnable_blocks():
    """The quick start, the commands on the real data and the PyTorch snippets are marked;
    the test command is not (it would run this test inside itself)."""
    marked = [b for g in GROUPS for b in g]
    docs = {b.doc for b in marked}
    assert docs == set(DOCS), docs
    assert any("train.py" in b.code and "quickstart" in b.code for b in marked)
    assert not any("pytest" in b.code for b in marked)
    assert any(b.lang == "python" for b in marked)


def test_marker_parsing_and_pip_removal():
    text = ("intro\n<!-- runnable: --epochs 5 => --epochs 1 ;; continues -->\n```bash\n"
            "pip install -e . && python train.py --epochs 5\n"
            "pip install \"torch==2.13.0\" -e \".[torch]\"\nunet-convert x\n```\n"
            "```bash\npython -m pytest\n```\n  <!-- runnable -->\n  ```python\n  print(1)\n  ```\n")
    first, second = runnable_blocks("X.md", text)
    assert first.continues and first.substitutions == [("--epochs 5", "--epochs 1")]
    assert first.prepared() == "python train.py --epochs 1\n\nunet-convert x\n"
    assert (second.lang, second.code, second.line) == ("python", "print(1)\n", 12)
    stale = Block("X.md", 1, "bash", "python train.py\n", [("--epochs 5", "--epochs 1")])
    with pytest.raises(AssertionError, match="no longer in the block"):
        stale.prepared()


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=[f"{g[0].doc}:{g[0].line}" for g in GROUPS])
def test_block_runs_in_a_fresh_copy(group, tmp_path):
    copy = fresh_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(copy), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("UNET_KERAS_DATA", None)  # the copy finds ../shared/data like a fresh clone
    where = subprocess.run([sys.executable, "-c", "import unet_keras; print(unet_keras.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(copy), where.stdout
    for block in group:
        run_block(block, copy, env)
