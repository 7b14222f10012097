"""Winnowing fingerprints of text: the net for laundered customer content.

Text is normalized (invisible characters removed: format characters such as zero-width
spaces, soft hyphens and byte-order marks, control characters such as NUL, and the other
default-ignorable code points such as variation selectors and the combining grapheme
joiner, which would otherwise split every word they are slipped into; then Unicode NFKC,
case folded, letters stripped of their diacritics (``é`` is ``e``), look-alike characters
mapped to one representative (Unicode TR39 confusables joined with case folding,
:mod:`kairo_guard.detect.confusables`: Cyrillic U+0430 is Latin ``a``; ``i`` and ``l``
one letter, since capital ``I`` looks like ``l`` but folds to ``i``), and everything
that is not a letter or a digit removed: whitespace, punctuation, symbols and combining
marks, so a space, a dot or a mark slipped into a word every few characters changes
nothing, as a look-alike does not), cut into overlapping k-grams of :data:`K`
characters, and winnowed (Schleimer, Wilkerson, Aiken 2003): in every window of
:data:`W` consecutive k-gram hashes the rightmost minimum is selected. Two texts that
share a normalized span of at least ``W + K - 1`` (71) characters share at least one
selected k-gram, and a shared span of ``L`` characters shares at least
``floor((L - K + 1) / W)`` selected positions. Normalized text is letters and digits
only, about 80% of ordinary text: 200 characters of prose are some 160 normalized,
which share 3 (:data:`MIN_SHARED_FINGERPRINTS`). Fingerprints are a set, so positions
whose k-grams repeat (text that repeats a 42-letter chunk, such as a table of identical
rows) count once: such a span may share fewer distinct fingerprints, but it also carries
little information. Spans shorter than :data:`K` (42) letters, about 50 characters of
prose and the length of most stock phrases, never produce a shared k-gram at all.

Window selection uses a fast unkeyed hash: a polynomial rolling hash of the k-gram's code
points modulo 2**64, passed through a 64-bit finalizer (MurmurHash3's ``fmix64``) so that
every bit of the compared value depends on every character. What is stored and compared
is a keyed hash of each selected k-gram's UTF-8: SipHash-2-4 (Aumasson and Bernstein
2012; 64 bits) under a 128-bit key derived from the guard's fingerprint key, so the index
holds nothing from which text can be recovered or even confirmed without that key.
SipHash-2-4 is a pseudorandom function made for short inputs; it replaces keyed BLAKE2b
because the native core (``_winnow``, a C extension compiled at install time) cannot
reach CPython's BLAKE2b, and SipHash is small enough to write there and check against
the paper's test vectors. The native core leaves only NFKC to CPython (whose quick
check passes on most text once the core has replaced compatibility characters) and does
the rest in one pass, at tens of MB/s; the pure-Python (numpy) code here computes the
same fingerprints, is the specification and the test oracle, and is used, with a
warning, when the extension was not built.

Changing any of this changes every fingerprint: :data:`SCHEME` names the scheme, and an
index built under another scheme no longer matches the text it was built from.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kairo_guard.core.content import strip_invisible
from kairo_guard.detect.body_text import unescaped_readings
from kairo_guard.detect.char_tables import (
    CASED_STOP,
    TAGS_START,
    VISIBLE_FROM,
    changed_code_points,
    final_letters,
    invisible_code_points,
    unmarked_letters,
)
from kairo_guard.detect.confusables import TABLE_SHA256, in_latin_words, load_table, translator
from kairo_guard.detect.fields import record_strings

try:  # compiled at install time (hatch_build.py); the reference below is the fallback
    import kairo_guard.detect._winnow as native_core
except ImportError:  # pragma: no cover - exercised only where no C compiler was found
    native_core = None  # type: ignore[assignment]

K = 42
"""k-gram length, in normalized characters (letters and digits)."""
W = 30
"""Winnowing window, in k-grams."""
GUARANTEED_SPAN = W + K - 1
"""Any shared normalized span this long shares at least one fingerprint."""
MIN_SHARED_FINGERPRINTS = (160 - K + 1) // W
"""Fingerprints a shared 200-character span of prose (some 160 normalized characters)
is guaranteed to share (3)."""
SCHEME = (
    f"kg-winnow3-k{K}-w{W}-ignorable-latinwords-nfkc-casefold-unmarked-tr39-il-"
    f"{TABLE_SHA256[:12]}-alnumonly-poly64fmix-siphash24"
)
"""Names the normalization and hashing of fingerprints: indexes made under another
scheme do not match text fingerprinted under this one."""
NATIVE_VERSION = 2
"""The version of ``_winnow.c`` this module works with (a stale build is not used)."""
if native_core is not None and (native_core.K, native_core.W, native_core.VERSION) != (
    K,
    W,
    NATIVE_VERSION,
):  # pragma: no cover - a build left over from other sources
    native_core = None  # type: ignore[assignment]
NATIVE = native_core is not None
"""Whether the C extension is available (else every Fingerprinter uses the reference)."""

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
UInt64Array = np.ndarray[Any, np.dtype[np.uint64]]

_log = logging.getLogger(__name__)
_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_SEPARATORS = re.compile(r"[\W_]+")
_LOOK_ALIKES = translator(load_table())  # folded character -> its representative
_SIP_KEY_PERSON = b"kg-winnow2-sip"  # domain of the SipHash key derived from the key


def normalize(text: str) -> str:
    """Return ``text`` without invisible characters, the look-alikes folding would take
    from their prototype replaced in Latin words (:func:`in_latin_words`), NFKC-normalized,
    case folded, letters without their diacritics (:func:`unmarked_letters`), look-alikes
    mapped to their representative (without its diacritics), ``i`` and ``l`` merged
    (:data:`~kairo_guard.detect.char_tables.MERGED_LETTERS`), and only its letters and
    digits kept."""
    folded = unicodedata.normalize("NFKC", in_latin_words(strip_invisible(text))).casefold()
    # unmarked again after the look-alikes (a representative may be marked), i merged
    return _SEPARATORS.sub("", _finish()(_LOOK_ALIKES(_unmarked()(folded))))


@functools.cache
def _unmarked() -> Callable[[str], str]:
    return translator(unmarked_letters())


@functools.cache
def _finish() -> Callable[[str], str]:
    return translator(final_letters())


def record_text(content: object) -> str:
    """Return the text of a record: its strings, in a stable order, space separated.

    Object keys count as text (each before its value); numbers and booleans do not;
    the seal field is skipped. Bytes are read as the JSON value they hold, else decoded
    as UTF-8 with replacement (:func:`~kairo_guard.detect.fields.bytes_value`).

    Text with escapes a program decodes (JSON string escapes, ``Caf\\u00e9``: JSON text
    kept in a field or a log line; HTML character references, ``Caf&eacute;``;
    percent-encoding, ``Caf%C3%A9``; base64 of text) is read as it is and decoded as
    well (:func:`~kairo_guard.detect.body_text.unescaped_readings`), so an escaped copy
    and a decoded one meet whichever side of the net holds which.
    """
    text = " ".join(record_strings(content))
    readings = unescaped_readings(text)
    return " ".join([text, *readings]) if readings else text


class _Powers:
    """BASE**i and BASE**-i modulo 2**64, grown on demand and shared (read-only)."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def need(self, n: int) -> None:
        if len(self.up) > n:
            return
        size = max(n + 1, 2 * len(self.up), 4096)
        up = np.empty(size, dtype=np.uint64)
        down = np.empty(size, dtype=np.uint64)
        up[0] = down[0] = 1
        with np.errstate(over="ignore"):
            np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64), out=up[1:])
            np.cumprod(np.full(size - 1, _BASE_INV, dtype=np.uint64), out=down[1:])
        self.up, self.down = up, down  # swap whole arrays: readers never see a half


_POWERS = _Powers()


def _rolling(codes: UInt64Array) -> UInt64Array:
    """Hash of every k-gram: sum of c[i+j] * BASE**j modulo 2**64, in O(n), each passed
    through MurmurHash3's 64-bit finalizer."""
    n = len(codes)
    _POWERS.need(n)
    up, down = _POWERS.up, _POWERS.down
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(codes * up[:n], out=prefix[1:])
    count = n - K + 1
    h: UInt64Array = (prefix[K:] - prefix[:count]) * down[:count]
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def winnow(normalized: str) -> list[int]:
    """Return the start offsets of the selected k-grams of normalized text."""
    if len(normalized) < K:
        return []
    codes = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashes = _rolling(codes)
    if len(hashes) <= W:
        return [int(len(hashes) - 1 - np.argmin(hashes[::-1]))]
    # rightmost minimum of each window: argmin of the reversed window
    chosen = W - 1 - sliding_window_view(hashes, W)[:, ::-1].argmin(axis=1)
    chosen += np.arange(len(chosen))
    # positions never decrease from one window to the next: drop repeats
    keep = np.empty(len(chosen), dtype=bool)
    keep[0] = True
    np.not_equal(chosen[1:], chosen[:-1], out=keep[1:])
    return chosen[keep].tolist()  # type: ignore[no-any-return]


def _rotl(x: UInt64Array, bits: int) -> UInt64Array:
    return (x << np.uint64(bits)) | (x >> np.uint64(64 - bits))


def _sip_rounds(v: list[UInt64Array], rounds: int) -> None:
    for _ in range(rounds):
        v[0] += v[1]
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] += v[3]
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] += v[3]
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] += v[1]
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)


def siphash24(key: bytes, messages: Sequence[bytes]) -> UInt64Array:
    """SipHash-2-4 of each message under a 16-byte key (vectorized over the messages).

    Messages with the same number of 8-byte blocks (the last holds the tail bytes and
    the length modulo 256 in its top byte) are hashed together, a block at a time.
    """
    if len(key) != 16:
        raise ValueError("the SipHash key is 16 bytes")
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    init = (
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    )
    lengths = np.array([len(m) for m in messages], dtype=np.int64)
    blocks = lengths // 8 + 1
    out = np.empty(len(messages), dtype=np.uint64)
    for count in np.unique(blocks).tolist():
        rows = np.flatnonzero(blocks == count)
        padded = np.zeros((len(rows), count * 8), dtype=np.uint8)
        for r, i in enumerate(rows.tolist()):
            padded[r, : lengths[i]] = np.frombuffer(messages[i], dtype=np.uint8)
        padded[:, -1] = lengths[rows] & 0xFF
        words = padded.view("<u8").astype(np.uint64)
        v = [np.full(len(rows), x, dtype=np.uint64) for x in init]
        for j in range(count):
            v[3] ^= words[:, j]
            _sip_rounds(v, 2)
            v[0] ^= words[:, j]
        v[2] ^= np.uint64(0xFF)
        _sip_rounds(v, 4)
        out[rows] = v[0] ^ v[1] ^ v[2] ^ v[3]
    return out


def _packed(mapping: Mapping[int, str]) -> tuple[bytes, bytes, bytes]:
    """A code point -> string map as the native core takes it: sorted keys, offsets of
    each key's value in the values, the values' code points (all uint32)."""
    keys = sorted(mapping)
    values = [mapping[k] for k in keys]
    offsets = np.zeros(len(keys) + 1, dtype=np.uint32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    codes = "".join(values).encode("utf-32-le", "surrogatepass")
    return np.array(keys, dtype=np.uint32).tobytes(), offsets.tobytes(), codes


@functools.cache
def _native_tables() -> object:
    """The native core's tables (built once, in some 30 ms).

    The fold map sends each character to the base letters of the look-alike
    representatives of the base letters of its case folding (all work character by
    character, so one map does them all). The prepare map
    removes invisible characters and replaces BMP characters by their NFKC form: that
    leaves the NFKC form of any text they stand in unchanged (a character and its NFKC
    form have one compatibility decomposition) and lets most text pass CPython's NFKC
    quick check, which is over 20 times faster than its full normalization.
    """
    look_alikes, unmarked, final = load_table(), unmarked_letters(), final_letters()
    fold = {}
    changed = changed_code_points(str.casefold, CASED_STOP).keys()
    for code in changed | look_alikes.keys() | final.keys():
        folded = "".join(unmarked.get(ord(c), c) for c in chr(code).casefold())
        alike = "".join(look_alikes.get(ord(c), c) for c in folded)
        mapped = "".join(final.get(ord(c), c) for c in alike)
        if mapped != chr(code):
            fold[code] = mapped
    prepare = changed_code_points(functools.partial(unicodedata.normalize, "NFKC"), 0x10000)
    invisible = invisible_code_points(0, VISIBLE_FROM)
    invisible += invisible_code_points(TAGS_START, TAGS_START + 0x10000)
    prepare.update(dict.fromkeys(invisible, ""))  # stripped before NFKC
    return native_core.tables(*_packed(fold), *_packed(prepare))


@functools.cache
def _warn_reference_only() -> None:
    _log.warning(
        "kairo_guard.detect._winnow (the C extension) is not built or out of date: "
        "fingerprints are "
        "computed by the pure-Python reference, several times slower; reinstall "
        "kairo-guard where a C compiler (gcc) and the Python headers are available"
    )


class Fingerprinter:
    """Keyed winnowing fingerprints of text (64-bit signed ints, ready for SQL).

    Args:
        key: the fingerprint key (at least 16 bytes; the first 64 are used).
        native: use the C extension (``None``: when it is built; ``True``: require it;
            ``False``: the pure-Python reference). Both give the same fingerprints.

    Raises:
        ValueError: if the key is shorter than 16 bytes.
        RuntimeError: if ``native`` is ``True`` and the extension is not built.
    """

    def __init__(self, key: bytes, *, native: bool | None = None) -> None:
        if len(key) < 16:
            raise ValueError("fingerprint key must be at least 16 bytes")
        if native and not NATIVE:
            raise RuntimeError("the fingerprint C extension (_winnow) is not built")
        self._native = NATIVE if native is None else native
        if self._native:
            self._tables = _native_tables()
        elif native is None:
            _warn_reference_only()
        self._sip_key = hashlib.blake2b(
            key=key[:64], digest_size=16, person=_SIP_KEY_PERSON
        ).digest()

    def __getstate__(self) -> dict[str, Any]:
        # the native tables are a capsule, rebuilt (cached) where the copy is loaded
        return {"native": self._native, "sip_key": self._sip_key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._native = state["native"] and NATIVE
        self._sip_key = state["sip_key"]
        if self._native:
            self._tables = _native_tables()

    @property
    def native(self) -> bool:
        """Whether this fingerprinter runs the C extension."""
        return self._native

    def normalized(self, text: str) -> str:
        """Return the normalized text whose k-grams are fingerprinted (as
        :func:`normalize`, computed by the native core when this fingerprinter uses it)."""
        if not self._native:
            return normalize(text)
        return native_core.normalized(self._tables, self._nfkc(text))

    def of_text_array(self, text: str) -> Int64Array:
        """Return the fingerprints of ``text``: distinct, sorted, as a numpy int64 array."""
        if not self._native:
            normalized = normalize(text)
            grams = [normalized[p : p + K].encode("utf-8") for p in winnow(normalized)]
            return np.unique(siphash24(self._sip_key, grams).view(np.int64))
        raw = native_core.fingerprints(self._tables, self._nfkc(text), self._sip_key)
        return np.frombuffer(bytearray(raw), dtype=np.int64)

    def of_text(self, text: str) -> set[int]:
        """Return the fingerprints of ``text``."""
        return set(self.of_text_array(text).tolist())

    def of_record(self, content: object) -> set[int]:
        """Return the fingerprints of a record's text (see :func:`record_text`)."""
        return self.of_text(record_text(content))

    def _nfkc(self, text: str) -> str:
        """``text`` without invisible characters, NFKC-normalized (native core)."""
        prepared = native_core.prepare(self._tables, in_latin_words(text))
        if prepared.isascii():  # NFKC changes no ASCII text
            return prepared
        return unicodedata.normalize("NFKC", prepared)
