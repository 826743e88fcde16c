# shellcheck shell=sh
# bg_sshd_start [ARG...]: start the main sshd: with its own command line
# ARG... when it was known (in the background when -D keeps it in the
# foreground), else plain sshd, which daemonizes.
bg_sshd_start() {
	if [ $# -eq 0 ]; then
		bg_ss_s=$(command -v sshd || echo /usr/sbin/sshd)
		"$bg_ss_s" </dev/null
		return
	fi
	for bg_ss_a in "$@"; do
		if [ "$bg_ss_a" = -D ]; then
			setsid "$@" </dev/null >/dev/null 2>&1 &
			return 0
		fi
	done
	"$@" </dev/null
}

# bg_sshd_reload [start [ARG...]]: make the main sshd read its
# configuration again and wait until it listens again (it writes its
# PidFile after binding). With "start", start it when it is not running
# (bg_sshd_start ARG...).
bg_sshd_reload() {
	if bg_sshd_socket_activated; then
		# Socket activation (Ubuntu since 22.10): ssh.socket holds the
		# port, and a reloaded sshd re-executes and cannot bind it
		# (OpenSSH 10 on Debian 13: "Cannot bind any address"). A restart
		# has systemd hand the socket to a fresh sshd; sessions survive
		# (KillMode=process). When no sshd runs, the next connection
		# starts one that reads the new configuration.
		if systemctl is-active --quiet ssh.service 2>/dev/null; then
			systemctl restart ssh.service 2>&1 || return 1
		fi
		sleep 1
		return 0
	fi
	if [ -d /run/systemd/system ]; then
		if [ "${1-}" = start ]; then
			systemctl reload-or-restart ssh.service 2>&1 || systemctl reload-or-restart sshd.service 2>&1 || return 1
		else
			systemctl reload ssh.service 2>&1 || systemctl reload sshd.service 2>&1 || return 1
		fi
		sleep 1
		return 0
	fi
	pf=$(bg_sshd_pidfile)
	if [ "$pf" = none ]; then
		echo "sshd has PidFile none, so breakglass cannot find it to reload it"
		return 1
	fi
	pid=$(cat "$pf" 2>/dev/null)
	if bg_sshd_alive "$pid"; then
		what=reload
		rm -f -- "$pf"
		kill -HUP "$pid" || { echo "$pid" >"$pf"; return 1; }
	elif [ "${1-}" = start ]; then
		what=start
		pid=
		shift
		bg_sshd_start "$@" 2>&1 || { echo "starting sshd failed"; return 1; }
	else
		echo "sshd is not running (no live sshd process in $pf)"
		return 1
	fi
	i=0
	while [ ! -s "$pf" ]; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo "sshd exited on $what: $(tail -n 3 /var/log/auth.log 2>/dev/null)"
			return 1
		fi
		i=$((i + 1))
		if [ "$i" -gt 200 ]; then
			[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid" >"$pf"
			echo "sshd did not write $pf within 10s of the $what"
			return 1
		fi
		sleep 0.05
	done
	bg_sshd_alive "$(cat "$pf" 2>/dev/null)" || { echo "sshd exited after the $what"; return 1; }
	[ "$what" = start ] && echo "sshd was not running: started it"
	return 0
}
