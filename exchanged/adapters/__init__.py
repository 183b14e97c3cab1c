"""One thin module per outside library (gpg, paramiko, watchdog, sqlite3, ...), each
behind a small ``typing.Protocol`` so the service can be wired and tested."""
