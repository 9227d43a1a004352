"""Names: which dropped files are picked up, and how a name is made safe for our folders."""

from __future__ import annotations

import re

IGNORED_PREFIXES = (".", "~")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")
DONE_SUFFIX = ".done"
NAME_MAX = 255
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def is_candidate_name(name: str, done_marker: bool) -> bool:
    """Whether a name may be picked up: temp and hidden names never are."""
    if name.startswith(IGNORED_PREFIXES) or name.lower().endswith(IGNORED_SUFFIXES):
        return False
    return not (done_marker and name.endswith(DONE_SUFFIX))


def safe_stem(name: str, reserve: int = 0) -> str:
    """A name fit for a folder of ours: no control characters or slashes, not hidden, not
    an option, and short enough to leave ``reserve`` bytes for a suffix within NAME_MAX."""
    stem = _UNSAFE_NAME.sub("_", name).lstrip(".-") or "file"
    room = NAME_MAX - reserve
    encoded = stem.encode()
    if len(encoded) > room:
        stem = encoded[:room].decode("utf-8", errors="ignore")
    return stem
