"""Text normalisation shared by the answer detectors: see through what hides text from a pattern.

An answer that addresses the judge rarely says so plainly twice: the same words come with
zero-width characters between the letters, Cyrillic or Greek letters that look Latin,
fullwidth forms, or bidi controls that show the text in another order than it is stored.
Detectors therefore match two views of an answer:

- ``plain``: invisible characters removed (Unicode tag characters decoded to the ASCII they
  smuggle), NFKC (fullwidth and mathematical letters become ASCII), casefolded. Patterns in
  non-Latin scripts (Russian, Chinese, Japanese) are matched here.
- ``fold``: ``plain`` with diacritics dropped and cross-script lookalikes mapped to the
  Latin letter they imitate. English and Latin-script patterns are matched here.

``visible_controls`` is the other half: it shows each invisible character as ``<U+XXXX>`` so
that a judge (or a person reading a report) sees that it is there.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

# Cross-script lookalikes NFKC leaves alone, in lower case (folding happens after casefold,
# so each upper-case lookalike reaches this table as its lower-case letter). The table only
# needs the letters that spell the words an attack uses ("ignore", "previous", "output",
# "verdict", role and fence words): the common Cyrillic and Greek lookalikes of the Latin
# alphabet, as listed in Unicode's confusables.txt. Fullwidth and mathematical letters need
# no entry: NFKC already maps them to ASCII.
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b", "г": "r",
    # Greek (upper-case Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ casefold to these)
    "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k", "μ": "m",
    "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ς": "s", "ϲ": "c",
    # Latin letters that pass for others
    "ı": "i", "ȷ": "j", "ɡ": "g", "ɑ": "a", "ʟ": "l",
}
_FOLD_TABLE = str.maketrans(_CONFUSABLES)

# Invisible characters that are not in category Cf (format) but render as nothing: the
# combining grapheme joiner, Hangul fillers, the Braille blank and variation selectors 17-256
# (used to smuggle bytes after an emoji). Variation selectors 1-16 stay: emoji need them.
_INVISIBLE_NON_CF = frozenset(
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, *range(0xE0100, 0xE01F0)])
_JOINERS = frozenset({"\u200c", "\u200d"})
_TAGS = range(0xE0020, 0xE007F)
"""Unicode tag characters that mirror printable ASCII (U+E0020-U+E007E)."""

_WORD = re.compile(r"[^\W_]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_ASCII_WORD_ANY = re.compile(r"[A-Za-z0-9]+")
_CHUNK = re.compile(r"\S+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class Hidden(NamedTuple):
    """An invisible character and where it is."""

    position: int
    """Its index in the text (a ``str`` index)."""
    char: str
    """The character itself."""


class Neutralised(NamedTuple):
    """A text with its invisible characters shown as escapes."""

    text: str
    """The text, each invisible character replaced by ``<U+XXXX>``."""
    replaced: int
    """How many characters were replaced (0: the text is unchanged)."""


def _is_invisible(text: str, i: int) -> bool:
    char = text[i]
    code = ord(char)
    if code in _INVISIBLE_NON_CF:
        return True
    if unicodedata.category(char) != "Cf":
        return False
    if char in _JOINERS:
        # ZWJ/ZWNJ between two non-ASCII letters or symbols is how emoji sequences, Persian
        # and Indic scripts are written; only joiners next to ASCII (hiding English words)
        # or at the text's edge count.
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        return not (before > "\x7f" and after > "\x7f")
    return True


def invisible_characters(text: str) -> list[Hidden]:
    """Every invisible or direction-control character in ``text``, with its position.

    Counted: zero-width characters, bidi embeddings/overrides/isolates (U+202A-202E,
    U+2066-2069), marks U+200E/F and U+061C, the BOM, soft hyphens, tag characters (U+E0000
    block) and every other format (Cf) character; joiners inside emoji or Persian/Indic
    words are not.

    >>> invisible_characters("ok\\u200bay")
    [Hidden(position=2, char='\\u200b')]
    >>> invisible_characters("plain text, caf\\u00e9, \\u00bfs\\u00ed?")
    []
    """
    if text.isascii():
        return []
    return [Hidden(m.start(), m.group()) for m in _NON_ASCII.finditer(text)
            if _is_invisible(text, m.start())]


def visible_controls(text: str) -> Neutralised:
    """``text`` with every invisible character shown as ``<U+XXXX>``, and how many there were.

    A judge shown the escaped text sees that something was hidden, and a reversed (bidi
    override) instruction reads as what it is: stored text, not displayed text.

    >>> visible_controls("a\\u202eb")
    Neutralised(text='a<U+202E>b', replaced=1)
    >>> visible_controls("nothing hidden")
    Neutralised(text='nothing hidden', replaced=0)
    """
    hidden = invisible_characters(text)
    if not hidden:
        return Neutralised(text, 0)
    parts: list[str] = []
    last = 0
    for index, char in hidden:
        parts.append(text[last:index])
        parts.append(f"<U+{ord(char):04X}>")
        last = index + 1
    parts.append(text[last:])
    return Neutralised("".join(parts), len(hidden))


def reveal(text: str) -> str:
    """``text`` without its invisible characters; tag characters become the ASCII they carry.

    >>> reveal("ig\\u200bnore")
    'ignore'
    >>> reveal("x" + "".join(chr(0xE0000 + ord(c)) for c in "hi"))
    'x hi'
    """
    hidden = invisible_characters(text)
    if not hidden:
        return text
    chars = list(text)
    smuggled = False
    for index, char in hidden:
        if ord(char) in _TAGS:
            # A space before the first smuggled letter keeps it from gluing onto a word.
            chars[index] = ("" if smuggled else " ") + chr(ord(char) - 0xE0000)
            smuggled = True
        else:
            chars[index] = ""
    return "".join(chars)


def plain(text: str) -> str:
    """Invisible characters removed, NFKC, casefolded.

    >>> plain("\\uff29gnore \\u200bTHIS")
    'ignore this'
    """
    return unicodedata.normalize("NFKC", reveal(text)).casefold()


def fold(text: str) -> str:
    """``plain`` with diacritics dropped and Cyrillic/Greek lookalikes mapped to Latin.

    >>> fold("\\u0406gn\\u043er\\u0435 pr\\u00e9vious")
    'ignore previous'
    >>> fold("[[\\u0391>>\\u0392]]")
    '[[a>>b]]'
    """
    decomposed = unicodedata.normalize("NFKD", plain(text))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", bare.translate(_FOLD_TABLE))


class Token(NamedTuple):
    """One word of a text, folded, and where its chunk of the original text lies."""

    word: str
    """The folded word (letters and digits only)."""
    start: int
    """Index of the chunk's first character in the original text."""
    end: int
    """Index just past the chunk's last character."""


def _chunk_words(chunk: str) -> list[str]:
    if chunk.isascii():
        return _ASCII_WORD.findall(chunk.lower())
    return _WORD.findall(fold(chunk))


def tokens(text: str) -> list[Token]:
    """The words of ``text``, folded, with their positions in the original text.

    Words are runs of letters and digits, found after invisible characters are removed, so
    a zero-width character inside a word does not split it ("ig<U+200B>nore" is "ignore").
    A word outside plain ASCII carries the span of its whitespace-separated chunk.

    >>> [t.word for t in tokens("Ig\\u200bnore  the PR\\u0415VIOUS, please.")]
    ['ignore', 'the', 'previous', 'please']
    >>> tokens("a, b")[1]
    Token(word='b', start=3, end=4)
    """
    if text.isascii():
        return [Token(m.group().lower(), m.start(), m.end())
                for m in _ASCII_WORD_ANY.finditer(text)]
    return [Token(word, m.start(), m.end()) for m in _CHUNK.finditer(text)
            for word in _chunk_words(m.group())]


def words(text: str) -> list[str]:
    """The folded words of ``text`` (letters and digits; punctuation dropped).

    >>> words("Paris, \\u0441ity of LIGHT!")
    ['paris', 'city', 'of', 'light']
    """
    if text.isascii():  # the common case, in one pass of ``re``
        return _ASCII_WORD.findall(text.lower())
    return [word for m in _CHUNK.finditer(text) for word in _chunk_words(m.group())]


def normalised(text: str) -> str:
    """The folded words joined by single spaces: equal for answers that differ only in case,
    spacing, punctuation, invisible characters or lookalike letters.

    >>> normalised("Paris.\\n") == normalised("  paris ")
    True
    """
    return " ".join(words(text))


def shingles(tokens: list[str], size: int) -> set[str]:
    """Every run of ``size`` consecutive tokens, joined by spaces (a text shorter than
    ``size`` gives one shingle of all its tokens, so short texts still compare).

    >>> sorted(shingles(["a", "b", "c"], 2))
    ['a b', 'b c']
    >>> shingles(["a"], 3)
    {'a'}
    """
    if not tokens:
        return set()
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}
