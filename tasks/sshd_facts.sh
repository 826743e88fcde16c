# shellcheck shell=sh
# sshd's facts, after its settings, sshdconf's functions and bg_file: the
# config files (base64), sshd -T's limits, the effective PidFile and the
# running daemon's command line. It changes nothing.
echo "breakglass-sshd-facts 1"
[ -d /run/systemd/system ] && echo "systemd"
[ -d /run/sshd ] || echo "privsep-missing"
bg_file /etc/ssh/sshd_config
if [ -d /etc/ssh/sshd_config.d ]; then
	echo "dropin-dir"
	for f in /etc/ssh/sshd_config.d/*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		bg_file "$f"
	done
fi
if out=$(sshd -T 2>&1); then
	printf '%s\n' "$out" | awk '$1 == "maxstartups" || $1 == "persourcemaxstartups" { print $1, $2 }'
	pf=$(bg_sshd_pidfile "$out")
else
	echo "sshd-T-failed"
	printf '%s\n' "$out" | sed 's/^/| /'
	pf=$(bg_sshd_pidfile "")
fi
printf 'pidfile %s\n' "$pf"
if pid=$(bg_sshd_pid "$pf"); then printf 'daemon %s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline")"; fi
