"""Every code block of README.md and docs/*.md runs, so the documentation cannot drift.

Sybil parses each document; its blocks run in order, in one fresh working directory per
document with a fresh ``KAIRO_GUARD_HOME``, ``TMPDIR`` inside it, the checkout's
``examples/`` linked in, and this virtualenv's ``bin`` on ``PATH``:

- ``python`` blocks run in one namespace per document (``>>>`` blocks are doctests),
  in the shell's current directory and exported environment;
- ``sh`` and ``console`` blocks run in one ``bash`` per document (see ``doc_shell``):
  exit statuses and shown output are compared;
- a ``toml`` block is written to ``kairo-guard.toml`` in the current directory and must
  pass ``kairo-guard config check``.

Two directives, in an HTML comment right before a block, change what happens to it:
``<!-- docs-test: save FILE -->`` writes the block (python or toml) to FILE instead of
running it (a python file must compile; it is run by a later command), and
``<!-- docs-test: serve URL -->`` starts each command of the next console block in the
background, waits until URL answers, and stops it when the document ends. There is no
skip directive: a block of any other language, or one that runs nothing, fails the test.
"""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from doc_shell import Command, Shell, console_commands, output_matches, sh_commands
from sybil import Document, Example, Region, Sybil
from sybil.example import SybilFailure
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer

from kairo_guard import Guard

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
LANGUAGES = frozenset({"python", "sh", "console", "toml"})
FENCE = re.compile(r"^```([^\n`]*)\n.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
MAX_SERVERS = 2  # serve directives over all documents: each costs a server start
SERVER_START_S = 30.0


@dataclass
class DocRun:
    """The state of one document's run: its shell, pending directive, blocks run."""

    shell: Shell
    logs: Path
    pending: tuple[str, str] | None = None
    ran: list[int] = field(default_factory=list)
    servers: int = 0

    def take(self, allowed: Iterable[str]) -> tuple[str, str] | None:
        """Consume the directive that applies to this block; fail if it does not fit."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] not in allowed:
            raise AssertionError(f"directive {pending[0]!r} does not apply to this block")
        return pending


def _failure(command: Command, status: int, output: str, why: str) -> str:
    return f"{why}\n$ {command.text}\n(exit {status})\n{output}"


def _run_shell(run: DocRun, commands: list[Command]) -> str | None:
    for command in commands:
        result = run.shell.run(command.text)
        if result.status != command.exit_status:
            return _failure(command, result.status, result.output, "unexpected exit status")
        if command.output is not None and not output_matches(command.output, result.output):
            shown = "\n".join(command.output)
            why = f"output differs from the block's:\n{shown}\n--- actual:"
            return _failure(command, result.status, result.output, why)
    return None


def _serve(run: DocRun, url: str, commands: list[Command]) -> str | None:
    for command in commands:
        if command.output:
            return f"a served command shows no output: {command.text}"
        if _answers(url):  # else another server's answer would pass for this one's
            return f"{url} answers before the server starts: is its port taken?"
        run.servers += 1
        log = run.logs / f"server-{run.servers}.log"
        server = run.shell.start_server(command.text, log)
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(url):
            if time.monotonic() > deadline or server.poll() is not None:
                return f"{url} did not answer: {command.text}\n{log.read_text()}"
            time.sleep(0.1)
    return None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # a loopback URL named by the docs
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: the server is up
    except OSError:
        return False


def _shell_parser(language: str, run: DocRun) -> CodeBlockParser:
    split = console_commands if language == "console" else sh_commands

    def evaluate(example: Example) -> str | None:
        run.ran.append(example.start)
        directive = run.take({"serve"} if language == "console" else ())
        commands = split(str(example.parsed))
        if not commands:
            return "a shell block without a command"
        if directive is not None:
            return _serve(run, directive[1], commands)
        return _run_shell(run, commands)

    return CodeBlockParser(language, evaluate)


def _toml_parser(run: DocRun) -> CodeBlockParser:
    def evaluate(example: Example) -> str | None:
        run.ran.append(example.start)
        directive = run.take({"save"})
        name = directive[1] if directive else "kairo-guard.toml"
        cwd, _ = run.shell.state()
        (cwd / name).write_text(str(example.parsed))
        check = Command(f"kairo-guard config check {name}", example.line)
        return _run_shell(run, [check])

    return CodeBlockParser("toml", evaluate)


class _PythonParser:
    """Sybil's Python parser, run in the shell's directory and environment."""

    def __init__(self, run: DocRun, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inner = PythonCodeBlockParser()
        self.run = run
        self.monkeypatch = monkeypatch

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.inner(document):
            inner = region.evaluator
            assert inner is not None
            region.evaluator = self._wrap(inner)
            yield region

    def _wrap(self, inner: Any) -> Any:
        def evaluate(example: Example) -> object:
            self.run.ran.append(example.start)
            cwd, env = self.run.shell.state()
            directive = self.run.take({"save"})
            if directive is not None:
                path = cwd / directive[1]
                path.write_text(str(example.parsed))
                compile(path.read_text(), str(path), "exec")
                return None
            self.monkeypatch.chdir(cwd)
            for name, value in env.items():
                if os.environ.get(name) != value and name not in {"PWD", "OLDPWD", "SHLVL", "_"}:
                    self.monkeypatch.setenv(name, value)
            return inner(example)

        return evaluate


def _directive_parser(run: DocRun) -> Any:
    lexer = DirectiveInHTMLCommentLexer(directive="docs-test", arguments=r"[^\n]+?")

    def evaluate(example: Example) -> str | None:
        verb, _, argument = str(example.region.lexemes["arguments"]).partition(" ")
        if verb not in {"save", "serve"} or not argument:
            return f"unknown directive: docs-test: {verb} {argument}"
        if run.pending is not None:
            return "two directives in a row"
        run.pending = (verb, argument.strip())
        return None

    def parse(document: Document) -> Iterator[Region]:
        for region in lexer(document):
            region.parsed = region.lexemes["arguments"]
            region.evaluator = evaluate
            yield region

    return parse


def _environment(tmp_path: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "KAIRO_GUARD_HOME": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path / "tmp"),
        "LANG": "C.UTF-8",
        "COLUMNS": "100",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as on a terminal
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.fixture
def doc_run(tmp_path: Path) -> Iterator[DocRun]:
    work = tmp_path / "work"
    for directory in (work, tmp_path / "tmp", tmp_path / "logs"):
        directory.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    shell = Shell(work, _environment(tmp_path))
    try:
        yield DocRun(shell, tmp_path / "logs")
    finally:
        shell.close()


def _close_guards(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, Guard):
            value.close()


def run_document(path: Path, doc_run: DocRun, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run every block of the Markdown file ``path`` in order; return how many ran.

    Raises:
        AssertionError: a block of a language this test cannot run, or one not run.
        SybilFailure: a block that did not do what it shows.
    """
    parsers = [
        _directive_parser(doc_run),
        _PythonParser(doc_run, monkeypatch),
        _shell_parser("sh", doc_run),
        _shell_parser("console", doc_run),
        _toml_parser(doc_run),
    ]
    document = Sybil(parsers=parsers, path=str(path.parent)).parse(path)
    blocks = [(m.start(), m.end(), m.group(1).strip()) for m in FENCE.finditer(document.text)]
    where = {
        start: f"{path.name}:{document.text.count(chr(10), 0, start) + 1}" for start, *_ in blocks
    }
    for start, _, language in blocks:
        assert language in LANGUAGES, f"{where[start]}: a {language or 'bare'} block"
    try:
        for example in document.examples():
            example.evaluate()
    finally:
        _close_guards(document.namespace)
    assert doc_run.pending is None, "a directive at the end applies to no block"
    for start, end, _ in blocks:
        assert any(start <= ran < end for ran in doc_run.ran), f"{where[start]}: not run"
    return len(blocks)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_when_a_document_runs_then_every_block_does_what_it_shows(
    path: Path, doc_run: DocRun, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if "ray.init(" in path.read_text():  # one Ray cluster at a time under pytest-xdist
        request.getfixturevalue("ray_turn")
    run_document(path, doc_run, monkeypatch)


PLANTED = {
    "wrong output": ("```console\n$ echo 1\n2\n```\n", SybilFailure, "output differs"),
    "unshown failure": ("```console\n$ false\n```\n", SybilFailure, "exit status"),
    "shown failure": ("```sh\nfalse  # exit 1\n```\n", None, ""),
    "text block": ("```text\nnot runnable\n```\n", AssertionError, "a text block"),
    "bare block": ("```\nnot runnable\n```\n", AssertionError, "a bare block"),
    "python": ("```python\nassert 1 + 1 == 3, 'arithmetic'\n```\n", AssertionError, "arith"),
    "bad toml": ("```toml\n[guard]\ndefault_mode = 'lax'\n```\n", SybilFailure, "exit"),
    "unknown directive": ("<!-- docs-test: skip -->\n", SybilFailure, "unknown directive"),
}


@pytest.mark.parametrize("case", PLANTED)
def test_when_a_planted_document_is_wrong_then_its_run_fails(
    case: str, tmp_path: Path, doc_run: DocRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, error, message = PLANTED[case]
    page = tmp_path / "page.md"
    page.write_text(f"# {case}\n\n{text}")
    if error is None:
        run_document(page, doc_run, monkeypatch)
        return
    with pytest.raises(error, match=message):
        run_document(page, doc_run, monkeypatch)


def test_when_all_documents_are_listed_then_servers_stay_few() -> None:
    directives = sum(p.read_text().count("<!-- docs-test: serve ") for p in DOCUMENTS)
    assert directives <= MAX_SERVERS


def test_when_a_new_user_opens_the_readme_then_it_is_short_and_starts_with_make() -> None:
    readme = (REPO / "README.md").read_bytes()
    assert len(readme) <= 12 * 1024
    assert b"make demo" in readme[:3000]
    assert b"make test" in readme[:3000]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_when_a_page_links_to_a_file_then_the_file_exists(path: Path) -> None:
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text())
    assert targets or path.name != "README.md"
    for target in targets:
        assert (path.parent / target).exists(), f"{path.name}: {target}"


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (["created <path>/keys.json (key id k1)"], "created /tmp/x/keys.json (key id k1)\n", True),
        (["created <path>/keys.json (key id k1)"], "created /tmp/x/keys.json (key id k2)\n", False),
        (["a", "...", "d"], "a\nb\nc\nd\n", True),
        (["a", "...", "d"], "a\nd\n", True),
        (["a", "...", "d"], "a\nb\n", False),
        (["rc ... end"], "rc 1 2 3 end  \n", True),
        (["seal <seal>"], "seal kg1.k1.ab~acme.tag\n", True),
        (["seal <seal>"], "seal nope\n", False),
        (["one"], "one\ntwo\n", False),
        (["<n> records"], "12 records\n\n", True),
    ],
)
def test_when_output_is_compared_then_placeholders_match_only_their_values(
    expected: list[str], actual: str, matches: bool
) -> None:
    assert output_matches(expected, actual) is matches


@pytest.mark.parametrize(
    ("source", "texts", "statuses"),
    [
        ("a\n# note\nb  # exit 1\n", ["a", "b  # exit 1"], [0, 1]),
        ("cat > f <<'EOF'\nx\nEOF\nls", ["cat > f <<'EOF'\nx\nEOF", "ls"], [0, 0]),
        ("a \\\n  --b\n", ["a \\\n  --b"], [0]),
    ],
)
def test_when_an_sh_block_is_split_then_heredocs_and_continuations_stay_whole(
    source: str, texts: list[str], statuses: list[int]
) -> None:
    commands = sh_commands(source)
    assert [c.text for c in commands] == texts
    assert [c.exit_status for c in commands] == statuses
