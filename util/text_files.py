"""Reading the text files users hand us (CSV, LST, JSON): BOM-tolerant, encoding-checked, one clear error.

Excel saves CSVs with a UTF-8 byte-order mark, and "Unicode text" as UTF-16 with one; both are read. Any
other file must be UTF-8: a stray byte (Latin-1, Windows-1252) is one InputError naming the file, the line
and the byte, instead of a UnicodeDecodeError traceback that names nothing.
"""
from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

from util.io import InputError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: it also breaks at \x1c, \x85, \u2028, ...


def read_text(path: str | os.PathLike) -> str:
    """The whole file as text, its byte-order mark removed; InputError naming the file and line otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")  # the BOM tells the byte order and is dropped
        except UnicodeDecodeError:
            raise InputError(f"{path}: not valid UTF-16 text despite its byte-order mark; save it as UTF-8") \
                from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(_encoding_problem(path, data, exc.start)) from None


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The file's lines without their line breaks (\\n, \\r\\n or \\r); line 1 is the first line."""
    lines = _LINE_BREAK.split(read_text(path))
    if lines and lines[-1] == "":
        lines.pop()  # the break that ends the last line does not start another
    return lines


def _encoding_problem(path: Path, data: bytes, start: int) -> str:
    before = data[:start].decode("utf-8-sig")  # valid up to the bad byte
    line = len(_LINE_BREAK.findall(before)) + 1
    column = len(_LINE_BREAK.split(before)[-1]) + 1
    return (f"{path}: line {line}, column {column}: byte 0x{data[start]:02x} is not UTF-8 text (Latin-1 or "
            "Windows-1252?); save the file as UTF-8")
