"""Native core of :mod:`kairo_guard.detect.winnow` (``_winnow.c``)."""

K: int
W: int
VERSION: int

def tables(
    fold_keys: bytes,
    fold_offsets: bytes,
    fold_values: bytes,
    prepare_keys: bytes,
    prepare_offsets: bytes,
    prepare_values: bytes,
    /,
) -> object: ...
def prepare(tables: object, text: str, /) -> str: ...
def fingerprints(tables: object, text: str, key: bytes, /) -> bytes: ...
def siphash24(key: bytes, message: bytes, /) -> int: ...
def normalized(tables: object, text: str, /) -> str: ...
def in_latin_words(
    text: str, is_look_alike: bytes, prototype_of: bytes, in_word: bytes, /
) -> str: ...
