"""Run a command under the parts of ``systemd/exchanged.service`` that can be applied
without systemd as PID 1, so tests exercise the real daemon inside them:

- ``ProtectSystem=strict`` + ``ReadWritePaths=``: the whole file system is remounted
  read-only in a private mount namespace, except the given folders;
- ``UMask=0077``;
- ``NoNewPrivileges=yes`` (``PR_SET_NO_NEW_PRIVS``);
- ``MemoryDenyWriteExecute=yes`` (``PR_SET_MDWE``, Linux >= 6.3);
- credentials in ``$CREDENTIALS_DIRECTORY`` as read-only 0400 files (the caller's part).

Usage (root; the mount namespace needs CAP_SYS_ADMIN):

    unshare --mount --propagation private -- \\
        python -m exchanged.testing.sandbox --rw DIR [--rw DIR ...] -- COMMAND ...

Not covered here (they need systemd or seccomp): SystemCallFilter=,
RestrictAddressFamilies=, ProtectHome=, PrivateTmp=, PrivateDevices=, the capability
bounding set. ``systemd-analyze security`` rates those.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys

__all__ = ["main", "mount_namespaces_available"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1
EXIT_NO_MDWE = 77


def mount_namespaces_available() -> bool:
    """Private mount namespaces need root (CAP_SYS_ADMIN) and a kernel and container that
    allow them; tests that emulate systemd's file-system protections need them."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="exchanged.testing.sandbox")
    parser.add_argument("--rw", action="append", default=[], help="a folder left writable")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command: list[str] = args.command[1:] if args.command[:1] == ["--"] else args.command
    for folder in args.rw:
        subprocess.run(["mount", "--bind", folder, folder], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", "/"], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("sandbox: kernel has no PR_SET_MDWE (Linux >= 6.3)", file=sys.stderr)
        return EXIT_NO_MDWE
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        print("sandbox: PR_SET_NO_NEW_PRIVS failed", file=sys.stderr)
        return 1
    os.umask(0o077)
    os.execvp(command[0], command)  # noqa: S606 -- exec of the test's own command line
    return 1  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
