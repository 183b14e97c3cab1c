"""The report beside a rejected export (``<name>.rejected.txt``) and the error texts.

For every error: row, column, code and a plain explanation in Dutch and English, so
an operator can fix the export without help. The report never holds a value from the
file: a verdict carries none, and the free-form ``error`` text comes from our own
exceptions, whose messages are written without values too.
"""

from __future__ import annotations

from exchanged.core.policy import RowError, Verdict

__all__ = ["EXPLANATIONS", "error_lines", "explain", "render_rejection_report"]

# code -> (Nederlands, English)
EXPLANATIONS: dict[str, tuple[str, str]] = {
    "bsn-format": (
        "Geen BSN: na weglaten van spaties, punten en streepjes moeten 9 cijfers overblijven "
        "(8 mag, dan komt er een 0 voor).",
        "Not a BSN: after removing spaces, dots and dashes 9 digits must remain "
        "(8 is allowed and gets a leading 0).",
    ),
    "bsn-elfproef": (
        "Het BSN voldoet niet aan de elfproef of is nul: controleer het nummer.",
        "The BSN fails the eleven test (elfproef) or is zero: check the number.",
    ),
    "bsn-duplicate": (
        "Dit BSN staat al op een eerdere rij: elk kind één keer per bestand.",
        "This BSN already appears on an earlier row: each child once per file.",
    ),
    "date-invalid": (
        "Geen geldige datum: gebruik dd-mm-jjjj of jjjj-mm-dd.",
        "Not a valid date: use dd-mm-yyyy or yyyy-mm-dd.",
    ),
    "date-future": (
        "De datum ligt in de toekomst.",
        "The date lies in the future.",
    ),
    "age-out-of-range": (
        "De leeftijd op de startdatum valt buiten de grenzen van het convenant "
        "(4 tot 18 jaar in het standaardbeleid); controleer geboorte- en startdatum.",
        "The age on the start date is outside the covenant's limits (4 to 18 in the "
        "default policy); check the dates of birth and start.",
    ),
    "postcode-invalid": (
        "Geen geldige Nederlandse postcode (1234 AB).",
        "Not a valid Dutch postcode (1234 AB).",
    ),
    "huisnummer-invalid": (
        "Geen geldig huisnummer: het moet met een getal beginnen (toevoeging mag).",
        "Not a valid house number: it must start with a number (an addition may follow).",
    ),
    "name-invalid": (
        "Een naam mag alleen letters, spaties, apostrof, punt en streepje bevatten.",
        "A name may only hold letters, spaces, apostrophes, dots and dashes.",
    ),
    "woonplaats-invalid": (
        "Geen geldige woonplaats: alleen letters, spaties en streepjes.",
        "Not a valid place of residence: letters, spaces and dashes only.",
    ),
    "text-invalid": (
        "De tekst bevat onzichtbare of stuurtekens.",
        "The text holds invisible or control characters.",
    ),
    "too-long": (
        "De tekst is te lang (standaard maximaal 200 tekens): houd het kort en algemeen.",
        "The text is too long (200 characters by default): keep it short and general.",
    ),
    "not-in-vocabulary": (
        "Geen toegestane term: kies een term uit de lijst in het beleid, eventueel met "
        "': korte toelichting'.",
        "Not an allowed term: choose one from the policy's list, optionally followed by "
        "': short note'.",
    ),
    "missing": (
        "Verplicht veld is leeg.",
        "A required field is empty.",
    ),
    "column-missing": (
        "Deze verplichte kolom ontbreekt in het bestand.",
        "This required column is missing from the file.",
    ),
    "column-ambiguous": (
        "Twee kolommen betekenen hetzelfde veld: laat er één over.",
        "Two columns mean the same field: keep only one.",
    ),
    "field-not-allowed": (
        "Dit veld mag voor deze categorie niet worden uitgewisseld.",
        "This field may not be exchanged for this category.",
    ),
    "out-of-region": (
        "De woonplaats ligt buiten de regio RBL Midden-Gelre: dit kind valt buiten het "
        "convenant; haal de rij weg.",
        "The place of residence is outside the RBL Midden-Gelre region: this child is out "
        "of the covenant's scope; remove the row.",
    ),
    "route-unknown": (
        "Voor deze woonplaats is geen partner ingesteld (routing in het beleid).",
        "No partner is configured for this place of residence (routing in the policy).",
    ),
    "category-unknown": (
        "Onbekende of lege categorie: absoluut-verzuim, langdurig-verzuim of vrijstelling-5a.",
        "Unknown or empty category: absoluut-verzuim, langdurig-verzuim or vrijstelling-5a.",
    ),
    "category-mismatch": (
        "De categorie in deze rij wijkt af van de categorie van de outbox of --category.",
        "The category on this row differs from the outbox's or --category.",
    ),
    "category-mixed": (
        "Eén bestand bevat één categorie: deze rij heeft een andere dan de eerste rij.",
        "One file holds one category: this row's differs from the first row's.",
    ),
    "no-records": (
        "Het bestand bevat geen rijen om te versturen.",
        "The file holds no rows to send.",
    ),
    "no-usable-columns": (
        "Geen enkele kolom is een veld van het convenant.",
        "No column is a field of the covenant.",
    ),
    "processing-ended": (
        "De verwerking van dit kind is beëindigd; heropen het eerst als het opnieuw "
        "gedeeld moet worden.",
        "Processing of this child has ended; re-open it first if it must be shared again.",
    ),
}

_FORBIDDEN_GROUPS: dict[str, tuple[str, str]] = {
    "health": ("gezondheid of diagnose", "health or a diagnosis"),
    "religion": ("godsdienst of levensovertuiging", "religion or belief"),
    "ethnicity": ("etniciteit of afkomst", "ethnicity or origin"),
    "sexuality": ("seksuele geaardheid", "sexual orientation"),
    "politics": ("politieke voorkeur, vakbond, genetica of biometrie",
                 "political opinion, trade union, genetics or biometrics"),
    "police": ("politie- of strafrechtelijke gegevens (zoals Halt of proces-verbaal)",
               "police or criminal data (such as Halt or a proces-verbaal)"),
}  # fmt: skip


def explain(code: str) -> tuple[str, str]:
    """The Dutch and English explanation of an error code."""
    if code in EXPLANATIONS:
        return EXPLANATIONS[code]
    if code.startswith("forbidden-"):
        group = code.removeprefix("forbidden-")
        nl, en = _FORBIDDEN_GROUPS.get(group, (group, group))
        return (
            f"De tekst noemt bijzondere of verboden gegevens ({nl}). Het convenant staat "
            "alleen algemene termen toe: verwijder dit uit de tekst.",
            f"The text names special or forbidden data ({en}). The covenant only allows "
            "general terms: remove it from the text.",
        )
    return ("Onbekende fout.", "Unknown error.")


def error_lines(errors: tuple[RowError, ...] | list[RowError]) -> list[str]:
    """Readable lines per error: where, which code, and what it means in NL and EN."""
    lines: list[str] = []
    for error in errors:
        where = "bestand/file" if error.row == 0 else f"rij/row {error.row}"
        column = f", kolom/column {error.column}" if error.column else ""
        nl, en = explain(error.code)
        lines += [f"- {where}{column}: {error.code}", f"    NL: {nl}", f"    EN: {en}"]
    return lines


def render_rejection_report(
    *, verdict: Verdict | None, error: str | None, file_label: str | None = None
) -> str:
    """The text of ``<name>.rejected.txt``."""
    lines = ["EXPORT GEWEIGERD / EXPORT REJECTED", ""]
    if file_label:
        lines.append(f"Bestand / file: {file_label}")
    lines += [
        "Niets uit dit bestand is verzonden. / Nothing from this file was sent.",
        "Pas het bestand aan en zet het opnieuw in de outbox. / "
        "Fix the file and put it in the outbox again.",
        "",
    ]
    if error:
        lines += ["Het bestand kon niet worden gelezen / The file could not be read:", error, ""]
    if verdict is not None:
        lines.append(f"Categorie / category: {verdict.category or '-'}")
        total = max(verdict.error_count, len(verdict.errors))
        shown = "" if total == len(verdict.errors) else f" (eerste/first {len(verdict.errors)})"
        lines += [f"Fouten / errors: {total}{shown}", ""]
        lines += error_lines(verdict.errors)
        if verdict.skipped:
            lines += ["", "Overgeslagen rijen (buiten de regio) / skipped rows (out of region):"]
            lines += [f"- rij/row {s.row}" for s in verdict.skipped]
        if verdict.dropped_columns:
            lines += [
                "",
                "Kolommen die nooit worden verzonden / columns that are never sent:",
                ", ".join(verdict.dropped_columns),
            ]
    return "\n".join(lines) + "\n"
