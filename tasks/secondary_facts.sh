# shellcheck shell=sh
# shellcheck disable=SC2154 # F P U unit B K H I C dropin: set by SecondarySSHD.query before this script
# The emergency sshd's facts, one per line, read by parseSecondaryFacts.
echo "breakglass-secondary-facts 1"
[ -d /run/systemd/system ] && echo "systemd"
printf 'sshd %s\n' "$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd)"
[ -d /run/sshd ] || echo "privsep-missing"
# bg_same KEY [NAME]: is the emergency copy of host key (or certificate)
# KEY, named NAME in $H (default: KEY's name), the same? (cmp on the host:
# private keys never leave it)
bg_same() {
	if cmp -s -- "$1" "$H/${2:-${1##*/}}" 2>/dev/null; then printf 'hostkey same %s\n' "$1"; else printf 'hostkey differs %s\n' "$1"; fi
}
if out=$(sshd -T 2>&1); then
	printf '%s\n' "$out" | awk '$1 == "hostkey" || $1 == "listenaddress" || $1 == "hostcertificate" { print "T " $0 }'
	printf '%s\n' "$out" | awk '$1 == "hostkey" { print $2 }' | while read -r k; do
		if [ -f "$k" ]; then printf 'exists %s\n' "$k"; bg_same "$k"; fi
	done
	printf '%s\n' "$out" | awk '$1 == "hostcertificate" { print $2 }' | while read -r k; do
		d=${k##*/}
		case $d in *-cert.pub) ;; *) d=$d-cert.pub ;; esac
		if [ -f "$k" ]; then printf 'exists %s\n' "$k"; bg_same "$k" "$d"; fi
	done
else
	echo "sshd-T-failed"
	printf '%s\n' "$out" | sed 's/^/| /'
	for k in /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_rsa_key; do
		if [ -f "$k" ]; then printf 'exists %s\n' "$k"; bg_same "$k"; fi
	done
fi
for d in "$B" "$K" "$H"; do
	if [ -L "$d" ]; then printf 'dir link %s\n' "$d"
	elif [ -d "$d" ]; then printf 'dir %s %s\n' "$(stat -c '%u %g %a' -- "$d")" "$d"
	elif [ -e "$d" ]; then printf 'dir other %s\n' "$d"
	fi
done
if [ -d "$H" ] && [ ! -L "$H" ]; then
	for c in "$H"/*; do
		[ -e "$c" ] || [ -L "$c" ] || continue
		l=0; [ -L "$c" ] && l=1
		if [ -f "$c" ]; then printf 'copy %s %s %s\n' "$(stat -L -c '%u %g %a' -- "$c")" "$l" "$c"; else printf 'copy-other %s %s\n' "$l" "$c"; fi
	done
fi
if [ -d "$K" ] && [ ! -L "$K" ]; then
	for f in "$K"/* "$K"/.[!.]*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		printf 'store\n'
		bg_file "$f"
	done
fi
bg_file "$F"
if [ -d /run/systemd/system ]; then
	bg_file "$U"
	bg_file "$dropin"
	for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
		if [ -f "$d/ssh.service" ]; then echo "debian-ssh"; break; fi
	done
	printf 'enabled %s\n' "$(systemctl is-enabled "$unit" 2>/dev/null)"
	printf 'active %s\n' "$(systemctl is-active "$unit" 2>/dev/null)"
fi
if [ ! -d /run/systemd/system ]; then
	printf 'pid1 %s\n' "$(cat /proc/1/comm 2>/dev/null)"
	if [ -d /etc/init.d ] && command -v update-rc.d >/dev/null 2>&1; then echo "sysv-rc"; fi
	for c in cron crond cronie; do
		if c=$(command -v "$c" 2>/dev/null) && [ -d /etc/cron.d ]; then printf 'cron %s\n' "$c"; break; fi
	done
	if pgrep -x cron >/dev/null 2>&1 || pgrep -x crond >/dev/null 2>&1; then echo "cron-running"; fi
	bg_file "$I"
	bg_file "$C"
	for l in /etc/rc[0-6S].d/[SK][0-9][0-9]"${I##*/}"; do
		if [ -L "$l" ]; then printf 'rc-link %s %s\n' "$l" "$(readlink -- "$l")"; fi
	done
fi
if pid=$(bg_secondary_pid); then printf 'running %s\n' "$pid"; fi
exit 0
