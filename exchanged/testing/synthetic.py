"""Synthetic thuiszitter exports for tests and the demo: never real people.

BSNs pass the elfproef but come from a random generator; names, streets and schools
are invented combinations. Woonplaatsen lie in the RBL Midden-Gelre region so that
the shipped policy accepts the rows.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from exchanged.core.bsn import is_valid_bsn
from exchanged.core.model import CATEGORIES

__all__ = ["HEADERS", "generate_bsn", "seeded_rng", "synthetic_rows"]

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)

_FIRST = (
    "Daan", "Sem", "Lotte", "Noor", "Fleur", "Mees", "Jesse", "Saar", "Bram", "Isa",
    "Luuk", "Femke", "Thijs", "Roos", "Milan", "Yara", "Stijn", "Evi", "Ruben", "Zoë",
)  # fmt: skip
_PREFIX = ("", "", "", "van", "de", "van der", "van den", "ter")
_LAST = (
    "Veldkamp", "Brinkhorst", "Oosterwold", "Kempers", "Lindeboom", "Hazekamp",
    "Rietveld", "Dorrestein", "Wolterink", "Beekhuis", "Smeenk", "Vreeswijk",
    "Hulshorst", "Ganzevoort", "Ploegmakers", "Tielemans",
)  # fmt: skip
_STREETS = (
    "Lindelaan", "Kastanjestraat", "Rijnkade", "Molenweg", "Beukenhof", "Sleedoornpad",
    "Weidelaan", "Dijkstraat", "Esdoornweg", "Zwanenhof", "Havikstraat", "Kerkpad",
)  # fmt: skip
# (woonplaats, first two postcode digits) inside the RBL Midden-Gelre region.
_PLACES = (
    ("Arnhem", "68"), ("Arnhem", "68"), ("Zevenaar", "69"), ("Duiven", "69"),
    ("Westervoort", "69"), ("Velp", "68"), ("Elst", "66"), ("Huissen", "68"),
    ("Oosterbeek", "68"), ("Dieren", "69"), ("Bemmel", "66"), ("Renkum", "68"),
)  # fmt: skip
_SCHOOLS = (
    "OBS De Regenboog", "Het Rijnlands College", "Montessorischool De Linde",
    "Stedelijk Lyceum Zuid", "Basisschool Het Kompas", "Vakcollege Oost",
)  # fmt: skip
_REASONS = (
    "Wacht op passende plek", "Wachten op ondersteuning", "Conflict met school",
    "Thuissituatie", "Onbekend", "Anders: wacht op intake nieuwe school",
)  # fmt: skip
_INVOLVEMENT = ("RBL", "SWV", "beide", "geen", "beide: casusoverleg gepland")
_DURATION = ("1 jaar", "6 maanden", "tot einde schooljaar")

_COMMON_HEADER = [
    "BSN", "Voornamen", "Tussenvoegsel", "Achternaam", "Geboortedatum", "Straat",
    "Huisnummer", "Toevoeging", "Postcode", "Woonplaats", "Laatst bekende school",
]  # fmt: skip
# Columns case-management software adds that the covenant does not allow: the policy
# engine must drop them.
_EXTRA_HEADER = ["Telefoonnummer", "E-mail ouder"]

HEADERS: dict[str, list[str]] = {
    "absoluut-verzuim": [*_COMMON_HEADER, "Startdatum verzuim", "Betrokkenheid"],
    "langdurig-verzuim": [
        *_COMMON_HEADER,
        "Startdatum verzuim",
        "Reden verzuim",
        "Betrokkenheid",
    ],
    "vrijstelling-5a": [*_COMMON_HEADER, "Datum toekenning vrijstelling", "Duur vrijstelling"],
}


def seeded_rng(seed: int) -> random.Random:
    """A reproducible generator for synthetic data (never for keys or secrets)."""
    return random.Random(seed)  # noqa: S311 - repeatable test data, not cryptography


def generate_bsn(rng: random.Random) -> str:
    """A random 9-digit number that passes the elfproef and starts with at most one 0."""
    while True:
        first = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(7)]
        if rng.random() < 0.1:
            # Some real numbers start with a zero; exports then often drop it.
            first[0] = 0
            first[1] = rng.randint(1, 9)
        check = sum(w * d for w, d in zip(_WEIGHTS, first, strict=True)) % 11
        if check == 10:
            continue
        bsn = "".join(str(d) for d in first) + str(check)
        if is_valid_bsn(bsn):
            return bsn


def _dmy(day: date) -> str:
    return f"{day.day:02d}-{day.month:02d}-{day.year:04d}"


def synthetic_rows(
    rng: random.Random,
    category: str,
    n: int,
    *,
    today: date | None = None,
    extra_columns: bool = True,
) -> tuple[list[str], list[list[str]]]:
    """An operator-style export for ``category``: a header and ``n`` valid rows.

    Children are 6-16 on their start date, start dates lie 2 weeks to a year before
    ``today``. With ``extra_columns`` the export also holds phone and e-mail columns
    that the policy must drop.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    reference = today or date.today()
    header = list(HEADERS[category]) + (_EXTRA_HEADER if extra_columns else [])
    seen: set[str] = set()
    rows: list[list[str]] = []
    while len(rows) < n:
        bsn = generate_bsn(rng)
        if bsn in seen:
            continue
        seen.add(bsn)
        start = reference - timedelta(days=rng.randint(14, 365))
        born = start - timedelta(days=rng.randint(6 * 365 + 2, 16 * 365 + 300))
        place, pc = rng.choice(_PLACES)
        letters = rng.choice("ABCEGHJKLMNPRTVWXZ") + rng.choice("ABEGHJKLMNPRTVWXZ")
        postcode = f"{pc}{rng.randint(10, 99)}{letters}"
        row = [
            bsn if rng.random() < 0.9 else f"{bsn[:4]}.{bsn[4:6]}.{bsn[6:]}",
            rng.choice(_FIRST) + (f" {rng.choice(_FIRST)}" if rng.random() < 0.3 else ""),
            rng.choice(_PREFIX),
            rng.choice(_LAST),
            _dmy(born),
            rng.choice(_STREETS),
            str(rng.randint(1, 240)),
            rng.choice(("", "", "", "A", "B", "2")),
            postcode if rng.random() < 0.5 else f"{postcode[:4]} {postcode[4:]}",
            place,
            rng.choice(_SCHOOLS),
        ]
        if category == "vrijstelling-5a":
            row += [_dmy(start), rng.choice(_DURATION)]
        else:
            row.append(_dmy(start))
            if category == "langdurig-verzuim":
                row.append(rng.choice(_REASONS))
            row.append(rng.choice(_INVOLVEMENT))
        if extra_columns:
            row += [f"06-{rng.randint(10000000, 99999999)}", f"ouder{len(rows) + 1}@example.org"]
        rows.append(row)
    return header, rows
