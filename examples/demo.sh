#!/bin/sh
# make demo: run by breakglass-lab, which has started three lab hosts and
# exported BG_LAB_INVENTORY, BG_LAB_KNOWN_HOSTS and BG_LAB_KEY.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bg="$here/../bin/breakglass"
mkdir -p "$here/keys"
for u in bg-ops1 bg-ops2; do
	[ -f "$here/keys/$u" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@breakglass-demo" -f "$here/keys/$u"
done
common="-i $BG_LAB_INVENTORY --known-hosts $BG_LAB_KNOWN_HOSTS"

echo
echo "== breakglass apply: three fresh hosts get two break-glass users, keys, permissions, sudo,"
echo "   and a second way in (an emergency sshd on port 2222 that shares nothing with the first)"
"$bg" apply $common "$here/playbook.yml"
echo
echo "== breakglass apply again: converged, nothing to change"
"$bg" apply $common "$here/playbook.yml"
echo
echo "== the original incident: admin's home made world-writable on the first host; sshd now refuses admin"
first=$(awk '/ansible_host=/{print $1; exit}' "$BG_LAB_INVENTORY")
addr=$(awk '/ansible_host=/{sub(/.*ansible_host=/,""); print $1; exit}' "$BG_LAB_INVENTORY")
ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$here/keys/bg-ops1" "bg-ops1@$addr" 'sudo -n chmod 0777 /home/admin'
if ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$BG_LAB_KEY" "admin@$addr" true; then
	echo "unexpected: admin still logs in" >&2; exit 1
fi
echo "admin@$first: refused by sshd (StrictModes), as in the incident"
echo
echo
echo "== breakglass audit: the nightly run finds the lockout (it gets in as a break-glass user to look)"
"$bg" audit $common --limit "$first" "$here/playbook.yml" || echo "(audit exit code $?: 2 means non-compliant)"
echo
echo "== breakglass recover --user admin --yes: in through a break-glass user, diagnose, fix, prove"
"$bg" recover $common --limit "$first" --user admin --yes "$here/playbook.yml"
echo
ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$BG_LAB_KEY" "admin@$addr" 'echo "== admin@$(hostname) logs in again with plain ssh"'
echo
echo "== breakglass verify: the pre-release checklist, real logins only"
"$bg" verify $common "$here/playbook.yml"
echo
echo "== the founding incident, all of it: every home on $first made world-writable"
ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$here/keys/bg-ops1" "bg-ops1@$addr" 'sudo -n chmod 0777 /home/admin /home/bg-ops1 /home/bg-ops2'
for u in bg-ops1 bg-ops2; do
	if ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$here/keys/$u" "$u@$addr" true; then
		echo "unexpected: $u still logs in on port 22" >&2; exit 1
	fi
done
echo "port 22 of $first refuses admin, bg-ops1 and bg-ops2 alike (StrictModes): the first way in is gone"
echo
echo "== the second way in, with plain ssh and strict host key checking (apply recorded [$addr]:2222):"
echo "   ssh -p 2222 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$BG_LAB_KNOWN_HOSTS -i keys/bg-ops1 root@$addr"
ssh -q -p 2222 -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$here/keys/bg-ops1" "root@$addr" \
	'echo "root@$(hostname) is in through port 2222; repairing the homes"; chmod 0755 /home/admin /home/bg-ops1 /home/bg-ops2'
ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$BG_LAB_KEY" "admin@$addr" 'echo "== admin@$(hostname) logs in on port 22 again"'
