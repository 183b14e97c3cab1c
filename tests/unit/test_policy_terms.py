"""Forbidden terms: one test per group, spellings folded, and no easy false positives."""

from __future__ import annotations

import pytest

from exchanged.core.policy_model import compile_terms
from exchanged.policyfile import default_policy

GROUPS = {g.name: g for g in default_policy().forbidden}


def groups_in(text: str) -> set[str]:
    return {name for name, group in GROUPS.items() if group.found_in(text)}


@pytest.mark.parametrize(
    ("group", "texts"),
    [
        ("health", ["ADHD", "a.d.h.d.", "heeft Autisme", "autistisch", "Diagnose volgt",
                    "depressief", "angststoornis", "Angst-stoornis", "medicatie",
                    "bij de PSYCHIATER", "ggz-traject", "chronisch ziek", "psychiatrist"]),
        ("religion", ["geloofsovertuiging", "islamitisch", "katholieke opvoeding",
                      "Joodse feestdag", "ramadan", "religieuze redenen", "church"]),
        ("ethnicity", ["afkomst", "etnische achtergrond", "migratieachtergrond",
                       "ethnic", "vluchteling", "nationaliteit"]),
        ("sexuality", ["seksuele geaardheid", "homoseksueel", "transgender", "lhbti"]),
        ("politics", ["politieke voorkeur", "vakbondslid", "genetische aandoening"]),
        ("police", ["Halt", "Halt-traject", "halttraject", "proces-verbaal", "proces verbaal",
                    "procesverbaal", "PV", "P.V.", "p-v", "politie", "strafbaar feit",
                    "aanhouding", "jeugdreclassering", "police", "criminal record"]),
    ],
)  # fmt: skip
def test_each_group_catches_its_terms(group: str, texts: list[str]) -> None:
    for text in texts:
        assert group in groups_in(f"Anders: {text} gemeld"), text


@pytest.mark.parametrize(
    "text",
    [
        "Wacht op passende plek",
        "wacht op intake nieuwe school",
        "beide: casusoverleg gepland",
        "bushalte",  # a bus stop is not a Halt-traject
        "halte",
        "het langst thuis",  # contains 'angst' inside another word
        "politieke",  # politics, not police
        "tot einde schooljaar",
        "1 jaar",
    ],
)
def test_ordinary_texts_pass_the_police_and_health_groups(text: str) -> None:
    assert groups_in(text) <= {"politics"} if "politiek" in text else groups_in(text) == set()


def test_pattern_language() -> None:
    pattern = compile_terms(["autis*", "*stoornis*", "proces verbaal", "pv"])
    assert pattern.search("autisme")
    assert pattern.search("gedragsstoornissen")
    assert pattern.search("proces verbaal")
    assert pattern.search("procesverbaal")
    assert not pattern.search("sautis")
    assert not pattern.search("pvc")
    assert not compile_terms([]).search("anything")
    assert not compile_terms(["*"]).search("anything")


def test_school_names_are_not_checked() -> None:
    assert "laatst_bekende_school" not in default_policy().forbidden_fields
    assert {"reden_verzuim", "betrokkenheid"} <= default_policy().forbidden_fields
