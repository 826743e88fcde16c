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
echo "== breakglass apply: three fresh hosts get two break-glass users, keys, permissions and sudo"
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
echo "== breakglass apply --check: what would be repaired, nothing changed (connects as bg-ops1, admin cannot get in)"
echo "   ($first is reached through the break-glass user bg-ops1)"
"$bg" apply $common --limit "$first" -v --check "$here/playbook-repair.yml" || true
