"""NATS subject names: the token a name becomes in a subject, and whether a stream's subject filter takes
the subjects a sink publishes. The config checks them (load.py); the NATS sink uses them."""

from __future__ import annotations

# Characters a NATS subject token cannot hold: "." separates tokens, "*" and ">" are wildcards,
# whitespace ends the subject in the protocol.
_NOT_IN_A_TOKEN = frozenset(".*> \t\r\n")


def subject_token(text: str) -> str:
    """``text`` as one subject token: ``.``, ``*``, ``>`` and whitespace become ``_``."""
    return "".join("_" if c in _NOT_IN_A_TOKEN else c for c in text)


def is_token(text: str) -> bool:
    return bool(text) and not _NOT_IN_A_TOKEN.intersection(text)


def is_subject(text: str, wildcards: bool = True) -> bool:
    """A well-formed subject (or, with ``wildcards``, a filter): non-empty tokens, ``>`` only last."""
    tokens = text.split(".")
    for index, token in enumerate(tokens):
        if wildcards and (token == "*" or (token == ">" and index == len(tokens) - 1)):
            continue
        if not is_token(token):
            return False
    return True


def covers(filter_subject: str, pattern: str) -> bool:
    """Whether every subject that ``pattern`` (which may hold ``*`` and a final ``>``) matches is taken by
    ``filter_subject``, a stream's subject filter."""
    wanted, taken = pattern.split("."), filter_subject.split(".")
    for index, token in enumerate(taken):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted) or wanted[index] == ">":
            return False
        if token != "*" and token != wanted[index]:
            return False
    return len(wanted) == len(taken)
