"""The policy file: the shipped default, and errors that name the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from exchanged.core.model import CATEGORIES
from exchanged.errors import ConfigError
from exchanged.policyfile import COVENANT_FIELDS, default_policy, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "exchanged" / "data" / "policy.toml"


def shipped() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_policy_matches_bijlage_1() -> None:
    policy = load_policy(None)
    assert set(policy.allowed) == set(CATEGORIES)
    common = {"bsn", "voornamen", "tussenvoegsel", "achternaam", "geboortedatum", "straat",
              "huisnummer", "postcode", "woonplaats", "laatst_bekende_school"}  # fmt: skip
    assert policy.allowed["absoluut-verzuim"] == common | {"startdatum_verzuim", "betrokkenheid"}
    assert policy.allowed["langdurig-verzuim"] == common | {
        "startdatum_verzuim",
        "reden_verzuim",
        "betrokkenheid",
    }
    assert policy.allowed["vrijstelling-5a"] == common | {
        "datum_toekenning_vrijstelling",
        "duur_vrijstelling",
    }
    assert policy.max_text == 200 and policy.out_of_region == "reject"
    assert {"arnhem", "duiven", "overbetuwe", "lingewaard", "renkum", "rheden", "rozendaal",
            "westervoort", "zevenaar"} <= set(policy.region)  # fmt: skip
    assert policy.region["velp"] == "Rheden"


def test_config_symlink_is_the_shipped_file() -> None:
    link = ROOT / "config" / "policy.toml"
    assert link.is_symlink()
    assert link.resolve() == SHIPPED.resolve()
    assert load_policy(link) == load_policy(link)  # parses, deterministically


def test_default_is_cached() -> None:
    assert default_policy() is load_policy(None)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(telefoon=1), "telefoon"),
        (lambda d: d["fields"].update(telefoon={"kind": "text"}), "fields.telefoon"),
        (lambda d: d["fields"]["bsn"].update(kind="number"), "fields.bsn.kind"),
        (lambda d: d["categories"]["vrijstelling-5a"]["allowed"].append("e_mail"),
         "categories.vrijstelling-5a.allowed"),
        (lambda d: d["categories"].update({"verzuim": {"allowed": []}}), "categories.verzuim"),
        (lambda d: d["categories"]["absoluut-verzuim"]["required"].append("reden_verzuim"),
         "categories.absoluut-verzuim.required"),
        (lambda d: d["limits"].update(out_of_region="ignore"), "limits.out_of_region"),
        (lambda d: d["limits"].update(age_below=2), "limits.age_below"),
        (lambda d: d["limits"].update(max_text="lang"), "limits.max_text"),
        (lambda d: d["fields"]["voornamen"]["aliases"].append("BSN"), "fields.voornamen.aliases"),
        (lambda d: d.update(routing={"Utrecht": "passendwijs"}), "routing.Utrecht"),
        (lambda d: d.update(routing={"Arnhem": "Passend Wijs!"}), "routing.Arnhem"),
        (lambda d: d["vocabularies"].pop("betrokkenheid"), "vocabularies.betrokkenheid"),
        (lambda d: d["forbidden"]["groups"].update({"Bad Name": ["x"]}),
         "forbidden.groups.Bad Name"),
        (lambda d: d["forbidden"].update(applies_to=["telefoon"]), "forbidden.applies_to"),
        (lambda d: d.update(version=2), "version"),
    ],
)  # fmt: skip
def test_errors_name_the_key(change: Any, key: str) -> None:
    data = shipped()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_policy(data, "test.toml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"test.toml: {key}: ")


def test_routing_map_is_folded() -> None:
    data = shipped()
    data["routing"] = {"Arnhem": "passendwijs", "Lobith": "deliemers"}
    policy = parse_policy(data, "x")
    assert dict(policy.routing) == {"arnhem": "passendwijs", "lobith": "deliemers"}


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(file\): cannot read"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: \(syntax\)"):
        load_policy(bad)


def test_loader_refuses_fields_outside_the_covenant() -> None:
    assert "telefoon" not in COVENANT_FIELDS
    assert len(COVENANT_FIELDS) == 15
