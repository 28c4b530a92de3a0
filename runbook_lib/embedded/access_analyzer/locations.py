"""Where each element of a JSON policy document stands in its text, for the locations of findings.

A finding's location names a path into the policy (`Statement`, index 1, `Action`, index 0) and
the span of text it covers, from a start to an end position (line, column, offset). Python's
json module keeps no positions, so `spans` reads a document that json has already accepted and
records, for every value, where it starts and ends, and for every object key where the key is.

| topic | choice (AWS does not document it) |
|---|---|
| line | counted from 1 |
| column, offset | counted from 0, in characters |
| end | the position just after the element's last character |
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Path", "Span", "position", "spans"]

# A path into a JSON document: object keys (str) and array indexes (int).
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Span:
    """The text of one element: from `start` to `end` (offsets into the document)."""

    start: int
    end: int


_WHITESPACE = " \t\n\r"


class _Reader:
    """Walks a document json accepted, recording the span of each value and each key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.values: dict[Path, Span] = {}
        self.keys: dict[Path, Span] = {}

    def skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in _WHITESPACE:
            self.at += 1

    def value(self, path: Path) -> None:
        self.skip()
        start = self.at
        char = self.text[self.at]
        if char == "{":
            self.members(path)
        elif char == "[":
            self.items(path)
        elif char == '"':
            self.string()
        else:
            while self.at < len(self.text) and self.text[self.at] not in ",]}" + _WHITESPACE:
                self.at += 1
        self.values[path] = Span(start, self.at)

    def string(self) -> str:
        start = self.at
        self.at += 1
        while self.text[self.at] != '"':
            self.at += 2 if self.text[self.at] == "\\" else 1
        self.at += 1
        return str(json.loads(self.text[start:self.at]))

    def members(self, path: Path) -> None:
        self.at += 1  # {
        self.skip()
        if self.text[self.at] == "}":
            self.at += 1
            return
        while True:
            self.skip()
            key_start = self.at
            key = self.string()
            self.keys[(*path, key)] = Span(key_start, self.at)
            self.skip()
            self.at += 1  # :
            self.value((*path, key))
            self.skip()
            separator = self.text[self.at]
            self.at += 1
            if separator == "}":
                return

    def items(self, path: Path) -> None:
        self.at += 1  # [
        self.skip()
        if self.text[self.at] == "]":
            self.at += 1
            return
        index = 0
        while True:
            self.value((*path, index))
            self.skip()
            separator = self.text[self.at]
            self.at += 1
            if separator == "]":
                return
            index += 1


def spans(text: str) -> tuple[dict[Path, Span], dict[Path, Span]]:
    """Return the span of every value and of every object key of a valid JSON document, by path."""
    reader = _Reader(text)
    reader.value(())
    return reader.values, reader.keys


def position(text: str, offset: int) -> dict[str, int]:
    """Return the line (from 1), column and offset (from 0) of an offset into the text."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return {"line": line, "column": column, "offset": offset}
