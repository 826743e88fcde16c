# shellcheck shell=sh
# make bench: the floor's change — the work of examples/playbook.yml as ONE
# script, run by `sudo -n sh -s` over the one control login per host. The
# harness sends on stdin, before this file, two lines setting OPS1_KEY and
# OPS2_KEY (shell-quoted public keys). The logins that prove the way in are
# the harness's own fresh ssh connections, one per user, after this.
set -eu
umask 077
for u in bg-ops1 bg-ops2; do
	case $u in
	bg-ops1) key=$OPS1_KEY comment="break-glass 1" ;;
	bg-ops2) key=$OPS2_KEY comment="break-glass 2" ;;
	esac
	# "*": loginable by key, as breakglass's user module leaves it.
	id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -c "$comment" -p '*' "$u"
	install -d -m 0700 -o "$u" -g "$u" "/home/$u/.ssh"
	tmp=$(mktemp "/home/$u/.ssh/authorized_keys.XXXXXX")
	printf '%s\n' "$key" >"$tmp"
	chown "$u:$u" "$tmp"
	chmod 0600 "$tmp"
	mv -f "$tmp" "/home/$u/.ssh/authorized_keys"
done
# Permissions sshd's StrictModes accepts.
for u in bg-ops1 bg-ops2 admin; do
	chmod go-w "/home/$u" "/home/$u/.ssh"
	[ ! -e "/home/$u/.ssh/authorized_keys" ] || chmod go-w "/home/$u/.ssh/authorized_keys"
done
# Sudo: validated before it is installed.
tmp=$(mktemp /etc/sudoers.d/.breakglass.XXXXXX)
printf 'bg-ops1,bg-ops2 ALL=(ALL) NOPASSWD: ALL\n' >"$tmp"
visudo -cf "$tmp" >/dev/null
install -m 0440 -o root -g root "$tmp" /etc/sudoers.d/breakglass
rm -f "$tmp"
visudo -c >/dev/null
