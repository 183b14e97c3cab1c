"""check-config: a valid file passes; each kind of mistake names the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exchanged.cli import main
from exchanged.config import load_config

EXAMPLE = Path(__file__).parents[2] / "config" / "exchanged.example.toml"


def _example_in(tmp_path: Path) -> Path:
    """The shipped example with its paths pointing at files that exist."""
    for folder in ("gnupg", "outbox", "upload"):
        (tmp_path / folder).mkdir(mode=0o700)
    key = tmp_path / "id_ed25519"
    key.write_text("not read by check-config\n")
    key.chmod(0o600)
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("/var/lib/exchanged/gnupg", str(tmp_path / "gnupg"))
    text = text.replace("/srv/exchanged/outbox/passendwijs", str(tmp_path / "outbox"))
    text = text.replace("/srv/exchanged/sftp/passendwijs/upload", str(tmp_path / "upload"))
    text = text.replace("/etc/exchanged/ssh/id_ed25519", str(key))
    config = tmp_path / "exchanged.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_the_documented_example_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _example_in(tmp_path)
    assert main(["check-config", "-c", str(config)]) == 0
    assert "ok (party rbl, 1 partner(s), 1 outbox(es))" in capsys.readouterr().out
    loaded = load_config(config)
    assert loaded.partners["passendwijs"].fingerprint == "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
    assert loaded.limits.receipt_deadline_seconds == 900.0
    assert loaded.retention.inbox_days == 100 and loaded.retention.incidents_days == 1825
    assert loaded.mail is not None and loaded.mail.to_addrs[0].startswith("fg@")


def test_every_commented_key_in_the_example_is_a_real_key(tmp_path: Path) -> None:
    """Uncomment the optional lines: the loader must accept each of them."""
    config = _example_in(tmp_path)
    text = config.read_text(encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text((Path(__file__).parents[2] / "config" / "policy.toml").read_text())
    text = text.replace('# policy = "/etc/exchanged/policy.toml"', f'policy = "{policy}"')
    text = text.replace("# incident_hook = ", "incident_hook = ")
    text = text.replace("# [metrics]", "[metrics]")
    text = text.replace('# path = "/var/lib/node_exporter/textfile/exchanged.prom"',
                        f'path = "{tmp_path / "exchanged.prom"}"')  # fmt: skip
    text = text.replace("# interval_seconds = 60.0", "interval_seconds = 30.0")
    config.write_text(text, encoding="utf-8")
    loaded = load_config(config)
    assert loaded.metrics is not None and loaded.metrics.interval_seconds == 30.0
    assert loaded.policy_file == policy
    assert loaded.incident_hook[0] == "/usr/local/bin/incident-to-ticket"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    config = _example_in(tmp_path)
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('party = "rbl"', 'party = "rbl"\nparyt = "x"', "paryt", "unknown key"),
        ("settle_seconds = 2.0", "settle_second = 2.0", "limits.settle_second", "unknown key"),
        ('remote_dir = "upload"', 'remote_dir = "upload"\nremote = "x"',
         "partner.passendwijs.remote", "unknown key"),
        ('fingerprint = "89AB', 'fingerprint = "ZZAB', "partner.passendwijs.fingerprint",
         "malformed"),
        ('home = "', 'home = "/nonexistent', "gpg.home", "does not exist"),
        ('id = "passendwijs"', 'id = "Passend Wijs"', "partner[0].id", "party id"),
        ('port = 22', 'port = 70000', "partner.passendwijs.sftp.port", "between 1 and 65535"),
        ('receive = "local"', 'receive = "push"', "partner.passendwijs.receive", "one of"),
        ('partner = "passendwijs"\n', 'partner = "deliemers"\n', "outbox[0].partner",
         "not a configured"),
    ],
)  # fmt: skip
def test_mistakes_are_named_by_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str, problem: str
) -> None:
    config = _broken(tmp_path, old, new)
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"exchanged: {config}: {key}: "), err
    assert problem in err
    assert "\n" not in err and "Traceback" not in err


def test_a_key_file_readable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _example_in(tmp_path)
    (tmp_path / "id_ed25519").chmod(0o644)
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "partner.passendwijs.sftp.key_file" in err and "chmod 600" in err


def test_duplicate_partner_ids_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _example_in(tmp_path)
    text = config.read_text(encoding="utf-8")
    partner = text[text.index("\n[[partner]]\n") :]
    config.write_text(text + "\n" + partner, encoding="utf-8")
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"partner\[1\]\.id: duplicate partner id 'passendwijs'", err), err


def test_missing_and_unparsable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("party = \n")
    assert main(["check-config", "-c", str(bad)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_organisation_keys_other_than_name_are_optional(tmp_path: Path) -> None:
    config = _broken(tmp_path, 'contact_phone = "+31 26 000 0000"\n', "")
    text = config.read_text(encoding="utf-8").replace(
        'contact_role = "Functionaris gegevensbescherming"\n', ""
    )
    config.write_text(text, encoding="utf-8")
    organisation = load_config(config).organisation
    assert organisation.contact_phone == ""
    assert organisation.contact_role == "Functionaris gegevensbescherming"
