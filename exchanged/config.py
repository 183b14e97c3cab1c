"""TOML configuration -> validated, frozen settings.

Every error names the file, the key (dotted, e.g. ``partner.passendwijs.sftp.key_file``)
and what is wrong. Unknown keys are errors: a typo must never silently fall back to a
default. Secrets are never read from here; they come from systemd credentials.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final, Literal

from exchanged.core.model import CATEGORIES, Fingerprint, PartyId
from exchanged.errors import ConfigError
from exchanged.tomltable import TomlTable

__all__ = [
    "CATEGORY_FROM_COLUMN",
    "CATEGORY_FROM_SUBFOLDER",
    "Config",
    "Limits",
    "MailSettings",
    "MetricsSettings",
    "Organisation",
    "Outbox",
    "Partner",
    "Retention",
    "SftpSettings",
    "load_config",
]

CATEGORY_FROM_SUBFOLDER: Final = "subfolder"
CATEGORY_FROM_COLUMN: Final = "column"
ROUTE_BY_WOONPLAATS: Final = "by-woonplaats"
RECEIVE_MODES: Final = ("local", "poll")
_DEFAULT_CONTACT_ROLE: Final = "Functionaris gegevensbescherming"


@dataclass(frozen=True, slots=True)
class SftpSettings:
    host: str
    port: int
    user: str
    key_file: Path
    host_key: str


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    fingerprint: str
    sftp: SftpSettings
    remote_dir: str
    receive: str
    local_dir: Path | None
    poll_dir: str | None
    poll_seconds: float


@dataclass(frozen=True, slots=True)
class Outbox:
    path: Path
    partner: str | None  # None when routed: each record goes where its woonplaats says
    category: str  # a category id, "subfolder" or "column"
    route: str | None = None  # "by-woonplaats" or None


@dataclass(frozen=True, slots=True)
class Limits:
    settle_seconds: float = 2.0
    rescan_seconds: float = 60.0
    receipt_deadline_seconds: float = 15 * 60.0
    loss_deadline_seconds: float = 24 * 3600.0
    max_age_seconds: float = 7 * 24 * 3600.0
    max_skew_seconds: float = 300.0
    retry_cap_seconds: float = 300.0
    transfer_deadline_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Retention windows in days. The defaults, and why:

    inbox_days (100): delivered partner lists are a transit copy; the operator takes
        them into case work. One quarter (the covenant's exchange rhythm, at most 92
        days) plus a week, so last quarter's list still exists when this quarter's
        exchange is late and ``reconcile`` needs it.
    sent_days (100): the operator's original exports in ``outbox/*/sent/`` hold
        columns that were never sent; kept only as long as ``reconcile`` uses them as
        "our list", for the same reason and period as the inbox.
    spool_days (30): sealed ciphertext after its receipt. The signed receipt proves
        delivery; the ciphertext is only useful to settle a dispute about what was
        sent, which surfaces within weeks. Measured from the receipt (from the upload
        for our own receipts, which are never receipted).
    journal_days (365): journal metadata of finished messages (ids, states, digests,
        counts; no personal data): one annual accountability cycle. Must exceed the
        message age limit, or an old message id could be replayed unnoticed.
    disclosures_days (730): the disclosure register (hashes only) answers art. 15
        questions "to whom was my data disclosed"; two years spans a thuiszitter case
        and a later question about it. Terminations still in force are kept.
    incidents_days (1825): the breach register (art. 33(5)) must let the AP check
        compliance; five years after closing, the usual term for such documentation.
        Open incidents are never purged.
    """

    inbox_days: int = 100
    sent_days: int = 100
    spool_days: int = 30
    journal_days: int = 365
    disclosures_days: int = 730
    incidents_days: int = 1825

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 1:
                raise ValueError(f"retention.{item.name} must be at least 1 day")

    def check(self, max_age_seconds: float) -> None:
        """Refuse windows that would defeat replay protection or orphan ciphertext."""
        if self.journal_days * 86400 <= max_age_seconds:
            raise ValueError("retention.journal_days must exceed limits.max_age_seconds")
        if self.journal_days < self.spool_days:
            raise ValueError("retention.journal_days must be at least retention.spool_days")


@dataclass(frozen=True, slots=True)
class Organisation:
    """Functional contact points only (no employee names), for mails, notices, AP form."""

    name: str
    contact_role: str = _DEFAULT_CONTACT_ROLE
    contact_email: str = ""
    contact_phone: str = ""


@dataclass(frozen=True, slots=True)
class MailSettings:
    """SMTP for incident mail; the password comes from the ``smtp-password`` credential."""

    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    from_addr: str
    to_addrs: tuple[str, ...]
    username: str | None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus text file for node_exporter's textfile collector."""

    path: Path
    interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    party: str
    state_dir: Path
    inbox: Path
    gpg_home: Path
    fingerprint: str
    policy_file: Path | None
    outboxes: tuple[Outbox, ...]
    partners: Mapping[str, Partner]
    limits: Limits
    organisation: Organisation
    mail: MailSettings | None = None
    incident_hook: tuple[str, ...] = ()
    metrics: MetricsSettings | None = None
    retention: Retention = field(default_factory=Retention)
    share_with_operators: bool = False

    @property
    def shared_file_mode(self) -> int:
        """Mode of files operators must read: inbox files and rejection reports."""
        return 0o640 if self.share_with_operators else 0o600

    @property
    def shared_folder_mode(self) -> int:
        """Mode of the sent/ and rejected/ folders the daemon creates in an outbox."""
        return 0o750 if self.share_with_operators else 0o700


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raise ConfigError naming the key on any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "(file)", f"is not valid TOML: {exc}") from None
    top = TomlTable(path, "", data)
    party = _party_id(top, "party")
    state_dir = top.path_value("state_dir", must_exist=False)
    inbox = top.path_value("inbox", must_exist=False)
    policy_text = top.optional_str("policy")
    policy_file = None
    if policy_text is not None:
        policy_file = top.path_value("policy", must_exist=True)
    gpg = top.table("gpg")
    gpg_home = gpg.path_value("home", must_exist=True)
    fingerprint = _fingerprint(gpg, "fingerprint")
    gpg.finish()
    limits = _limits(top)
    retention = _retention(top, limits)
    organisation = _organisation(top, party)
    mail = _mail(top) if "mail" in top.data else None
    hook = _hook(top)
    metrics = _metrics(top)
    share = top.flag("share_with_operators", default=False)
    partners: dict[str, Partner] = {}
    for index, item in enumerate(top.tables("partner")):
        partner = _partner(TomlTable(path, f"partner[{index}].", item), partners)
        partners[partner.id] = partner
    outboxes = tuple(
        _outbox(TomlTable(path, f"outbox[{index}].", item), partners)
        for index, item in enumerate(top.tables("outbox"))
    )
    top.finish()
    if not partners:
        raise ConfigError(path, "partner", "at least one [[partner]] is required")
    return Config(
        path=path,
        party=party,
        state_dir=state_dir,
        inbox=inbox,
        gpg_home=gpg_home,
        fingerprint=fingerprint,
        policy_file=policy_file,
        outboxes=outboxes,
        partners=partners,
        limits=limits,
        organisation=organisation,
        mail=mail,
        incident_hook=hook,
        metrics=metrics,
        retention=retention,
        share_with_operators=share,
    )


def _party_id(table: TomlTable, name: str) -> str:
    value: str = table.text(name)
    try:
        PartyId(value)
    except ValueError as exc:
        raise table.error(name, str(exc)) from None
    return value


def _fingerprint(table: TomlTable, name: str) -> str:
    try:
        return Fingerprint.parse(table.text(name)).value
    except ValueError as exc:
        raise table.error(name, f"malformed: {exc}") from None


def _limits(top: TomlTable) -> Limits:
    if "limits" not in top.data:
        return Limits()
    table = top.table("limits")
    defaults = Limits()
    limits = Limits(
        **{
            name: table.number(name, getattr(defaults, name))
            for name in Limits.__dataclass_fields__
        }
    )
    table.finish()
    return limits


def _organisation(top: TomlTable, party: str) -> Organisation:
    if "organisation" not in top.data:
        return Organisation(name=party)
    table = top.table("organisation")
    organisation = Organisation(
        name=table.text("name"),
        contact_role=table.optional_str("contact_role") or _DEFAULT_CONTACT_ROLE,
        contact_email=table.optional_str("contact_email") or "",
        contact_phone=table.optional_str("contact_phone") or "",
    )
    table.finish()
    return organisation


def _mail(top: TomlTable) -> MailSettings:
    table = top.table("mail")
    security = table.text("security", "starttls")
    if security not in ("starttls", "tls", "none"):
        raise table.error("security", "must be one of starttls, tls, none")
    security_mode: Literal["starttls", "tls", "none"] = security
    recipients = table.strings("to", required=True)
    if not all("@" in r for r in recipients):
        raise table.error("to", "must be a non-empty list of e-mail addresses")
    settings = MailSettings(
        host=table.text("host"),
        port=table.integer("port", 587),
        security=security_mode,
        from_addr=table.text("from"),
        to_addrs=tuple(recipients),
        username=table.optional_str("username"),
    )
    table.finish()
    return settings


def _metrics(top: TomlTable) -> MetricsSettings | None:
    if "metrics" not in top.data:
        return None
    table = top.table("metrics")
    path = table.path_value("path", must_exist=False)
    if not path.name.endswith(".prom"):
        raise table.error("path", "must end in .prom (the textfile collector reads only those)")
    if not path.parent.is_dir():
        raise table.error("path", f"folder {path.parent} does not exist")
    interval = table.number("interval_seconds", 60.0, minimum=5.0)
    table.finish()
    return MetricsSettings(path=path, interval_seconds=interval)


def _hook(top: TomlTable) -> tuple[str, ...]:
    return top.strings("incident_hook", required=False)


def _retention(top: TomlTable, limits: Limits) -> Retention:
    """[retention]: days per class; defaults and reasons on ``Retention``."""
    if "retention" not in top.data:
        return Retention()
    table = top.table("retention")
    defaults = Retention()
    values = {
        name: table.integer(name, getattr(defaults, name))
        for name in Retention.__dataclass_fields__
    }
    table.finish()
    for name, value in values.items():
        if value < 1:
            raise table.error(name, "must be at least 1 (days)")
    retention = Retention(**values)
    try:
        retention.check(limits.max_age_seconds)
    except ValueError as exc:
        raise top.error("retention", str(exc)) from None
    return retention


def _partner(table: TomlTable, seen: Mapping[str, Partner]) -> Partner:
    partner_id = _party_id(table, "id")
    if partner_id in seen:
        raise table.error("id", f"duplicate partner id {partner_id!r}")
    table.prefix = f"partner.{partner_id}."
    name = table.text("name")
    fingerprint = _fingerprint(table, "fingerprint")
    sftp_table = table.table("sftp")
    sftp = _sftp(sftp_table)
    remote_dir = table.text("remote_dir")
    receive = table.text("receive")
    if receive not in RECEIVE_MODES:
        raise table.error("receive", f"must be one of {', '.join(RECEIVE_MODES)}")
    local_dir = poll_dir = None
    if receive == "local":
        local_dir = table.path_value("local_dir", must_exist=True)
    else:
        poll_dir = table.text("poll_dir")
    poll_seconds = table.number("poll_seconds", 10.0, minimum=0.1)
    table.finish()
    return Partner(
        id=partner_id,
        name=name,
        fingerprint=fingerprint,
        sftp=sftp,
        remote_dir=remote_dir,
        receive=receive,
        local_dir=local_dir,
        poll_dir=poll_dir,
        poll_seconds=poll_seconds,
    )


def _sftp(table: TomlTable) -> SftpSettings:
    host = table.text("host")
    port = table.integer("port", 22)
    if not 0 < port < 65536:
        raise table.error("port", "must be between 1 and 65535")
    user = table.text("user")
    key_file = table.path_value("key_file", must_exist=True)
    _check_private(table, "key_file", key_file)
    host_key = table.text("host_key")
    parts = host_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise table.error("host_key", "must be a public key line such as 'ssh-ed25519 AAAA...'")
    table.finish()
    return SftpSettings(host=host, port=port, user=user, key_file=key_file, host_key=host_key)


def _check_private(table: TomlTable, name: str, path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise table.error(
            name, f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    if not os.access(path, os.R_OK):
        raise table.error(name, f"{path} is not readable by this user")


def _outbox(table: TomlTable, partners: Mapping[str, Partner]) -> Outbox:
    path = table.path_value("path", must_exist=True)
    route = table.optional_str("route")
    if route not in (None, ROUTE_BY_WOONPLAATS):
        raise table.error("route", f"must be {ROUTE_BY_WOONPLAATS!r} (or left out)")
    partner = table.optional_str("partner")
    if route is None and partner is None:
        raise table.error("partner", 'is required unless route = "by-woonplaats"')
    if route is not None and partner is not None:
        raise table.error("partner", "a routed outbox sends by woonplaats; leave partner out")
    if partner is not None and partner not in partners:
        raise table.error("partner", f"{partner!r} is not a configured [[partner]] id")
    category = table.text("category")
    allowed = (*CATEGORIES, CATEGORY_FROM_SUBFOLDER, CATEGORY_FROM_COLUMN)
    if category not in allowed:
        raise table.error("category", f"must be one of {', '.join(allowed)}")
    table.finish()
    return Outbox(path=path, partner=partner, category=category, route=route)
