#!/bin/sh
# Installs the real parts the tests and the demo use: OpenSSH's sshd (and ssh-keygen,
# sftp) and GnuPG. Nothing is mocked, so these must be on the machine.
set -eu
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v gpg >/dev/null 2>&1 || missing="$missing gnupg"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v sftp >/dev/null 2>&1 || missing="$missing openssh-client"
# systemd-analyze checks the shipped unit's hardening score offline (no PID 1 needed).
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "exchanged: missing system packages:$missing" >&2
    echo "exchanged: run as root, or install them first: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "exchanged: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
