"""The gpg adapter against the real gpg binary, with throw-away homes and keys.

Parties: alice sends to bob; mallory is a known third party (bob holds her public
key); eve is a stranger bob has never heard of.
"""

from __future__ import annotations

import os
import secrets
import stat
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchanged.adapters.gpg import (
    BAD_SIGNATURE,
    DECRYPTION_FAILED,
    UNKNOWN_SIGNER,
    UNSIGNED,
    Gpg,
    KeyImportError,
    KeyNotFoundError,
    OpenError,
    SealError,
)
from exchanged.errors import LocalSystemError
from exchanged.testing.keys import (
    cross_import,
    export_public,
    kill_agent,
    make_party_home,
    run_gpg,
)

pytestmark = pytest.mark.integration

PLAIN = b'{"protocol": "exchanged/1", "kind": "export", "records": []}\n'


@dataclass(frozen=True, slots=True)
class Party:
    home: Path
    fpr: str
    gpg: Gpg


@dataclass(frozen=True, slots=True)
class World:
    alice: Party
    bob: Party
    mallory: Party
    eve: Party


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("gpg")
    homes = {name: root / name for name in ("alice", "bob", "mallory", "eve")}
    try:
        fprs = {name: make_party_home(home, name) for name, home in homes.items()}
        cross_import(homes["alice"], fprs["alice"], homes["bob"], fprs["bob"])
        cross_import(homes["mallory"], fprs["mallory"], homes["bob"], fprs["bob"])
        # eve can write to bob, but bob does not know eve.
        run_gpg(homes["eve"], "--import", stdin=export_public(homes["bob"], fprs["bob"]))
        # alice may address mallory (for "encrypted to someone else").
        run_gpg(homes["alice"], "--import", stdin=export_public(homes["mallory"], fprs["mallory"]))
        parties = {
            name: Party(homes[name], fprs[name], Gpg(homes[name], fprs[name])) for name in homes
        }
        yield World(**parties)
    finally:
        for home in homes.values():
            if home.exists():
                kill_agent(home)


def _plain(tmp_path: Path, data: bytes = PLAIN) -> Path:
    path = tmp_path / "plain.json"
    path.write_bytes(data)
    return path


def _sealed(world: World, tmp_path: Path) -> Path:
    out = tmp_path / "msg.pgp"
    world.alice.gpg.seal(_plain(tmp_path), out, world.bob.fpr)
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trip_reports_sender_primary_fingerprint(world: World, tmp_path: Path) -> None:
    sealed = _sealed(world, tmp_path)
    head = sealed.read_bytes()[:32]
    assert not head.startswith(b"-----BEGIN")  # binary on the wire, not armored
    assert PLAIN[:16] not in sealed.read_bytes()
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600

    out = tmp_path / "opened.json"
    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure is None
    assert opened.signer == world.alice.fpr
    assert out.read_bytes() == PLAIN
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_open_overwrites_existing_output(world: World, tmp_path: Path) -> None:
    out = tmp_path / "opened.json"
    out.write_bytes(b"stale" * 100)
    opened = world.bob.gpg.open(_sealed(world, tmp_path), out)
    assert opened.failure is None
    assert out.read_bytes() == PLAIN


def test_bit_flip_is_decryption_failed_and_leaves_nothing(world: World, tmp_path: Path) -> None:
    sealed = _sealed(world, tmp_path)
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    out = tmp_path / "opened.json"
    out.write_bytes(b"left over from an earlier attempt")

    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure == DECRYPTION_FAILED
    assert opened.signer is None
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_truncated_is_decryption_failed(world: World, tmp_path: Path) -> None:
    sealed = _sealed(world, tmp_path)
    sealed.write_bytes(sealed.read_bytes()[:-10])
    out = tmp_path / "opened.json"

    opened = world.bob.gpg.open(sealed, out)

    # gpg has already written the whole literal data when it notices the missing
    # integrity check, so the adapter must remove it.
    assert opened.failure == DECRYPTION_FAILED
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_garbage_is_decryption_failed(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pgp"
    junk.write_bytes(os.urandom(300))
    opened = world.bob.gpg.open(junk, tmp_path / "opened.json")
    assert opened.failure == DECRYPTION_FAILED
    assert not (tmp_path / "opened.json").exists()


def test_signed_by_known_third_party_reports_that_party(world: World, tmp_path: Path) -> None:
    sealed = tmp_path / "msg.pgp"
    world.mallory.gpg.seal(_plain(tmp_path), sealed, world.bob.fpr)

    opened = world.bob.gpg.open(sealed, tmp_path / "opened.json")

    # Cryptographically fine; the caller's pin check is what refuses it.
    assert opened.failure is None
    assert opened.signer == world.mallory.fpr
    assert opened.signer != world.alice.fpr


def test_signed_by_unknown_key_is_unknown_signer(world: World, tmp_path: Path) -> None:
    sealed = tmp_path / "msg.pgp"
    world.eve.gpg.seal(_plain(tmp_path), sealed, world.bob.fpr)
    out = tmp_path / "opened.json"

    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure == UNKNOWN_SIGNER
    assert opened.signer is None
    assert not out.exists()


def test_encrypted_but_unsigned_is_unsigned(world: World, tmp_path: Path) -> None:
    sealed = tmp_path / "msg.pgp"
    run_gpg(
        world.alice.home,
        "--trust-model",
        "always",
        "--recipient",
        world.bob.fpr,
        "--output",
        str(sealed),
        "--encrypt",
        str(_plain(tmp_path)),
    )
    out = tmp_path / "opened.json"

    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure == UNSIGNED
    assert not out.exists()


def test_signed_but_not_encrypted_is_decryption_failed(world: World, tmp_path: Path) -> None:
    signed = tmp_path / "msg.pgp"
    run_gpg(
        world.alice.home,
        "--local-user",
        world.alice.fpr,
        "--output",
        str(signed),
        "--sign",
        str(_plain(tmp_path)),
    )
    opened = world.bob.gpg.open(signed, tmp_path / "opened.json")
    assert opened.failure == DECRYPTION_FAILED
    assert not (tmp_path / "opened.json").exists()


def test_tampered_signed_content_is_bad_signature(world: World, tmp_path: Path) -> None:
    # A signature that does not match its data, inside intact encryption: sign
    # uncompressed, flip a byte of the literal data, then encrypt the packets as they
    # are (--no-literal) so the integrity check still passes.
    signed = tmp_path / "signed.gpg"
    run_gpg(
        world.alice.home,
        "--local-user",
        world.alice.fpr,
        "--compress-algo",
        "none",
        "--output",
        str(signed),
        "--sign",
        str(_plain(tmp_path)),
    )
    data = bytearray(signed.read_bytes())
    at = data.index(b'"protocol"')
    data[at + 1] ^= 0x01
    signed.write_bytes(bytes(data))
    sealed = tmp_path / "msg.pgp"
    run_gpg(
        world.alice.home,
        "--trust-model",
        "always",
        "--recipient",
        world.bob.fpr,
        "--no-literal",
        "--compress-algo",
        "none",
        "--output",
        str(sealed),
        "--encrypt",
        str(signed),
    )
    out = tmp_path / "opened.json"

    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure == BAD_SIGNATURE
    assert opened.signer is None
    assert not out.exists()


def test_encrypted_to_someone_else_is_decryption_failed(world: World, tmp_path: Path) -> None:
    sealed = tmp_path / "msg.pgp"
    world.alice.gpg.seal(_plain(tmp_path), sealed, world.mallory.fpr)
    out = tmp_path / "opened.json"

    opened = world.bob.gpg.open(sealed, out)

    assert opened.failure == DECRYPTION_FAILED
    assert not out.exists()


def test_seal_to_missing_recipient_raises(world: World, tmp_path: Path) -> None:
    out = tmp_path / "msg.pgp"
    with pytest.raises(SealError, match="not in the keyring"):
        # bob never imported eve's key.
        world.bob.gpg.seal(_plain(tmp_path), out, world.eve.fpr)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_seal_to_expired_recipient_raises(world: World, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old_fpr = make_party_home(old, "old", expire="1d", faked_system_time="20200101T000000")
    try:
        run_gpg(world.alice.home, "--import", stdin=export_public(old, old_fpr))
        with pytest.raises(SealError, match="expired"):
            world.alice.gpg.seal(_plain(tmp_path), tmp_path / "msg.pgp", old_fpr)
        info = world.alice.gpg.key_info(old_fpr)
        assert info is not None
        assert info.expired
        assert not info.usable
    finally:
        kill_agent(old)
    assert not (tmp_path / "msg.pgp").exists()


def test_seal_without_own_secret_key_raises(world: World, tmp_path: Path) -> None:
    # bob's home holds only alice's public key.
    impostor = Gpg(world.bob.home, world.alice.fpr)
    with pytest.raises(SealError, match="no secret key"):
        impostor.seal(_plain(tmp_path), tmp_path / "msg.pgp", world.bob.fpr)
    assert not (tmp_path / "msg.pgp").exists()


def test_passphrase_protected_key(tmp_path: Path) -> None:
    sender, receiver = tmp_path / "s", tmp_path / "r"
    s_pass, r_pass, wrong = (secrets.token_urlsafe(12) for _ in range(3))
    r_pass = "-" + r_pass  # as random ones sometimes do: never to be read as an option
    try:
        s_fpr = make_party_home(sender, "sender", passphrase=s_pass)
        r_fpr = make_party_home(receiver, "receiver", passphrase=r_pass)
        cross_import(sender, s_fpr, receiver, r_fpr)
        sealed = tmp_path / "msg.pgp"

        with pytest.raises(SealError, match="could not be unlocked"):
            Gpg(sender, s_fpr, passphrase=wrong).seal(_plain(tmp_path), sealed, r_fpr)
        with pytest.raises(SealError):
            Gpg(sender, s_fpr).seal(_plain(tmp_path), sealed, r_fpr)
        assert not sealed.exists()

        Gpg(sender, s_fpr, passphrase=s_pass).seal(_plain(tmp_path), sealed, r_fpr)
        out = tmp_path / "opened.json"
        # Our locked key is a local fault, never reported as the partner's bad data.
        with pytest.raises(OpenError):
            Gpg(receiver, r_fpr, passphrase=wrong).open(sealed, out)
        assert not out.exists()
        opened = Gpg(receiver, r_fpr, passphrase=r_pass).open(sealed, out)
        assert opened.failure is None
        assert opened.signer == s_fpr
    finally:
        kill_agent(sender)
        kill_agent(receiver)


def test_large_plaintext_never_passes_through_python(world: World, tmp_path: Path) -> None:
    size = 8 * 1024 * 1024
    plain = tmp_path / "big.bin"
    with plain.open("wb") as f:
        f.write(os.urandom(size))
    sealed = tmp_path / "big.pgp"
    out = tmp_path / "big.out"

    tracemalloc.start()
    try:
        world.alice.gpg.seal(plain, sealed, world.bob.fpr)
        opened = world.bob.gpg.open(sealed, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert opened.failure is None
    assert out.stat().st_size == size
    assert peak < size // 8


def test_local_file_name_is_not_sent(world: World, tmp_path: Path) -> None:
    plain = tmp_path / "Leerlingen_Jansen_2024.csv"
    plain.write_bytes(PLAIN)
    sealed = tmp_path / "msg.pgp"
    world.alice.gpg.seal(plain, sealed, world.bob.fpr)
    listed = run_gpg(world.bob.home, "--output", os.devnull, "--decrypt", str(sealed))
    assert b"Jansen" not in listed.stderr
    assert b"PLAINTEXT" in listed.stderr


def test_key_import_export_and_info(world: World, tmp_path: Path) -> None:
    fresh_home = tmp_path / "fresh"
    fresh_fpr = make_party_home(fresh_home, "fresh")
    try:
        fresh = Gpg(fresh_home, fresh_fpr)
        armored = world.alice.gpg.export_public(world.alice.fpr)
        assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")

        assert fresh.key_info(world.alice.fpr) is None
        assert fresh.import_public(armored) == [world.alice.fpr]
        # Binary works too, and importing again is harmless.
        assert fresh.import_public(export_public(world.alice.home, world.alice.fpr)) == [
            world.alice.fpr
        ]

        info = fresh.key_info(world.alice.fpr.lower())
        assert info is not None
        assert info.fingerprint == world.alice.fpr
        assert info.usable
        assert not info.revoked
        assert not info.expired
        assert info.expires is not None

        secret = run_gpg(world.alice.home, "--export-secret-keys", world.alice.fpr).stdout
        with pytest.raises(KeyImportError, match="secret key"):
            fresh.import_public(secret)
        with pytest.raises(KeyImportError):
            fresh.import_public(b"not a key at all")
        with pytest.raises(KeyNotFoundError):
            fresh.export_public(world.eve.fpr)
    finally:
        kill_agent(fresh_home)


def test_refuses_missing_home(tmp_path: Path) -> None:
    with pytest.raises(LocalSystemError, match="does not exist"):
        Gpg(tmp_path / "nowhere", "0" * 40)


def test_party_home_works_under_function_tmp_path(tmp_path: Path) -> None:
    # tmp_path here is as long as pytest makes it; the agent socket must still fit.
    a_home, b_home = tmp_path / "alice", tmp_path / "bob"
    try:
        a_fpr = make_party_home(a_home, "alice")
        b_fpr = make_party_home(b_home, "bob")
        cross_import(a_home, a_fpr, b_home, b_fpr)
        sealed = tmp_path / "msg.pgp"
        Gpg(a_home, a_fpr).seal(_plain(tmp_path), sealed, b_fpr)
        assert Gpg(b_home, b_fpr).open(sealed, tmp_path / "o").signer == a_fpr
    finally:
        kill_agent(a_home)
        kill_agent(b_home)


def test_too_long_home_is_refused_clearly(tmp_path: Path) -> None:
    if Path(f"/run/user/{os.getuid()}").is_dir():
        pytest.skip("gpg puts its sockets under /run/user here; home length does not matter")
    with pytest.raises(ValueError, match="too long"):
        make_party_home(tmp_path / ("x" * 120), "alice")


def _messages_of_every_kind(world: World, tmp_path: Path) -> dict[str, Path]:
    """One ciphertext per outcome ``open`` can report, named ``<kind>-<n>.pgp``."""
    folder = tmp_path / "in"
    folder.mkdir()
    made: dict[str, Path] = {}

    def seal(name: str, sender: Party) -> Path:
        path = folder / f"{name}.pgp"
        sender.gpg.seal(_plain(tmp_path, PLAIN + name.encode()), path, world.bob.fpr)
        made[name] = path
        return path

    for n in range(3):
        seal(f"good-{n}", world.alice)
    seal("third-party-0", world.mallory)
    seal("unknown-0", world.eve)
    flipped = seal("flipped-0", world.alice)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    made["garbage-0"] = folder / "garbage-0.pgp"
    made["garbage-0"].write_bytes(os.urandom(300))
    made["unsigned-0"] = folder / "unsigned-0.pgp"
    run_gpg(world.alice.home, "--trust-model", "always", "--recipient", world.bob.fpr,
            "--output", str(made["unsigned-0"]), "--encrypt", str(_plain(tmp_path)))  # fmt: skip
    return made


def test_open_many_gives_the_verdicts_of_open_one_by_one(world: World, tmp_path: Path) -> None:
    made = _messages_of_every_kind(world, tmp_path)
    names = sorted(made)
    single = {name: world.bob.gpg.open(made[name], tmp_path / f"{name}.single") for name in names}
    assert {n: single[n].failure for n in names} == {
        "flipped-0": DECRYPTION_FAILED, "garbage-0": DECRYPTION_FAILED, "good-0": None,
        "good-1": None, "good-2": None, "third-party-0": None, "unknown-0": UNKNOWN_SIGNER,
        "unsigned-0": UNSIGNED,
    }  # fmt: skip

    pairs = [(made[name], tmp_path / f"{name}.json") for name in names]
    many = world.bob.gpg.open_many(pairs)

    assert dict(zip(names, many, strict=True)) == single
    for name, (_, out) in zip(names, pairs, strict=True):
        if single[name].failure is None:
            assert out.read_bytes() == PLAIN + name.encode()
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
        else:
            assert not out.exists()
    # Nothing of gpg's own output files or our temporaries is left behind.
    assert sorted(p.name for p in made["good-0"].parent.iterdir()) == [f"{n}.pgp" for n in names]


def test_open_many_of_good_messages_opens_each_exactly(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pairs = []
    for n in range(5):
        sealed = folder / f"{n}.pgp"
        world.alice.gpg.seal(_plain(tmp_path, PLAIN + bytes([48 + n])), sealed, world.bob.fpr)
        pairs.append((sealed, tmp_path / f"{n}.json"))
    stale = pairs[2][1]
    stale.write_bytes(b"from an earlier attempt" * 50)

    many = world.bob.gpg.open_many(pairs)

    assert [o.signer for o in many] == [world.alice.fpr] * 5
    assert [out.read_bytes() for _, out in pairs] == [PLAIN + bytes([48 + n]) for n in range(5)]
    assert sorted(p.name for p in folder.iterdir()) == [f"{n}.pgp" for n in range(5)]


def test_open_many_with_a_passphrase_protected_key(tmp_path: Path) -> None:
    sender, receiver = tmp_path / "s", tmp_path / "r"
    passphrase = secrets.token_urlsafe(12)
    try:
        s_fpr = make_party_home(sender, "sender")
        r_fpr = make_party_home(receiver, "receiver", passphrase=passphrase)
        cross_import(sender, s_fpr, receiver, r_fpr)
        pairs = []
        for n in range(3):
            sealed = tmp_path / f"{n}.pgp"
            Gpg(sender, s_fpr).seal(_plain(tmp_path), sealed, r_fpr)
            pairs.append((sealed, tmp_path / f"{n}.json"))
        with pytest.raises(OpenError):
            Gpg(receiver, r_fpr, passphrase=passphrase + "x").open_many(pairs)
        many = Gpg(receiver, r_fpr, passphrase=passphrase).open_many(pairs)
        assert [o.signer for o in many] == [s_fpr] * 3
    finally:
        kill_agent(sender)
        kill_agent(receiver)


def _stream(gpg: Gpg, out: Path, recipient: str, pieces: list[bytes]) -> None:
    seal = gpg.begin_seal(out, recipient)
    for piece in pieces:
        seal.sink.write_bytes(piece)
    seal.finish()


def test_a_streamed_seal_opens_to_exactly_what_was_written(world: World, tmp_path: Path) -> None:
    # Small pieces and pieces larger than the sink's buffer, text and bytes alike.
    pieces = [PLAIN, os.urandom(200_000), b"x" * 70_000, *(os.urandom(n) for n in (1, 7, 65_536))]
    sealed, out = tmp_path / "msg.pgp", tmp_path / "msg.json"
    _stream(world.alice.gpg, sealed, world.bob.fpr, pieces)
    opened = world.bob.gpg.open(sealed, out)
    assert opened.failure is None
    assert opened.signer == world.alice.fpr
    assert out.read_bytes() == b"".join(pieces)
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_a_streamed_seal_to_an_unknown_key_says_why_and_leaves_nothing(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "msg.pgp"
    seal = world.bob.gpg.begin_seal(out, world.eve.fpr)  # bob never imported eve's key
    # gpg refuses at once and exits; the writes after that must not fail on their own
    # ("broken pipe") but leave the explanation to finish.
    for _ in range(40):
        seal.sink.write_bytes(os.urandom(65_536))
    with pytest.raises(SealError, match="not in the keyring"):
        seal.finish()
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_an_abandoned_streamed_seal_leaves_nothing(world: World, tmp_path: Path) -> None:
    out = tmp_path / "msg.pgp"
    seal = world.alice.gpg.begin_seal(out, world.bob.fpr)
    seal.sink.write(PLAIN.decode())
    seal.abandon()
    assert list(tmp_path.iterdir()) == []


def test_a_streamed_seal_with_a_passphrase_protected_key(tmp_path: Path) -> None:
    sender, receiver = tmp_path / "s", tmp_path / "r"
    passphrase = secrets.token_urlsafe(12)
    try:
        s_fpr = make_party_home(sender, "sender", passphrase=passphrase)
        r_fpr = make_party_home(receiver, "receiver")
        cross_import(sender, s_fpr, receiver, r_fpr)
        sealed = tmp_path / "msg.pgp"
        with pytest.raises(SealError, match="could not be unlocked"):
            _stream(Gpg(sender, s_fpr, passphrase=passphrase + "x"), sealed, r_fpr, [PLAIN])
        # The passphrase travels on a pipe of its own: it never ends up in the message.
        _stream(Gpg(sender, s_fpr, passphrase=passphrase), sealed, r_fpr, [PLAIN])
        out = tmp_path / "msg.json"
        opened = Gpg(receiver, r_fpr).open(sealed, out)
        assert opened.signer == s_fpr
        assert out.read_bytes() == PLAIN
    finally:
        kill_agent(sender)
        kill_agent(receiver)
