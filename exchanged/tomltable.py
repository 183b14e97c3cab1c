"""A TOML table that remembers which keys were read, so that leftovers are errors.

Every error names the file and the dotted key (``partner.passendwijs.sftp.port``) and
says what is wrong; the configuration loader is built from these few typed readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from exchanged.errors import ConfigError

__all__ = ["REQUIRED", "TomlTable"]

REQUIRED: Final = object()


class TomlTable:
    """A TOML table that remembers which keys were read, so leftovers are errors."""

    def __init__(self, path: Path, prefix: str, data: Mapping[str, Any]) -> None:
        self.path, self.prefix, self.data = path, prefix, data
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def _get(self, name: str, kind: type | tuple[type, ...], what: str, default: Any) -> Any:
        self._used.add(name)
        if name not in self.data:
            if default is REQUIRED:
                raise self.error(name, "is required but missing")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            raise self.error(name, f"must be {what}")
        return value

    def text(self, name: str, default: Any = None) -> Any:
        value = self._get(name, str, "a string", REQUIRED if default is None else default)
        if isinstance(value, str) and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, bool, "true or false", default)
        return value

    def optional_str(self, name: str) -> str | None:
        value: str | None = self._get(name, str, "a string", None)
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = float(self._get(name, (int, float), "a number", default))
        if value < minimum:
            raise self.error(name, f"must be at least {minimum:g}")
        return value

    def integer(self, name: str, default: Any = None) -> int:
        value: int = self._get(name, int, "an integer", REQUIRED if default is None else default)
        return value

    def strings(self, name: str, *, required: bool) -> tuple[str, ...]:
        value = self._get(name, list, "a list of strings", REQUIRED if required else [])
        if (required and not value) or not all(isinstance(v, str) and v for v in value):
            raise self.error(name, "must be a non-empty list of non-empty strings")
        return tuple(value)

    def table(self, name: str) -> TomlTable:
        value = self._get(name, dict, "a table", REQUIRED)
        return TomlTable(self.path, self.key(name) + ".", value)

    def tables(self, name: str) -> list[Mapping[str, Any]]:
        value = self._get(name, list, "an array of tables ([[...]])", [])
        if not all(isinstance(v, dict) for v in value):
            raise self.error(name, "must be an array of tables ([[...]])")
        return list(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling against "
                             "config/exchanged.example.toml)")  # fmt: skip

    def path_value(self, name: str, *, must_exist: bool, default: Any = None) -> Path:
        text = self.text(name, default)
        path = Path(text)
        if not path.is_absolute():
            path = (self.path.parent / path).resolve()
        if must_exist and not path.exists():
            raise self.error(name, f"{path} does not exist")
        return path
