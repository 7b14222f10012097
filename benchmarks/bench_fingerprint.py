"""Fingerprinting throughput on mixed-language text: native core, reference, sha256.

A corpus per language is read from text shipped on this machine, nothing downloaded:

* English: licences and METADATA of the installed packages (``site-packages``);
* code: Python sources of a few installed packages;
* German, French, Russian, Greek, Chinese, Japanese: the translations (``msgstr``) in
  the gettext catalogues under ``/usr/share/locale/<lang>/LC_MESSAGES`` (coreutils, apt,
  bash, ...) where the system ships them, and the string literals of spaCy's language
  data (``spacy/lang/<lang>``) where it is installed.

Each corpus (at most its first ``--kib`` KiB) is cut at line ends into records of about
``--record-kib`` KiB. Side by side in one process, for ``--repeats`` rounds,
``Fingerprinter.of_text`` with the native core, ``of_text`` with the pure-Python
reference and ``hashlib.sha256`` of the records' UTF-8 bytes are timed over every
record; the throughput reported is UTF-8 input bytes per CPU second of the process (per
core; the median round), per language, per script (Latin: English, German, French,
code; other: Russian, Greek, Chinese, Japanese) and overall. The two fingerprinters
must agree on every record.

Run: ``.venv/bin/python benchmarks/bench_fingerprint.py [--json] [--kib N]
[--record-kib N] [--repeats N] [--no-reference]``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import statistics
import struct
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import machine_info

from kairo_guard.detect.winnow import NATIVE, Fingerprinter

SITE = Path(sysconfig.get_paths()["purelib"])
LOCALE = Path("/usr/share/locale")
LATIN = ("english", "german", "french", "code")
OTHER = ("russian", "greek", "chinese", "japanese")
LOCALES = {
    "german": ("de",),
    "french": ("fr",),
    "russian": ("ru",),
    "greek": ("el",),
    "chinese": ("zh_CN", "zh_TW"),
    "japanese": ("ja",),
}
SPACY = {"german": "de", "french": "fr", "russian": "ru", "greek": "el", "chinese": "zh"}
SPACY["japanese"] = "ja"
CODE_PACKAGES = ("click", "anyio", "httpx", "starlette", "hypothesis", "numpy/_core")


def _mo_strings(path: Path) -> Iterator[str]:
    """The translations in a gettext ``.mo`` catalogue (GNU format, either byte order)."""
    data = path.read_bytes()
    if len(data) < 20:
        return
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(struct.unpack("<I", data[:4])[0])
    if order is None:
        return
    count, _, translations = struct.unpack(order + "3I", data[8:20])
    for i in range(1, count):  # entry 0 is the catalogue header
        length, offset = struct.unpack(
            order + "2I", data[translations + 8 * i : translations + 8 * i + 8]
        )
        text = data[offset : offset + length].decode("utf-8", "replace")
        yield text.replace("\0", "\n")  # plural forms


def _literals(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _language_text(language: str) -> Iterator[str]:
    if language == "english":
        for pattern in ("*.dist-info/LICENSE*", "*.dist-info/licenses/*", "*.dist-info/METADATA"):
            for path in sorted(SITE.glob(pattern)):
                if path.is_file():
                    yield path.read_text(encoding="utf-8", errors="replace")
        return
    if language == "code":
        for package in CODE_PACKAGES:
            for path in sorted((SITE / package).rglob("*.py")):
                yield path.read_text(encoding="utf-8", errors="replace")
        return
    for locale in LOCALES[language]:
        for path in sorted((LOCALE / locale / "LC_MESSAGES").glob("*.mo")):
            yield "\n".join(_mo_strings(path))
    for path in sorted((SITE / "spacy" / "lang" / SPACY[language]).rglob("*.py")):
        yield "\n".join(_literals(path))


def records(language: str, kib: int, record_kib: int) -> list[str]:
    """Up to ``kib`` KiB of the language's text, in records of about ``record_kib`` KiB."""
    out: list[str] = []
    current: list[str] = []
    size = total = 0
    for text in _language_text(language):
        for line in text.splitlines(keepends=True):
            n = len(line.encode("utf-8"))
            current.append(line)
            size += n
            total += n
            if size >= record_kib * 1024:
                out.append("".join(current))
                current, size = [], 0
            if total >= kib * 1024:
                break
        if total >= kib * 1024:
            break
    if current:
        out.append("".join(current))
    return out


def _seconds(work: Callable[[Any], object], items: list[Any]) -> float:
    """CPU seconds of this process (one thread) for ``work`` over ``items``: per core,
    and what other processes on the machine do is not counted."""
    start = time.process_time()
    for item in items:
        work(item)
    return time.process_time() - start


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def measure(corpus: dict[str, list[str]], repeats: int, reference: bool) -> dict[str, Any]:
    key = b"bench-fingerprint-key-0123456789"
    native = Fingerprinter(key, native=True)
    python = Fingerprinter(key, native=False)
    blobs = {lang: [r.encode("utf-8") for r in recs] for lang, recs in corpus.items()}
    for lang, recs in corpus.items():  # the two must agree before their speed matters
        for rec in recs[:20] if not reference else recs:
            if native.of_text_array(rec).tolist() != python.of_text_array(rec).tolist():
                raise SystemExit(f"native and reference fingerprints differ ({lang})")
    sides: dict[str, Callable[[str], object]] = {"native": native.of_text}
    if reference:
        sides["reference"] = python.of_text
    times: dict[str, dict[str, list[float]]] = {s: {} for s in [*sides, "sha256"]}
    for _ in range(repeats):
        for lang, recs in corpus.items():
            for side, of_text in sides.items():
                times[side].setdefault(lang, []).append(_seconds(of_text, recs))
            times["sha256"].setdefault(lang, []).append(_seconds(_sha256, blobs[lang]))
    size = {lang: sum(len(b) for b in bs) for lang, bs in blobs.items()}
    groups = {"latin": LATIN, "other": OTHER, "overall": LATIN + OTHER}
    rows: dict[str, dict[str, Any]] = {}
    for name, langs in [*((lang, (lang,)) for lang in corpus), *groups.items()]:
        langs = tuple(lang for lang in langs if lang in corpus)
        nbytes = sum(size[lang] for lang in langs)
        row: dict[str, Any] = {"bytes": nbytes, "records": sum(len(corpus[x]) for x in langs)}
        for side, per_lang in times.items():
            rounds = [sum(per_lang[lang][r] for lang in langs) for r in range(repeats)]
            row[f"{side}_mb_s"] = nbytes / statistics.median(rounds) / 1e6
        rows[name] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kib", type=int, default=512, help="KiB of text per language")
    parser.add_argument("--record-kib", type=int, default=16, help="KiB per record")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow reference")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not NATIVE:
        raise SystemExit("the native core (kairo_guard.detect._winnow) is not built")
    corpus = {lang: records(lang, args.kib, args.record_kib) for lang in LATIN + OTHER}
    corpus = {lang: recs for lang, recs in corpus.items() if recs}
    rows = measure(corpus, args.repeats, not args.no_reference)
    result = {
        "kib_per_language": args.kib,
        "record_kib": args.record_kib,
        "repeats": args.repeats,
        "rows": rows,
        "machine": machine_info.machine(),
        "library_sources_sha256": machine_info.library_state()[0],
        "load_average": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"records of ~{args.record_kib} KiB, median of {args.repeats} rounds, MB/s of UTF-8 input"
    )
    head = f"{'text':<10} {'MB':>6} {'native':>8} {'reference':>10} {'sha256':>8}"
    print(head + f" {'native/sha256':>14} {'native/ref':>11}")
    for name, row in rows.items():
        ref = row.get("reference_mb_s")
        print(
            f"{name:<10} {row['bytes'] / 1e6:>6.2f} {row['native_mb_s']:>8.1f} "
            f"{ref if ref is not None else float('nan'):>10.1f} {row['sha256_mb_s']:>8.1f} "
            f"{row['native_mb_s'] / row['sha256_mb_s']:>14.3f} "
            f"{row['native_mb_s'] / ref if ref else float('nan'):>11.1f}"
        )
    m = result["machine"]
    load = ", ".join(f"{x:.2f}" for x in result["load_average"])
    print(f"machine: nproc {m['nproc']}, {m['cpu_model']}, Python {m['python']}; load {load}")


if __name__ == "__main__":
    main()
