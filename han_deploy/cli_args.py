"""argparse value types shared by the command-line tools, so every CLI rejects bad values the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def positive_int_list(what: str) -> Callable[[str], list[int]]:
    """``"1,8,32"`` -> [1, 8, 32] (duplicates dropped); anything else is an argparse error naming the bad item."""

    def parse(text: str) -> list[int]:
        out = []
        for item in (t.strip() for t in text.split(",")):
            try:
                value = int(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{what} must be positive integers, got {item!r}") from None
            if value < 1:
                raise argparse.ArgumentTypeError(f"{what} must be positive integers, got {value}")
            out.append(value)
        return list(dict.fromkeys(out))

    return parse


def choice_list(choices: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    """``"a,b"`` -> ["a", "b"] when every item is one of ``choices`` (case-insensitive, duplicates dropped)."""

    def parse(text: str) -> list[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(choices)}")
        return list(dict.fromkeys(items))

    return parse


def positive_number(kind: type, what: str, allow_zero: bool = False) -> Callable[[str], Any]:
    """A number of type ``kind`` that is > 0 (or >= 0 with ``allow_zero``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {text}")
        return value

    return parse
