"""Rules for user-written text (posts, comments) and @mentions, shared by forms, API and models.

One place decides what a valid text is and what the error says, so the page and the API agree.
"""
import re

from django.core.exceptions import ValidationError
from django.utils.text import normalize_newlines

MAX_TEXT_LENGTH = 2000
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
