"""Hostname normalisation (docs/proxy.md §2): one function turns a rule or a requested name into the
ASCII form we compare, so a rule and a request can never disagree about spelling.

Steps, in order:

1. strip surrounding whitespace; refuse input over ``MAX_RAW`` characters (bounded work);
2. non-ASCII input gets the UTS 46 mapping (non-transitional, STD3 rules off so ``_`` and ``*``
   survive): case folding, full-width forms, ideographic full stops, ignorable characters;
3. ASCII lower case; one trailing dot removed;
4. each non-ASCII label becomes its A-label (``xn--...``) under IDNA 2008 (``idna.alabel``);
   ASCII labels are kept as they are (``xn--`` labels are compared, not decoded);
5. validation: labels of 1..63 characters from ``[a-z0-9_-]``, the name at most 253 characters.

Anything that fails raises ``ValueError`` naming the fault; a request with such a name is
answered 400. The output is a fixed point: normalising it again returns it unchanged.

``normalise_pattern`` is the same for allow/block entries that may hold ``*``: a label holding
``*`` must be ASCII, and its literal characters count towards the label length.
"""

from __future__ import annotations

import re

import idna

MAX_NAME = 253
MAX_LABEL = 63
MAX_RAW = 1024  # UTS 46 may drop ignorable characters, so allow some slack before mapping

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PATTERN_CHARS = _NAME_CHARS | {"*"}
# Fast path for the common valid ASCII name; linear, as every repetition starts at a dot.
_VALID_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def fold_name(raw: str) -> str:
    """Steps 1-3: the spelling a name is compared in, before labels are validated.

    Used by ``addr.parse_ip_literal`` too, so ``127.0.0.1`` spelled in full-width digits and dots
    is seen as the IP literal a client library would make of it.
    """
    name = raw.strip()
    if len(name) > MAX_RAW:
        raise ValueError(f"name of {len(name)} characters is over {MAX_RAW}")
    if not name.isascii():
        try:
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise ValueError(f"{raw!r} is not a valid internationalised name: {exc}") from exc
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    return name


def normalise_name(raw: str) -> str:
    """The ASCII form of a hostname, or ``ValueError`` if it is not a valid hostname."""
    return _normalise(raw, wildcard=False)


def normalise_pattern(raw: str) -> str:
    """Like ``normalise_name`` for a domain entry that may contain ``*`` inside labels."""
    return _normalise(raw, wildcard=True)


def _normalise(raw: str, *, wildcard: bool) -> str:
    name = fold_name(raw)
    if not wildcard and len(name) <= MAX_NAME and _VALID_NAME.fullmatch(name):
        return name
    if not name:
        raise ValueError("empty name")
    labels = name.split(".")
    if name.isascii():
        for label in labels:
            _check_ascii_label(label, name, wildcard=wildcard)
    else:
        labels = [_ascii_label(label, name, wildcard=wildcard) for label in labels]
        name = ".".join(labels)
    if len(name) > MAX_NAME:
        raise ValueError(f"name of {len(name)} characters is over {MAX_NAME}")
    return name


def _ascii_label(label: str, name: str, *, wildcard: bool) -> str:
    if label.isascii():
        _check_ascii_label(label, name, wildcard=wildcard)
        return label
    if wildcard and "*" in label:
        raise ValueError(f"label {label!r} mixes '*' with non-ASCII characters")
    try:
        alabel = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"label {label!r} is not a valid internationalised label: {exc}") from exc
    _check_ascii_label(alabel, name, wildcard=False)
    return alabel


def _check_ascii_label(label: str, name: str, *, wildcard: bool) -> None:
    if not label:
        raise ValueError(f"empty label in {name!r}")
    allowed = _PATTERN_CHARS if wildcard else _NAME_CHARS
    if not allowed.issuperset(label):
        bad = next(c for c in label if c not in allowed)
        raise ValueError(f"character {bad!r} is not allowed in a hostname ({name!r})")
    literal = len(label) - label.count("*") if wildcard else len(label)
    if literal > MAX_LABEL:
        raise ValueError(f"label {label[:20]!r}... of {literal} characters is over {MAX_LABEL}")
