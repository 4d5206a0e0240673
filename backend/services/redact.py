"""Credentials out of camera URLs and of any text that may quote one (PyAV's and FFmpeg's error
messages name the URL they opened): every API response and log line goes through here."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
# query parameters that carry a secret in camera URLs (tokens, keys, passwords)
SECRET_PARAMS = re.compile(r"(pass|pwd|token|key|secret|auth|sig)", re.IGNORECASE)
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact(url: str) -> str:
    """The URL with its user info and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with every URL in it redacted, and each of ``secrets`` (a URL's password and user,
    raw and percent-encoded) replaced by ``***`` wherever else it appears."""
    out = URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), unquote(secret)}:
                if len(form) >= 3:
                    out = out.replace(form, HIDDEN)
    return out


def url_secrets(url: str) -> tuple[str | None, ...]:
    """The user name and password of ``url`` (either may be None)."""
    try:
        parts = urlsplit(url)
        return parts.username, parts.password
    except ValueError:
        return (None, None)
