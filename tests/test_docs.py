"""The documentation cannot drift from the code: README.md's and docs/'s Python examples run, their links resolve.

Each page's ```python blocks run in order in one namespace, in a fresh working directory, offline and with
no network, as a notebook would run them. A block that is not meant to run is fenced ```text, ```bash or
```console. A page with a line starting ``<!-- docs-test: fresh-process`` runs in its own interpreter, for
examples that must set the environment before ``huggingface_hub`` is imported.

Run one page by hand: ``python tests/test_docs.py docs/data.md`` (it runs in a temporary directory).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FRESH_PROCESS = re.compile(r"^<!-- docs-test: fresh-process", re.MULTILINE)

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s|$)", re.MULTILINE)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    first_line: int  # 1-based line number of the block's first code line
    closing_line: int  # 1-based line number of its closing fence
    language: str
    code: str


def code_blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks, dedented when they sit inside a list item."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: the code fence {fence} is never closed")
        body = [line[indent:] if line.startswith(" " * indent) else line.lstrip(" ") for line in lines[i + 1:end]]
        blocks.append(Block(page, i + 2, end + 1, opening["info"].lower(), "\n".join(body)))
        i = end + 1
    return blocks


def without_code_blocks(page: Path) -> list[str]:
    """The page's lines, with those of its code blocks (fences included) blanked."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for block in code_blocks(page):
        lines[block.first_line - 2:block.closing_line] = [""] * (block.closing_line - block.first_line + 2)
    return lines


def prose(page: Path) -> str:
    """The page without code, where a bracket and a parenthesis make a link."""
    return _INLINE_CODE.sub("", "\n".join(without_code_blocks(page)))


def run_page(page: Path) -> None:
    """Execute the page's Python blocks in order, in one namespace, in the current directory."""
    namespace = {"__name__": "__main__"}
    for block in code_blocks(page):
        if block.language == "python":
            # Padding with blank lines makes tracebacks name the page's own line numbers.
            code = compile("\n" * (block.first_line - 1) + block.code, str(page), "exec")
            exec(code, namespace)


def _connect_loopback_only(connect):
    def guarded(sock, address, *args):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                raise ConnectionRefusedError(f"the documentation examples run without network; refused {host}")
        return connect(sock, address, *args)

    return guarded


def offline_environment(home: Path) -> dict[str, str]:
    """Environment variables of a documentation run: offline Hub, caches in ``home``, no display."""
    return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "PHYSFM_CACHE": str(home / "physfm_cache"), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def _forbid_network(patch=setattr) -> None:
    """Refuse every connection that leaves the machine (``patch``: ``setattr`` or ``monkeypatch.setattr``)."""
    patch(socket.socket, "connect", _connect_loopback_only(socket.socket.connect))
    patch(socket.socket, "connect_ex", _connect_loopback_only(socket.socket.connect_ex))


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading (mkdocs.yml's toc uses the same rule)."""
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading anchors by its text
    title = unicodedata.normalize("NFC", title.replace("`", "")).lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of the page's headings; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    found, repeats = set(), {}
    for line in without_code_blocks(page):
        heading = _HEADING.match(line)
        if heading:
            slug = github_slug(heading["title"])
            n = repeats[slug] = repeats.get(slug, -1) + 1
            found.add(f"{slug}-{n}" if n else slug)
    return found


def broken_links(page: Path) -> list[str]:
    """What is wrong with each relative link of the page: a missing file, a missing anchor, a way out of docs/."""
    text = prose(page)
    targets = [m["target"] for m in _LINK.finditer(text)] + [m["target"] for m in _REFERENCE.finditer(text)]
    problems = []
    for target in targets:
        if _SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif page.is_relative_to(DOCS) and not file.is_relative_to(DOCS):
            problems.append(f"{target}: outside docs/, so the site cannot serve it; name the path in `code`")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            problems.append(f"{target}: {file.name} has no heading with the anchor #{fragment}")
    return problems


def _runnable(page: Path) -> bool:
    return any(block.language == "python" for block in code_blocks(page))


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_collector_finds_the_readme_quickstart_and_dedents_list_items(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n1. step\n\n   ```python\n   y = x + 1\n   ```\n\n"
                    "```text\nnot code\n```\n")
    blocks = code_blocks(page)
    assert [(b.first_line, b.closing_line, b.language, b.code) for b in blocks] == [
        (4, 5, "python", "x = 1"), (10, 11, "python", "y = x + 1"), (14, 15, "text", "not code")]
    assert any(b.language == "python" for b in code_blocks(ROOT / "README.md"))


def test_a_failing_example_names_its_page_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\nraise RuntimeError(x)\n```\n")
    with pytest.raises(RuntimeError) as error:
        run_page(page)
    assert error.traceback[-1].path == page and error.traceback[-1].lineno + 1 == 5


def test_the_link_checker_catches_missing_files_and_anchors(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page.write_text("[ok](there.md#a-heading-with-code) [gone](missing.md) [bad](there.md#nope) [web](https://x.org)"
                    " `[code](not-a-link.md)`\n")
    assert broken_links(page) == ["missing.md: no file missing.md", "there.md#nope: there.md has no heading with "
                                  "the anchor #nope"]


def test_examples_cannot_reach_the_network(monkeypatch):
    _forbid_network(monkeypatch.setattr)
    with pytest.raises(ConnectionRefusedError, match="without network"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: never routed


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_python_is_fenced_python_so_that_it_runs(page):
    aliases = {"py", "py3", "python3", "ipython", "ipython3", "pycon"}
    assert [f"line {b.first_line - 1}: {b.language}" for b in code_blocks(page) if b.language in aliases] == []


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=_name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    environment = offline_environment(tmp_path)
    if FRESH_PROCESS.search(page.read_text(encoding="utf-8")):
        # tests/ on the path: such a page imports tests/hub_server.py, as it would from the repository's root.
        path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), *sys.path])
        env = {**os.environ, **environment, "PYTHONPATH": path}
        done = subprocess.run([sys.executable, __file__, str(page)], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return

    import matplotlib.pyplot as plt
    from huggingface_hub import constants

    monkeypatch.chdir(work)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    # huggingface_hub reads these once, at import.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", environment["HF_HOME"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(environment["HF_HOME"]) / "hub"))
    _forbid_network(monkeypatch.setattr)
    try:
        run_page(page)
    finally:
        plt.close("all")


if __name__ == "__main__":
    # One page; the fresh-process pages of the test above run through here. From inside the repository it
    # runs in a new temporary directory, so the examples' files land there.
    target = Path(sys.argv[1]).resolve()
    if Path.cwd().is_relative_to(ROOT):
        os.chdir(tempfile.mkdtemp(prefix="physfm-docs-"))
    for key, value in offline_environment(Path.cwd()).items():
        os.environ.setdefault(key, value)
    _forbid_network()
    run_page(target)
