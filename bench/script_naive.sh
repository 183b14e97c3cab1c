#!/bin/sh
# Baseline "naive cron script": per file, gpg --sign --encrypt and then a NEW OpenSSH
# sftp connection that puts that one file. Used by bench/run.py.
#
# usage: script_naive.sh GNUPGHOME OWN_FPR PARTNER_FPR IN_DIR OUT_DIR \
#                        SSH_KEY KNOWN_HOSTS PORT USER REMOTE_DIR
set -eu
home=$1 own=$2 partner=$3 in=$4 out=$5 key=$6 known=$7 port=$8 user=$9
shift 9
remote=$1
for f in "$in"/*.csv; do
    name=$(basename "$f")
    gpg --homedir "$home" --batch --yes --quiet --no-tty --trust-model always \
        --pinentry-mode loopback --local-user "$own" --recipient "$partner" \
        --sign --encrypt --output "$out/$name.pgp" "$f"
    printf 'cd %s\nput %s\n' "$remote" "$out/$name.pgp" |
        sftp -q -b - -i "$key" -F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes \
            -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$known" -P "$port" \
            "$user@127.0.0.1" >/dev/null
done
