"""Streaming readers for operators' exports: CSV (any common dialect) and XLSX.

``open_table(path)`` is a context manager yielding a ``Table``: the header (first
non-blank row) and an iterator over the data rows as lists of strings. Memory stays
flat: CSV is decoded and parsed line by line, XLSX is read with openpyxl's read-only
mode. Anything unusable raises ``UnreadableInput`` with a one-line message that never
quotes the file's contents.

Encoding is decided before the first row is returned, by validating the whole file
once: a BOM decides; otherwise a file that is valid UTF-8 is UTF-8 and anything else
is read as Windows-1252 (what Excel writes on Dutch Windows). A Windows-1252 file with
é/ë/ï is never valid UTF-8, so the choice cannot produce mojibake for such text.

The same pass notes whether the file holds a double quote at all (or a line longer than
csv's field limit). Most exports do not, and for those each line is split at the
delimiter, which gives exactly the rows the csv module would (it only does more for
quoted fields) in two thirds of the time.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import warnings
from collections.abc import Generator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from exchanged.errors import OperatorInputError

__all__ = ["Table", "UnreadableInput", "open_table"]

_CHUNK = 1 << 16
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the old binary .xls format
_DELIMITERS = (";", ",", "\t")
# A header longer than this is not a header: stop looking for the line end.
_HEADER_PROBE = 1 << 20


class UnreadableInput(OperatorInputError):
    """The file is no CSV/XLSX export we can read; the message says why in one line."""


@dataclass(slots=True)
class Table:
    header: list[str]
    rows: Iterator[list[str]]


def _decodes(path: Path, encoding: str) -> tuple[bool, bool]:
    """Whether the whole file decodes (binary data is refused outright), and whether it
    is plain: no double quote and no line longer than csv's field limit, so that a line
    split at the delimiter is exactly csv's row. Only in UTF-8 and Windows-1252 is the
    byte 0x22 always the quote; a UTF-16 file is not looked into."""
    decoder = codecs.getincrementaldecoder(encoding)()
    utf16 = encoding.startswith("utf-16")
    limit = csv.field_size_limit()
    plain = not utf16 and limit >= _CHUNK  # then no line within one chunk is too long
    run = 0  # bytes since the last line feed
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(_CHUNK):
                if not utf16 and b"\x00" in chunk:
                    raise UnreadableInput("the file holds binary data: it is not a CSV export")
                if plain:
                    first = chunk.find(b"\n")
                    if first < 0:
                        run += len(chunk)
                    else:
                        plain = run + first <= limit
                        run = len(chunk) - 1 - chunk.rfind(b"\n")
                    plain = plain and run <= limit and b'"' not in chunk
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False, False
    return True, plain


def _sniff_encoding(path: Path) -> tuple[str, bool]:
    """The file's encoding, and whether it is plain (see ``_decodes``)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(codecs.BOM_UTF8):
        decodes, plain = _decodes(path, "utf-8-sig")
        if decodes:
            return "utf-8-sig", plain
        raise UnreadableInput("the file starts as UTF-8 but is not valid UTF-8")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export.
        if _decodes(path, "utf-16")[0]:
            return "utf-16", False
        raise UnreadableInput("the file starts as UTF-16 but is not valid UTF-16")
    for encoding in ("utf-8", "cp1252"):
        decodes, plain = _decodes(path, encoding)
        if decodes:
            return encoding, plain
    raise UnreadableInput("the file is neither UTF-8 nor Windows-1252 text: save it as CSV (UTF-8)")


def _pick_delimiter(line: str) -> str:
    """The delimiter that splits the header most often, counted outside quotes."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    if not any(counts.values()):
        # One column: split on nothing, so a ';' or ',' inside a value stays in it. NUL
        # cannot occur in a file that got this far (such files are refused).
        return "\0"
    # On a tie the Dutch Excel default wins.
    return max(_DELIMITERS, key=lambda d: counts[d])


def _first_line(path: Path, encoding: str) -> str:
    with path.open(encoding=encoding, newline="") as handle:
        probe = handle.read(_HEADER_PROBE)
    for line in probe.splitlines():
        if line.strip(" \t;,\"'"):
            return line
    return ""


def _rows(
    path: Path, encoding: str, delimiter: str, *, plain: bool
) -> Generator[list[str], None, None]:
    return (_split_rows if plain else _csv_rows)(path, encoding, delimiter)


def _csv_rows(path: Path, encoding: str, delimiter: str) -> Generator[list[str], None, None]:
    # csv's own field limit (128 KiB) bounds what a runaway quote can buffer; it is
    # process-wide state, so it is left as it is rather than tuned here.
    with path.open(encoding=encoding, newline="", errors="strict") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quotechar='"', strict=False)
        try:
            yield from reader
        except csv.Error:
            raise UnreadableInput(
                f"the CSV file is malformed near line {reader.line_num} "
                "(an unclosed quote or an over-long field)"
            ) from None
        except UnicodeDecodeError:
            raise UnreadableInput("the file's text encoding is damaged") from None


def _split_rows(path: Path, encoding: str, delimiter: str) -> Generator[list[str], None, None]:
    """The rows of a plain file (see ``_decodes``) as csv.reader gives them: each line
    (which newline="" ends at a line feed, a carriage return or both) split at the
    delimiter, and an empty line as []."""
    with path.open(encoding=encoding, newline="", errors="strict") as handle:
        try:
            for line in handle:
                text = line.rstrip("\r\n")
                yield text.split(delimiter) if text else []
        except UnicodeDecodeError:
            raise UnreadableInput("the file's text encoding is damaged") from None


def _split_header(rows: Iterator[list[str]]) -> Table:
    for row in rows:
        if any(cell.strip() for cell in row):
            header = [cell.strip().lstrip("\ufeff") for cell in row]
            return Table(header=header, rows=rows)
    raise UnreadableInput("the file holds no header row and no data")


@contextmanager
def _open_csv(path: Path) -> Iterator[Table]:
    encoding, plain = _sniff_encoding(path)
    line = _first_line(path, encoding)
    if not line:
        raise UnreadableInput("the file is empty")
    hint = line.strip().lower()
    # Excel writes "sep=;" as a first line when asked to keep the delimiter explicit.
    if len(hint) == 5 and hint.startswith("sep="):
        rows = _rows(path, encoding, hint[4], plain=plain)
        next(rows, None)
    else:
        rows = _rows(path, encoding, _pick_delimiter(line), plain=plain)
    try:
        yield _split_header(rows)
    finally:
        rows.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        # Excel stores dates as date-times at midnight; the time adds nothing here.
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a BSN or house number typed as a number
    return str(value)


@contextmanager
def _open_xlsx(path: Path) -> Iterator[Table]:
    import openpyxl  # lazy: CSV-only paths and the core never pay for it

    # openpyxl warns about styles and data validation it ignores; operators only
    # need the cells, and a warning on stderr would break the one-line error rule.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")

    # A file handle, not the path: openpyxl judges a path by its extension, and an
    # operator's ".csv" that is really a workbook should still be read.
    handle = path.open("rb")
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - openpyxl raises anything for a damaged file
        handle.close()
        raise UnreadableInput("the file is not a readable XLSX workbook") from None
    try:
        if not workbook.worksheets:
            raise UnreadableInput("the workbook has no worksheets")
        sheet = workbook.worksheets[0]

        def rows() -> Iterator[list[str]]:
            try:
                for values in sheet.iter_rows(values_only=True):
                    yield [_cell_text(v) for v in values]
            except Exception:  # noqa: BLE001 - damage may only show while streaming
                raise UnreadableInput("the XLSX workbook is damaged") from None

        yield _split_header(rows())
    finally:
        workbook.close()
        handle.close()


@contextmanager
def open_table(path: Path) -> Iterator[Table]:
    """Open an export by its contents (not its name): XLSX or CSV."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(8)
    except IsADirectoryError:
        raise UnreadableInput("this is a folder, not a file") from None
    except OSError as exc:
        raise UnreadableInput(f"cannot open the file: {exc.strerror or 'unknown error'}") from None
    if magic.startswith(_OLE_MAGIC):
        raise UnreadableInput("old Excel (.xls) files are not supported: save as .xlsx or CSV")
    opener = _open_xlsx if magic.startswith(_ZIP_MAGIC) else _open_csv
    with ExitStack() as stack:
        try:
            table = stack.enter_context(opener(path))
        except OSError as exc:
            problem = exc.strerror or "unknown error"
            raise UnreadableInput(f"cannot read the file: {problem}") from None
        yield table
