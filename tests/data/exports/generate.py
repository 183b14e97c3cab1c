"""Regenerate the battery of tricky exports in this folder (synthetic data only).

Run ``.venv/bin/python tests/data/exports/generate.py``; the files are committed so
that a reader can open them, and ``test_policy_battery.py`` holds the verdict a careful
operator expects for each. BSNs come from a seeded generator that satisfies the
elfproef; names and streets are invented.
"""

from __future__ import annotations

import csv
from pathlib import Path

from exchanged.testing.synthetic import generate_bsn, seeded_rng

HERE = Path(__file__).parent
_rng = seeded_rng(20240901)
BSNS = [generate_bsn(_rng) for _ in range(40)]
# A BSN starting with 0, written with the zero dropped the way spreadsheets do.
ZERO_BSN = next(b for b in (generate_bsn(seeded_rng(s)) for s in range(500)) if b[0] == "0")

LV_HEADER = [
    "BSN", "Voornamen", "Tussenvoegsel", "Achternaam", "Geboortedatum", "Straat",
    "Huisnummer", "Postcode", "Woonplaats", "School", "Startdatum verzuim", "Reden verzuim",
    "Betrokkenheid",
]  # fmt: skip


def lv_row(i: int, **changes: str) -> list[str]:
    row = {
        "BSN": BSNS[i], "Voornamen": "Fleur", "Tussenvoegsel": "", "Achternaam": "Veldkamp",
        "Geboortedatum": "12-3-2012", "Straat": "Lindelaan", "Huisnummer": str(10 + i),
        "Postcode": "6811AB", "Woonplaats": "Arnhem", "School": "OBS De Regenboog",
        "Startdatum verzuim": "02-09-2024", "Reden verzuim": "Wacht op passende plek",
        "Betrokkenheid": "SWV",
    }  # fmt: skip
    row.update({k.replace("_", " "): v for k, v in changes.items()})
    return [row[h] for h in LV_HEADER]


def write(
    name: str, rows: list[list[str]], *, encoding: str = "utf-8", delimiter: str = ";"
) -> None:
    with (HERE / name).open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\r\n").writerows(rows)


def main() -> None:
    # Semicolons and Windows-1252, as Dutch Excel saves "CSV (gescheiden door lijstteken)".
    write(
        "semicolon_cp1252.csv",
        [
            LV_HEADER,
            lv_row(0, Voornamen="Loïs", Achternaam="Brinkhorst"),
            lv_row(1, Voornamen="Zoë Renée", Tussenvoegsel="van der", Achternaam="Ploeg"),
            lv_row(2, Voornamen="Noël", Achternaam="Ganzevoort", Woonplaats="Zevenaar"),
            lv_row(3, Voornamen="Anaïs", Achternaam="Smeenk", Woonplaats="Duiven"),
        ],
        encoding="cp1252",
    )
    # UTF-8 with BOM and commas; a quoted school name holding a comma and a line break.
    write(
        "comma_utf8_bom.csv",
        [
            [
                "Burgerservicenummer",
                "Voornaam",
                "Geslachtsnaam",
                "Geboortedatum",
                "Straatnaam",
                "Huisnr",
                "Toevoeging",
                "Postcode",
                "Plaats",
                "Naam school",
                "Verzuim sinds",
                "Betrokkenheid",
            ],
            [
                BSNS[4],
                "Daan",
                "Kempers",
                "2011-05-30",
                "Rijnkade",
                "7",
                "A",
                "6811 AB",
                "Velp",
                "Het Rijnlands College, locatie Zuid",
                "2024-11-04",
                "beide",
            ],
            [
                BSNS[5],
                "Saar",
                "Hazekamp",
                "2013-01-15",
                "Molenweg",
                "121",
                "",
                "6921 EC",
                "Duiven",
                "Montessorischool\nDe Linde",
                "2025-01-13",
                "RBL: casusoverleg gepland",
            ],
        ],
        encoding="utf-8-sig",
        delimiter=",",
    )
    # Tab-separated vrijstelling-5a with an end date for the exemption.
    write(
        "tab_vrijstelling.txt",
        [
            [
                "BSN",
                "Voornamen",
                "Achternaam",
                "Geboortedatum",
                "Woonplaats",
                "Datum vrijstelling",
                "Einddatum vrijstelling",
            ],
            [BSNS[6], "Mees", "Wolterink", "1-2-2014", "Oosterbeek", "1-8-2024", "31-7-2026"],
            [BSNS[7], "Isa", "Beekhuis", "3-4-2015", "Renkum", "15-1-2025", "1 jaar"],
        ],
        delimiter="\t",
    )
    # Columns the covenant does not allow: dropped, their values never read.
    write(
        "extra_columns.csv",
        [
            [*LV_HEADER, "Telefoon", "E-mail", "Diagnose", "Naam ouder", "Geslacht", "Notities"],
            [
                *lv_row(8),
                "06-11112222",
                "ouder@example.org",
                "ADHD",
                "P. Veldkamp",
                "V",
                "politie betrokken",
            ],
            [*lv_row(9), "026-3334444", "x@example.org", "autisme", "Q. Veldkamp", "M", ""],
        ],
    )
    write(
        "invalid_bsn.csv",
        [
            LV_HEADER,
            lv_row(10, BSN="123456789"),  # 1: fails the elfproef
            lv_row(11, BSN="140"),  # 2: too short, and no padding
            lv_row(12, BSN=ZERO_BSN[1:]),  # 3: eight digits, valid with its leading zero
            lv_row(13, BSN="00000140"),  # 4: a short number padded by other software
            lv_row(14, BSN=f"{BSNS[14][:4]}.{BSNS[14][4:6]}.{BSNS[14][6:]}"),  # 5: dotted, ok
            lv_row(15, BSN="000000000"),  # 6: all zeros
            lv_row(16, BSN=""),  # 7: empty
        ],
    )
    write(
        "forbidden_reason.csv",
        [
            LV_HEADER,
            lv_row(17, Reden_verzuim="Anders: heeft autisme"),
            lv_row(18, Reden_verzuim="Anders: Halt-traject loopt"),
            lv_row(19, Reden_verzuim="anders: proces verbaal opgemaakt"),
            lv_row(20, Reden_verzuim="Anders: P.V. in voorbereiding"),
            lv_row(21, Reden_verzuim="Wacht op ondersteuning: PSYCHIATER betrokken"),
            lv_row(22, Reden_verzuim="Overig: geloofsovertuiging"),
            lv_row(23, Reden_verzuim="Wacht op passende plek: intake gepland"),
            lv_row(24, Reden_verzuim="Heeft geen zin in school"),
            lv_row(25, Betrokkenheid="SWV: procesverbaal via leerplicht"),
        ],
    )
    write(
        "out_of_region.csv",
        [LV_HEADER, lv_row(26), lv_row(27, Woonplaats="Utrecht"), lv_row(28, Woonplaats="Elst")],
    )
    dotted = f"{BSNS[29][:3]} {BSNS[29][3:6]} {BSNS[29][6:]}"
    write("duplicate_bsn.csv", [LV_HEADER, lv_row(29), lv_row(30), lv_row(31, BSN=dotted)])
    write(
        "future_dates.csv",
        [LV_HEADER, lv_row(32, Startdatum_verzuim="01-09-2099"), lv_row(33)],
    )
    write("adult.csv", [LV_HEADER, lv_row(34), lv_row(35, Geboortedatum="14-02-2001")])
    write(
        "category_column.csv",
        [
            [
                "Soort verzuim",
                "BSN",
                "Achternaam",
                "Geboortedatum",
                "Woonplaats",
                "Startdatum verzuim",
            ],
            ["Absoluut verzuim", BSNS[36], "Tielemans", "2012-06-01", "Westervoort", "2024-10-01"],
            ["absoluut", BSNS[37], "Rietveld", "2013-07-02", "Rozendaal", "2024-10-07"],
        ],
    )
    write(
        "missing_column.csv",
        [["BSN", "Achternaam", "Woonplaats", "Startdatum verzuim"],
         [BSNS[38], "Dorrestein", "Arnhem", "2024-10-01"]],
    )  # fmt: skip
    write("no_usable_columns.csv", [["Kolom A", "Kolom B"], ["1", "2"]])


if __name__ == "__main__":
    main()
