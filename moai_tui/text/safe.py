"""Untrusted text made safe for a terminal, and measured the way a terminal draws it.

Commands, user names, node and model labels come from psutil, Prometheus or a recording: any
of them may hold an escape sequence (`ESC[2J` blanks the screen), a line break, a bidi override
or a surrogate from undecodable bytes. `printable` shows those as visible escapes and keeps all
other Unicode; `cell_width` counts the cells a terminal gives the result (wide CJK 2, combining
marks 0). No rich, no textual: `smi` imports this.
"""

from __future__ import annotations

import re

# C0, DEL and C1 controls; line and paragraph separators; bidi embeddings, overrides and
# isolates (they reorder the rest of a line on screen); lone surrogates (undecodable bytes kept
# by surrogateescape, which no UTF-8 stream can even encode).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the raw byte it stands for
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as a visible escape (ESC -> `\\x1b`, newline
    -> `\\n`, U+202E -> `\\u202e`); printable Unicode, backslashes included, left as it is.

    Idempotent (the escapes are printable themselves), so text escaped once, saved in a
    `--json` document and read back, is shown the same."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def _char_width(char: str, unicodedata) -> int:
    if char != "\xad" and (  # the soft hyphen is drawn, one cell
        unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf")
    ):
        return 0
    if "\u1160" <= char <= "\u11ff":  # Hangul medial vowels and final consonants join
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Terminal cells `printable` text occupies: East Asian wide and fullwidth characters take
    two, combining and format characters none."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for non-ASCII text: plain tables never pay for it

    return sum(_char_width(char, unicodedata) for char in text)
