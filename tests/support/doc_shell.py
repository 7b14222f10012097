"""Run the shell blocks of the documentation as real commands and compare their output.

A document's shell blocks share one ``bash`` process, so ``cd``, ``export`` and files
carry from block to block in order, as they would in a reader's terminal.

Shell blocks in Markdown:

- ``sh``: commands only; each must exit 0.
- ``console``: ``$ command`` lines, each followed by the output it prints (stdout and
  stderr together, in the order written). A command line that ends in a backslash
  continues on the next line.

In either, a command whose line ends with the comment ``# exit N`` must exit with N.
In shown output, a line ``...`` stands for any number of lines, ``...`` inside a line
for any text on that line, and these placeholders (``PLACEHOLDERS``) for values that
differ on every run: ``<api-key>``, ``<seal>``, ``<hex>``, ``<id>``, ``<n>``, ``<path>``,
``<pseudonym>``, ``<time>``.
"""

from __future__ import annotations

import base64
import os
import re
import select
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDERS = {
    "<api-key>": r"kgk\.[0-9a-f]+\.[A-Za-z0-9_-]+",
    "<seal>": r"kg1\.[^\s\"]+",
    "<hex>": r"[0-9a-f]+",
    "<id>": r"[A-Za-z0-9_-]+",
    "<n>": r"[0-9]+",
    "<path>": r"\S+",
    "<pseudonym>": r"tp_[A-Za-z0-9_-]+",
    "<time>": r"[0-9TZ:.+-]+",
}

EXIT_COMMENT = re.compile(r"#\s*exit\s+(\d+)\s*$")
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
_TOKEN = re.compile("|".join(re.escape(p) for p in [*PLACEHOLDERS, "..."]))


@dataclass
class Command:
    """One command of a shell block: its text, the exit status and output it shows."""

    text: str
    line: int
    exit_status: int = 0
    output: list[str] | None = None  # None: output not shown, not compared


@dataclass
class Result:
    """What a command did."""

    status: int
    output: str


def _expected_status(text: str) -> int:
    found = EXIT_COMMENT.search(text.splitlines()[-1] if text else "")
    return int(found.group(1)) if found else 0


def sh_commands(source: str) -> list[Command]:
    """Split an ``sh`` block into commands (continuation lines and heredocs kept whole)."""
    commands: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        start = i
        if not lines[i].strip() or lines[i].lstrip().startswith("#"):
            i += 1
            continue
        chunk = [lines[i]]
        while chunk[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            chunk.append(lines[i])
        heredoc = HEREDOC.search(chunk[-1])
        if heredoc:
            while i + 1 < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
                chunk.append(lines[i])
        text = "\n".join(chunk)
        commands.append(Command(text, start, _expected_status(chunk[0])))
        i += 1
    return commands


def console_commands(source: str) -> list[Command]:
    """Split a ``console`` block into ``$ command`` lines and the output each shows."""
    commands: list[Command] = []
    continued = False
    for number, line in enumerate(source.splitlines()):
        if continued:
            commands[-1].text += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            commands.append(Command(line[2:], number, output=[]))
            continued = line.endswith("\\")
        elif commands and commands[-1].output is not None:
            commands[-1].output.append(line)
        else:
            raise ValueError(f"console block line {number + 1}: output before any '$ ' command")
    for command in commands:
        command.exit_status = _expected_status(command.text)
    return commands


def _line_pattern(line: str) -> str:
    parts: list[str] = []
    pos = 0
    for token in _TOKEN.finditer(line):
        parts.append(re.escape(line[pos : token.start()]))
        parts.append(".*" if token.group() == "..." else f"(?:{PLACEHOLDERS[token.group()]})")
        pos = token.end()
    parts.append(re.escape(line[pos:]))
    return "".join(parts)


def output_matches(expected: list[str], actual: str) -> bool:
    """True if ``actual`` is what ``expected`` shows (placeholders and ``...`` allowed)."""
    while expected and not expected[-1].strip():
        expected = expected[:-1]
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line.strip() == "..." else _line_pattern(line.rstrip()) + r"\n"
        for line in expected
    )
    lines = [line.rstrip() for line in actual.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    text = "".join(line + "\n" for line in lines)
    return re.fullmatch(pattern, text) is not None


@dataclass
class Shell:
    """One ``bash`` process per document; commands run in it one at a time."""

    cwd: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] = field(init=False)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def run(self, command: str, *, timeout: float = 120.0) -> Result:
        """Run ``command`` (stdin closed, stderr into stdout) and return its status and output.

        Raises:
            TimeoutError: if it has not finished after ``timeout`` seconds.
        """
        marker = f"__docs_{uuid.uuid4().hex}__"
        script = f'{{\n{command}\n}} </dev/null 2>&1\nprintf "\\n{marker} %d\\n" "$?"\n'
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        done = re.compile(rb"\n" + marker.encode() + rb" (\d+)\n")
        buffer = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while (found := done.search(buffer)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"no end after {timeout:.0f} s: {command}\n{buffer.decode()}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                buffer += chunk
        text = buffer[: found.start()].decode(errors="replace")
        return Result(int(found.group(1)), text)

    def state(self) -> tuple[Path, dict[str, str]]:
        """The shell's current directory and exported environment."""
        result = self.run("pwd; env -0 | base64 -w0; echo")
        cwd, encoded = result.output.splitlines()[:2]
        pairs = base64.b64decode(encoded).split(b"\0")
        env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
        return Path(cwd), env

    def start_server(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` in the shell's directory and environment, in the background.

        It is stopped by :meth:`close`.
        """
        cwd, env = self.state()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background.append(proc)
        return proc

    def close(self) -> None:
        """Stop background servers, then the shell."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the shell ends at end of input
        for proc in [*self.background, self.proc]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
