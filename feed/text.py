"""Rules for user-written text (posts, comments) and @mentions, shared by forms, API and models.

One place decides what a valid text is and what the error says, so the page and the API agree.
"""
import re

from django.core.exceptions import ValidationError
from django.utils.text import normalize_newlines

MAX_TEXT_LENGTH = 2000
MAX_ALT_LENGTH = 1000  # a picture's description (alt text)
USERNAME_MAX_LENGTH = 30
USERNAME_PATTERN = r"[A-Za-z0-9_]{1,30}"
# An @ that is not glued to a word or another @ (so e-mail addresses are not mentions).
MENTION_RE = re.compile(r"(?<![\w@])@(" + USERNAME_PATTERN + r")(?![\w])")


def clean_text(value: str | None, *, what: str = "Text") -> str:
    """Return the stripped text with "\n" line breaks (browsers send a textarea's as CRLF, and
    count each as one character), or raise ValidationError with a sentence a person understands."""
    text = normalize_newlines(value or "").strip()
    if not text:
        raise ValidationError(f"{what} cannot be empty.", code="blank")
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError(
            f"{what} is too long: {len(text)} characters, the limit is {MAX_TEXT_LENGTH}.",
            code="max_length",
        )
    return text


def validate_text(value: str) -> None:
    """Model-field validator form of clean_text (the stored text must already be stripped)."""
    if normalize_newlines(value) != clean_text(value):
        raise ValidationError("Text must not start or end with whitespace.", code="unstripped")


def mentioned_usernames(text: str) -> list[str]:
    """Usernames mentioned in text, lower-cased, each once, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen.setdefault(match.group(1).lower(), None)
    return list(seen)


def excerpt(text: str, limit: int = 80) -> str:
    """A one-line preview for notification summaries."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


# --- links --------------------------------------------------------------------------------------
# The rule notifier/static/notifier/live.js follows for live comments, token for token (the
# browser test compares both renderings). Only http(s) URLs and bare "www." hosts become links, so
# "javascript:", "data:" and friends stay text whatever their case or the tabs inside them. Every
# pattern here matches at one place without backtracking across the text, so the scan is linear.

# ASCII letters spelled out: re.IGNORECASE would also take "ſ" (long s) for "s".
URL_START_RE = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.")
# A URL runs until a space, a control, a bidi or invisible format character, or a character that
# ends a URL in prose or in HTML (<>"'`) or that browsers read as a path separator (\).
URL_BODY_RE = re.compile(
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u2069\\u3000\\ufeff"
    "<>\"'`\\\\]*"
)
# A URL glued to a word, an e-mail address, a path or a query is part of that, not a link.
URL_NOT_AFTER_RE = re.compile(r"[\w@.\-/:+%&=~]")
URL_TRAILING = ".,;:!?"
URL_HOST_END_RE = re.compile(r"[/?#]")
HAS_ALNUM_RE = re.compile(r"[^\W_]")
# Characters an href keeps as they are; everything else is percent-encoded as UTF-8.
HREF_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&()*+,;=")
HEX = frozenset("0123456789abcdefABCDEF")


def _trim(url: str) -> str:
    """url without trailing prose punctuation, and without a ")" that no "(" in it opens."""
    opened, closed = url.count("("), url.count(")")
    end = len(url)
    while end:
        last = url[end - 1]
        if last in URL_TRAILING:
            end -= 1
        elif last == ")" and closed > opened:
            closed -= 1
            end -= 1
        else:
            break
    return url[:end]


def link_href(url: str) -> str:
    """The href for a URL as written: "www." gets https://, the scheme is lower-cased, and any
    character outside the URL-safe set (a non-ASCII host or path, a stray "%") is percent-encoded."""
    scheme_end = url.find("://")
    if scheme_end >= 0:
        url = url[:scheme_end].lower() + url[scheme_end:]
    else:
        url = "https://" + url
    out = []
    for i, char in enumerate(url):
        if char in HREF_SAFE:
            out.append(char)
        elif char == "%" and len(url) > i + 2 and url[i + 1] in HEX and url[i + 2] in HEX:
            out.append(char)
        else:
            # A lone surrogate cannot be UTF-8: it becomes "?" (%3F), as in live.js.
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "replace"))
    return "".join(out)


def find_links(text: str) -> list[tuple[int, int]]:
    """(start, end) of each URL in text that becomes a link, in order, never overlapping."""
    spans = []
    pos = 0
    for match in URL_START_RE.finditer(text):
        start = match.start()
        if start < pos or (start and URL_NOT_AFTER_RE.match(text, start - 1)):
            continue
        body_end = URL_BODY_RE.match(text, match.end()).end()
        pos = body_end  # the rest of this run is never looked at again: linear in the text
        url = _trim(text[start:body_end])
        rest = url[match.end() - start:]  # the host and what follows
        cut = URL_HOST_END_RE.search(rest)
        host = rest[: cut.start()] if cut else rest
        if "@" in host or not HAS_ALNUM_RE.search(host):
            continue  # a user name in the host hides where the link goes; no host, no link
        spans.append((start, start + len(url)))
    return spans
