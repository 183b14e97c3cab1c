"""Splitting a ``--multifile`` run's status lines per file: only an exact match counts."""

from __future__ import annotations

from exchanged.adapters.gpg_status import split_files, status_events, verdict

SIGNER = "7ACD283D36F10CDCBF31A6CFA639FD79A7118B30"
GOOD = f"""[GNUPG:] BEGIN_DECRYPTION
[GNUPG:] NEWSIG
[GNUPG:] GOODSIG A639FD79A7118B30 rbl <rbl@exchanged.invalid>
[GNUPG:] VALIDSIG {SIGNER} 2026-11-29 1795918024 0 4 0 22 10 00 {SIGNER}
[GNUPG:] DECRYPTION_OKAY
[GNUPG:] END_DECRYPTION
"""


def _run(*names: str) -> str:
    return "".join(f"[GNUPG:] FILE_START 3 {n}\n{GOOD}[GNUPG:] FILE_DONE\n" for n in names)


def test_a_clean_run_splits_file_for_file() -> None:
    per_file = split_files(status_events(_run("/w/a.pgp", "/w/b.pgp")), ["/w/a.pgp", "/w/b.pgp"])
    assert per_file is not None
    assert [verdict(events, finished=True).signer for events in per_file] == [SIGNER, SIGNER]


def test_anything_but_an_exact_match_is_refused() -> None:
    names = ["/w/a.pgp", "/w/b.pgp"]
    cut_short = _run("/w/a.pgp") + "[GNUPG:] FILE_START 3 /w/b.pgp\n" + GOOD
    stray = "[GNUPG:] NEWSIG\n" + _run(*names)
    nested = "[GNUPG:] FILE_START 3 /w/a.pgp\n" + _run(*names)
    for text in (
        _run("/w/a.pgp"),  # a file missing
        _run("/w/b.pgp", "/w/a.pgp"),  # out of order
        _run(*names, "/w/c.pgp"),  # one too many
        cut_short,  # gpg died in the middle of a file
        stray,  # a line that belongs to no file
        nested,
        _run(*names).replace("FILE_START 3", "FILE_START 1"),  # not a decryption
        _run(*names) + "[GNUPG:] FILE_DONE\n",
    ):
        assert split_files(status_events(text), names) is None, text


def test_an_unfinished_run_accepts_nothing() -> None:
    events = status_events(GOOD)
    assert verdict(events, finished=True).failure is None
    assert verdict(events, finished=False).failure == "decryption-failed"


def test_a_problem_anywhere_outweighs_a_good_signature() -> None:
    for problem in ("EXPKEYSIG A639FD79A7118B30 rbl", "REVKEYSIG A639FD79A7118B30 rbl",
                    "FAILURE decrypt 123"):  # fmt: skip
        events = status_events(GOOD + f"[GNUPG:] {problem}\n")
        assert verdict(events, finished=True).failure == "bad-signature"
