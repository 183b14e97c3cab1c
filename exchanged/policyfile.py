"""Policy TOML -> a validated, frozen ``Policy``; errors name the file and the key.

``load_policy(None)`` reads the policy shipped inside the package
(``exchanged/data/policy.toml``); a path reads a deployment's own copy. The policy file
itself documents its keys.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from exchanged.core.model import CATEGORIES, PartyId
from exchanged.core.policy_model import (
    FIELD_KINDS,
    OUT_OF_REGION_MODES,
    ForbiddenGroup,
    Policy,
    compile_terms,
    frozen_map,
)
from exchanged.core.text import fold_key
from exchanged.errors import ConfigError

__all__ = ["COVENANT_FIELDS", "default_policy", "load_policy", "parse_policy"]

SHIPPED = "exchanged/data/policy.toml"

# Bijlage 1 names every field that may ever be exchanged. A policy file can narrow a
# category but cannot invent a field: a typo or a "telefoon" field is refused here.
COVENANT_FIELDS = frozenset(
    {
        "bsn", "voornamen", "tussenvoegsel", "achternaam", "geboortedatum", "straat",
        "huisnummer", "postcode", "woonplaats", "laatst_bekende_school",
        "startdatum_verzuim", "reden_verzuim", "betrokkenheid",
        "datum_toekenning_vrijstelling", "duur_vrijstelling",
    }
)  # fmt: skip

_TOP_KEYS = frozenset(
    {"version", "limits", "categories", "fields", "category_column", "vocabularies",
     "forbidden", "region", "routing"}
)  # fmt: skip
_GROUP_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


class _Reader:
    """Typed access to the parsed TOML that raises ConfigError naming file and key."""

    def __init__(self, source: object) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def table(self, data: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def strings(self, value: object, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return list(value)

    def integer(self, data: Mapping[str, Any], key: str, name: str, default: int) -> int:
        value = data.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(key, "must be a whole number, 0 or more")
        return value

    def known(self, data: Mapping[str, Any], key: str, allowed: frozenset[str]) -> None:
        for name in data:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.fail(
                    where, f"unknown key (expected one of {', '.join(sorted(allowed))})"
                )


def _fields(
    r: _Reader, data: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    kinds: dict[str, str] = {}
    aliases: dict[str, str] = {}
    suffixes: dict[str, str] = {}
    fields = r.table(data, "fields", "fields")
    if not fields:
        raise r.fail("fields", "the policy defines no fields")
    for name, spec in fields.items():
        key = f"fields.{name}"
        if name not in COVENANT_FIELDS:
            raise r.fail(key, "not a field of the covenant (Bijlage 1)")
        if not isinstance(spec, dict):
            raise r.fail(key, "must be a table")
        r.known(spec, key, frozenset({"kind", "aliases", "suffix_aliases"}))
        kind = spec.get("kind")
        if kind not in FIELD_KINDS:
            raise r.fail(f"{key}.kind", f"must be one of {', '.join(sorted(FIELD_KINDS))}")
        kinds[name] = kind
        for table, option in ((aliases, "aliases"), (suffixes, "suffix_aliases")):
            for spelling in [name, *r.strings(spec.get(option, []), f"{key}.{option}")]:
                if table is suffixes and spelling == name:
                    continue
                folded = fold_key(spelling)
                other = aliases.get(folded) or suffixes.get(folded)
                if not folded or (other is not None and other != name):
                    raise r.fail(f"{key}.{option}", f"spelling {spelling!r} is empty or taken")
                table[folded] = name
    return kinds, aliases, suffixes


def _categories(
    r: _Reader, data: Mapping[str, Any], kinds: Mapping[str, str]
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    allowed: dict[str, frozenset[str]] = {}
    required: dict[str, frozenset[str]] = {}
    categories = r.table(data, "categories", "categories")
    if not categories:
        raise r.fail("categories", "the policy defines no categories")
    for category, spec in categories.items():
        key = f"categories.{category}"
        if category not in CATEGORIES:
            raise r.fail(key, f"unknown category (expected one of {', '.join(CATEGORIES)})")
        if not isinstance(spec, dict):
            raise r.fail(key, "must be a table")
        r.known(spec, key, frozenset({"allowed", "required"}))
        fields = frozenset(r.strings(spec.get("allowed", []), f"{key}.allowed"))
        needed = frozenset(r.strings(spec.get("required", []), f"{key}.required"))
        if unknown := sorted(fields - kinds.keys()):
            raise r.fail(f"{key}.allowed", f"fields without a [fields] entry: {unknown}")
        if extra := sorted(needed - fields):
            raise r.fail(f"{key}.required", f"required but not allowed: {extra}")
        allowed[category], required[category] = fields, needed
    return allowed, required


def _category_column(
    r: _Reader, data: Mapping[str, Any], categories: Mapping[str, object]
) -> tuple[frozenset[str], dict[str, str]]:
    spec = r.table(data, "category_column", "category_column")
    r.known(spec, "category_column", frozenset({"aliases", "values"}))
    aliases = frozenset(
        fold_key(a) for a in r.strings(spec.get("aliases", []), "category_column.aliases")
    )
    values = {fold_key(c): c for c in categories}
    for category, spellings in r.table(spec, "category_column.values", "values").items():
        key = f"category_column.values.{category}"
        if category not in categories:
            raise r.fail(key, "not a category of this policy")
        for spelling in r.strings(spellings, key):
            values[fold_key(spelling)] = category
    return aliases, values


def _vocabularies(
    r: _Reader, data: Mapping[str, Any], kinds: Mapping[str, str]
) -> dict[str, Mapping[str, str]]:
    vocabularies: dict[str, Mapping[str, str]] = {}
    for field, terms in r.table(data, "vocabularies", "vocabularies").items():
        key = f"vocabularies.{field}"
        if kinds.get(field) != "vocabulary":
            raise r.fail(key, "not a field of kind 'vocabulary'")
        if not isinstance(terms, dict) or not terms:
            raise r.fail(key, "must be a table of term = [spellings]")
        table: dict[str, str] = {}
        for term, spellings in terms.items():
            for spelling in [term, *r.strings(spellings, f"{key}.{term}")]:
                table[fold_key(spelling)] = term
        vocabularies[field] = frozen_map(table)
    for field, kind in kinds.items():
        if kind == "vocabulary" and field not in vocabularies:
            raise r.fail(f"vocabularies.{field}", "missing: a vocabulary field needs its terms")
    return vocabularies


def _forbidden(
    r: _Reader, data: Mapping[str, Any], kinds: Mapping[str, str]
) -> tuple[tuple[ForbiddenGroup, ...], frozenset[str]]:
    spec = r.table(data, "forbidden", "forbidden")
    r.known(spec, "forbidden", frozenset({"applies_to", "groups"}))
    applies = frozenset(r.strings(spec.get("applies_to", []), "forbidden.applies_to"))
    if unknown := sorted(applies - kinds.keys()):
        raise r.fail("forbidden.applies_to", f"fields without a [fields] entry: {unknown}")
    groups = []
    for name, terms in r.table(spec, "forbidden.groups", "groups").items():
        key = f"forbidden.groups.{name}"
        if not _GROUP_NAME.fullmatch(name):
            raise r.fail(key, "group names are a-z, 0-9 and '-'")
        groups.append(ForbiddenGroup(name, compile_terms(r.strings(terms, key))))
    return tuple(groups), applies


def _region(r: _Reader, data: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    spec = r.table(data, "region", "region")
    r.known(spec, "region", frozenset({"municipalities"}))
    region: dict[str, str] = {}
    for municipality, villages in r.table(spec, "region", "municipalities").items():
        key = f"region.municipalities.{municipality}"
        for place in [municipality, *r.strings(villages, key)]:
            region[fold_key(place)] = municipality
    routing: dict[str, str] = {}
    for place, partner in r.table(data, "routing", "routing").items():
        key = f"routing.{place}"
        if region and fold_key(place) not in region:
            raise r.fail(key, "not a woonplaats or municipality of [region]")
        try:
            routing[fold_key(place)] = PartyId(str(partner)).value
        except ValueError as exc:
            raise r.fail(key, str(exc)) from None
    return region, routing


def parse_policy(data: Mapping[str, Any], source: object) -> Policy:
    """Validate parsed policy TOML; ``source`` names the file in errors."""
    r = _Reader(source)
    r.known(data, "", _TOP_KEYS)
    if data.get("version", 1) != 1:
        raise r.fail("version", "this exchanged understands policy version 1")
    limits = r.table(data, "limits", "limits")
    r.known(limits, "limits", frozenset({"max_text", "age_from", "age_below", "out_of_region"}))
    max_text = r.integer(limits, "limits.max_text", "max_text", 200)
    age_from = r.integer(limits, "limits.age_from", "age_from", 4)
    age_below = r.integer(limits, "limits.age_below", "age_below", 18)
    if max_text < 1:
        raise r.fail("limits.max_text", "must be at least 1")
    if age_below <= age_from:
        raise r.fail("limits.age_below", "must be greater than limits.age_from")
    out_of_region = limits.get("out_of_region", "reject")
    if out_of_region not in OUT_OF_REGION_MODES:
        raise r.fail("limits.out_of_region", f"must be one of {sorted(OUT_OF_REGION_MODES)}")
    kinds, aliases, suffixes = _fields(r, data)
    allowed, required = _categories(r, data, kinds)
    category_aliases, category_values = _category_column(r, data, allowed)
    forbidden, forbidden_fields = _forbidden(r, data, kinds)
    region, routing = _region(r, data)
    return Policy(
        allowed=frozen_map(allowed),
        required=frozen_map(required),
        aliases=frozen_map(aliases),
        kinds=frozen_map(kinds),
        suffix_aliases=frozen_map(suffixes),
        category_aliases=category_aliases,
        category_values=frozen_map(category_values),
        vocabularies=frozen_map(_vocabularies(r, data, kinds)),
        forbidden=forbidden,
        forbidden_fields=forbidden_fields,
        region=frozen_map(region),
        routing=frozen_map(routing),
        max_text=max_text,
        age_from=age_from,
        age_below=age_below,
        out_of_region=out_of_region,
    )


def _parse_bytes(raw: bytes, source: object) -> Policy:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, "(file)", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    return parse_policy(data, source)


@functools.cache
def default_policy() -> Policy:
    """The policy shipped with exchanged (read once per process)."""
    raw = resources.files("exchanged").joinpath("data", "policy.toml").read_bytes()
    return _parse_bytes(raw, SHIPPED)


def load_policy(path: Path | None) -> Policy:
    """Read and validate the policy at ``path``; None means the shipped default."""
    if path is None:
        return default_policy()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    return _parse_bytes(raw, path)
