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
# The inventory as a break-glass operator would use it: connect as bg-ops1.
sed -e 's/ansible_user=admin/ansible_user=bg-ops1/' -e "s#ansible_ssh_private_key_file=[^ ]*#ansible_ssh_private_key_file=$here/keys/bg-ops1#" \
	"$BG_LAB_INVENTORY" > "$BG_LAB_DIR/inventory-bg-ops1.ini"
bgcommon="-i $BG_LAB_DIR/inventory-bg-ops1.ini --known-hosts $BG_LAB_KNOWN_HOSTS --limit $first"
echo
echo "== breakglass apply --check as bg-ops1: what would be repaired; nothing is changed"
"$bg" apply $bgcommon --check "$here/playbook.yml"
echo
echo "== breakglass apply as bg-ops1: the repair"
"$bg" apply $bgcommon "$here/playbook.yml"
echo
ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="$BG_LAB_KNOWN_HOSTS" -i "$BG_LAB_KEY" "admin@$addr" 'echo "== admin@$(hostname) logs in again with plain ssh"'
