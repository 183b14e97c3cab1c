#!/bin/sh
# Baseline "cron script": gpg --sign --encrypt per file, then ONE OpenSSH sftp -b session
# that puts them all. One way, no receipts, no minimisation. Used by bench/run.py.
#
# usage: script_batch.sh GNUPGHOME OWN_FPR PARTNER_FPR IN_DIR OUT_DIR \
#                        SSH_KEY KNOWN_HOSTS PORT USER REMOTE_DIR
set -eu
home=$1 own=$2 partner=$3 in=$4 out=$5 key=$6 known=$7 port=$8 user=$9
shift 9
remote=$1
batch="$out/.sftp-batch"
: >"$batch"
echo "cd $remote" >>"$batch"
for f in "$in"/*.csv; do
    name=$(basename "$f")
    gpg --homedir "$home" --batch --yes --quiet --no-tty --trust-model always \
        --pinentry-mode loopback --local-user "$own" --recipient "$partner" \
        --sign --encrypt --output "$out/$name.pgp" "$f"
    echo "put $out/$name.pgp" >>"$batch"
done
sftp -q -b "$batch" -i "$key" -F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$known" -P "$port" \
    "$user@127.0.0.1" >/dev/null
