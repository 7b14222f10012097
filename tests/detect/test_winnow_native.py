"""The native fingerprinting core computes exactly the fingerprints of the pure-Python
reference (the specification), is keyed, and is what the installed package uses."""

from __future__ import annotations

import pickle
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kairo_guard.core.content import strip_invisible
from kairo_guard.detect.char_tables import (
    CASED_STOP,
    MARKED_STOP,
    TAGS_START,
    VISIBLE_FROM,
    invisible_code_points,
    unmarked_letters,
)
from kairo_guard.detect.confusables import load_table
from kairo_guard.detect.winnow import (
    NATIVE,
    Fingerprinter,
    K,
    W,
    normalize,
    siphash24,
)

pytestmark = pytest.mark.storeless  # opens no state store: runs once, in the main pass

try:
    import kairo_guard.detect._winnow as native_core
except ImportError:  # the first test says so; the others skip
    native_core = None  # type: ignore[assignment]

KEY = b"native-test-key-0123456789abcdef"
NATIVE_FP = Fingerprinter(KEY, native=True) if NATIVE else None
REFERENCE_FP = Fingerprinter(KEY, native=False)

LOOK_ALIKES = "".join(chr(c) for c in sorted(load_table()))
INVISIBLE = "".join(chr(c) for c in invisible_code_points(0, 0x10000))
COMPATIBILITY = (
    "\u00a0\u00aa\u00b2\u00bd\u00c5\u00df\u0130\u0149\u01c4\u03a3\u03c2\u1e9e\u2126\u212b"
    "\u2026\u2122\u2460\u3000\u3300\u33cf\ufb01\ufb03\ufdfa\uff21\uff41\uff10\uff0c\uff61"
    "\uff76\uff9e\u1100\u1161\u11a8\uac00\u0301\u0308\u0327\u3099\u309a"
)
ASTRAL = "\U0001d400\U0001d41a\U0001d7ce\U00010400\U00010428\U0001f600\U00020000\U000e0041"
SCRIPTS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "äöüßÄÖÜéèêçàùœæÉÈ"
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
    "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ"
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年"
    "あいうえおかきくけこさしすせそアイウエオカキクケコ漢字仮名"
)
SEPARATORS = " \t\n\r.,;:!?-_()[]{}<>/\\'\"@#$%^&*+=|~`\u2014\u00bf\u3002\u3001\uff01"
SURROGATES = "\ud800\udbff\udc00\udfff"  # lone ones, as str allows
ALPHABET = SCRIPTS + SEPARATORS + LOOK_ALIKES + INVISIBLE + COMPATIBILITY + ASTRAL + SURROGATES

needs_native = pytest.mark.skipif(not NATIVE, reason="the C extension is not built")


def _both(text: str) -> tuple[np.ndarray, np.ndarray]:
    assert NATIVE_FP is not None
    return NATIVE_FP.of_text_array(text), REFERENCE_FP.of_text_array(text)


def test_when_the_package_is_installed_then_the_native_core_is_in_use() -> None:
    # the Makefile installs the package with its build hook: a missing extension is a
    # broken install (or a missing compiler), and fingerprinting would be several times
    # slower
    assert NATIVE, "kairo_guard.detect._winnow was not built (see hatch_build.py)"
    assert Fingerprinter(KEY).native


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", 0x726FDB47DD0E0E31),  # SipHash reference implementation, vectors[0]
        (bytes(range(15)), 0xA129CA6149BE45E5),  # the SipHash paper, appendix A
    ],
)
def test_when_siphash_gets_the_published_vectors_then_both_give_the_published_values(
    message: bytes, expected: int
) -> None:
    key = bytes(range(16))
    assert int(siphash24(key, [message])[0]) == expected
    if NATIVE:
        assert native_core.siphash24(key, message) == expected


@needs_native
def test_when_messages_of_every_length_are_hashed_then_native_and_reference_agree() -> None:
    key = bytes(range(100, 116))
    messages = [bytes(random.Random(n).randbytes(n)) for n in range(260)]
    reference = siphash24(key, messages).tolist()
    assert reference == [native_core.siphash24(key, m) for m in messages]
    assert len(set(reference)) == len(messages)


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ALPHABET, max_size=400) | st.text(max_size=300))
def test_when_any_text_is_fingerprinted_then_native_equals_reference(text: str) -> None:
    assert NATIVE_FP is not None
    assert NATIVE_FP.normalized(text) == normalize(text)
    native, reference = _both(text)
    assert native.tolist() == reference.tolist()


@needs_native
@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=30), min_size=1, max_size=400))
def test_when_long_texts_are_fingerprinted_then_native_equals_reference(words: list[str]) -> None:
    text = " ".join(words)
    native, reference = _both(text)
    assert native.tolist() == reference.tolist()


@needs_native
@pytest.mark.parametrize("length", [0, 1, K - 1, K, K + 1, K + W - 2, K + W - 1, K + W])
def test_when_normalized_text_is_around_k_and_w_long_then_native_equals_reference(
    length: int,
) -> None:
    text = "".join(random.Random(length).choice("abcdefgh ") for _ in range(3 * length))
    text = normalize(text)[:length]
    assert len(text) == length
    native, reference = _both(text)
    assert native.tolist() == reference.tolist()
    assert (len(native) >= 1) == (length >= K)


@needs_native
def test_when_windows_end_at_every_block_boundary_then_native_equals_reference() -> None:
    rng = random.Random(7)
    text = "".join(rng.choice("abcdefghijklmnop ") for _ in range(K + 4 * W + 3))
    text = " ".join(text.split())
    for length in range(K, len(text) + 1):
        native, reference = _both(text[:length])
        assert native.tolist() == reference.tolist(), length


SAMPLES = {  # look-alikes and full-width forms on purpose
    "english": "The quick brown fox jumps over the lazy dog; it was not amused, and said so.",
    "german": "Größere Übungen für Äpfel: Straße, Maße und Fußgängerüberweg, übermäßig schön.",
    "french": "L\u2019été où l\u2019œuvre s\u2019achève\u00a0: déjà ça, naïve Noël, garçon.",
    "russian": "Съешь же ещё этих мягких французских булок, да выпей чаю. Ёлка и Щука!",
    "greek": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΟΔΥΣΣΕΥΣ ΚΑΙ ΣΙΣΥΦΟΣ ς σ Σ.",  # noqa: RUF001
    "chinese": "我能吞下玻璃而不伤身体。中文的标点符号，包括全角逗号、问号？和感叹号！",  # noqa: RUF001
    "japanese": "いろはにほへと ちりぬるを。ｶﾀｶﾅと全角ＡＢＣ１２３、漢字かな交じり文。",
    "code": "def f(x_1, y__2):\n    return {'k': x_1 ** 2 + y__2}  # comment\n\tx->y != z",
}


@needs_native
@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_when_text_of_one_language_is_fingerprinted_then_native_equals_reference(
    language: str,
) -> None:
    text = " ".join(f"{SAMPLES[language]} {i}" for i in range(12))
    native, reference = _both(text)
    assert len(native) >= 2
    assert native.tolist() == reference.tolist()


@needs_native
def test_when_k_grams_repeat_then_native_equals_reference() -> None:
    # equal k-grams tie for the minimum; which one is chosen shows only in positions
    # (the fingerprint set is the set of window minima), so this checks repeats only
    for text in ("a" * (K + 3 * W), "ab" * (K + 2 * W), ("abc " * 200)[: K + W + 7]):
        native, reference = _both(text)
        assert native.tolist() == reference.tolist()
    assert len(_both("a" * (K + 3 * W))[0]) == 1


@needs_native
def test_when_runs_and_periodic_text_sit_among_prose_then_native_equals_reference() -> None:
    # the native core hashes a k-gram equal to the one it selected last only once: runs
    # of one character and patterns of any period (shorter, equal to or longer than K)
    # around ordinary text must still give exactly the reference's set
    prose = "The quarterly shipment from Porto left on time, said the memo. "
    periodic = ["x" * 5000, *(("".join(chr(97 + i % 26) for i in range(p))) * 40 for p in (
        2, 3, 7, K - 1, K, K + 1, 2 * K + 3))]  # fmt: skip
    for part in periodic:
        for text in (part, prose * 3 + part + prose * 3, part + prose + part[::-1]):
            native, reference = _both(text)
            assert native.tolist() == reference.tolist()


@needs_native
@pytest.mark.parametrize(
    "context", ["{}", "a{}b", "e{}\u0301", "{}\u0308x", "\u1100{}\u11a8", "A{}{}Z"]
)
def test_when_each_bmp_character_is_normalized_in_context_then_native_equals_reference(
    context: str,
) -> None:
    assert NATIVE_FP is not None
    text = "\n".join(context.format(chr(c), chr(c)) for c in range(0x10000))
    assert NATIVE_FP.normalized(text) == normalize(text)


@needs_native
def test_when_astral_characters_are_normalized_then_native_equals_reference() -> None:
    assert NATIVE_FP is not None
    planes = [*range(0x10000, 0x20000), *range(0x20000, 0x110000, 97), *range(TAGS_START, 0xE0200)]
    text = " ".join(f"a{chr(c)}b" for c in planes)
    assert NATIVE_FP.normalized(text) == normalize(text)


def test_when_the_tables_assume_where_unicode_has_case_and_invisibles_then_it_holds() -> None:
    # the native maps probe only the planes where these can change anything
    beyond = np.arange(CASED_STOP, 0x110000, dtype=np.uint32)
    text = beyond.tobytes().decode("utf-32-le", "surrogatepass")
    assert text.casefold() == text
    assert strip_invisible(text[: TAGS_START - VISIBLE_FROM]) == text[: TAGS_START - VISIBLE_FROM]
    assert invisible_code_points(TAGS_START + 0x10000, 0x110000) == []
    assert invisible_code_points(VISIBLE_FROM, TAGS_START) == []
    beyond_marked = np.arange(MARKED_STOP, 0x110000, dtype=np.uint32)
    text = beyond_marked.tobytes().decode("utf-32-le", "surrogatepass")
    nfd = unicodedata.normalize("NFD", text)
    assert not any(unicodedata.category(c) in ("Mn", "Me") for c in set(nfd) - set(text))


def test_when_any_character_is_normalized_twice_then_nothing_more_changes() -> None:
    # a look-alike's representative may carry marks (U+0629 goes to o with diaeresis)
    for code in range(MARKED_STOP):
        once = normalize(chr(code))
        assert normalize(once) == once, f"U+{code:04X}"


@pytest.mark.parametrize(
    ("marked", "base"),
    [("é", "e"), ("Ǻ", "A"), ("ё", "е"), ("ά", "α"), ("ώ", "ω"), ("ṩ", "s"), ("й", "и")],  # noqa: RUF001
)
def test_when_a_letter_has_diacritics_then_it_normalizes_as_its_base_letter(
    marked: str, base: str
) -> None:
    assert unmarked_letters()[ord(marked)] == base
    assert normalize(f"x{marked}y") == normalize(f"x{base}y")
    assert normalize(f"x{base}\u0336\u0301\u20dd y") == normalize(f"x{base}y")  # loose marks
    if NATIVE_FP is not None:
        assert NATIVE_FP.normalized(f"x{marked}y") == normalize(f"x{marked}y")


def test_when_the_nfkc_shortcut_replaces_characters_then_nfkc_of_the_text_is_unchanged() -> None:
    # the native core replaces a character by its NFKC form before CPython's NFKC;
    # sequences where composition or reordering crosses the replaced character
    for text in [
        "e\u0301\uff41\u0301",
        "\u1100\u3161",
        "\u00c5\u0327",
        "\ufb01\u0301",
        "\uff76\uff9e",
    ]:
        replaced = "".join(unicodedata.normalize("NFKC", c) for c in text)
        assert unicodedata.normalize("NFKC", replaced) == unicodedata.normalize("NFKC", text)


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=needs_native)])
def test_when_the_key_differs_then_the_fingerprints_are_disjoint(native: bool) -> None:
    text = " ".join(f"word{i} Wörter слово λέξη 単語{i}" for i in range(200))
    one = Fingerprinter(b"a" * 32, native=native).of_text(text)
    same = Fingerprinter(b"a" * 32, native=native).of_text(text)
    other = Fingerprinter(b"b" * 32, native=native).of_text(text)
    assert len(one) > 20
    assert one == same
    assert not one & other


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=needs_native)])
def test_when_fingerprints_are_read_as_an_array_then_it_is_sorted_unique_int64(
    native: bool,
) -> None:
    fp = Fingerprinter(KEY, native=native)
    text = "The same sentence, said twice over and over again, still counts once. " * 30
    array = fp.of_text_array(text)
    assert array.dtype == np.int64
    assert array.tolist() == sorted(set(array.tolist()))
    assert set(array.tolist()) == fp.of_text(text)
    array[:1] = 0  # a fresh, writable array
    assert fp.of_text_array("").tolist() == []


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=needs_native)])
def test_when_a_fingerprinter_is_pickled_then_the_copy_gives_the_same_fingerprints(
    native: bool,
) -> None:
    fp = Fingerprinter(KEY, native=native)
    copy = pickle.loads(pickle.dumps(fp))
    text = SAMPLES["german"] * 3
    assert copy.native == native
    assert copy.of_text(text) == fp.of_text(text) != set()
