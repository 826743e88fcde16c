# shellcheck shell=sh
# shellcheck disable=SC2154 # F and P: set by SecondarySSHD.vars before this script
bg_is_ours() {
	c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	case "$c " in *sshd*" -f $F "*) return 0 ;; esac
	return 1
}
bg_secondary_pid() {
	pid=$(cat "$P" 2>/dev/null)
	case $pid in ''|*[!0-9]*) pid= ;; esac
	if [ -n "$pid" ] && bg_is_ours "$pid"; then echo "$pid"; return 0; fi
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		case $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) in *"[listener]"*) bg_is_ours "$p" && { echo "$p"; return 0; } ;; esac
	done
	return 1
}
# bg_wait_pidfile PID: wait until the daemon wrote its PidFile (it does so
# after binding its port) and runs; PID, when given, must stay alive.
bg_wait_pidfile() {
	i=0
	while [ ! -s "$P" ]; do
		if [ -n "$1" ] && ! kill -0 "$1" 2>/dev/null; then return 1; fi
		i=$((i + 1)); [ "$i" -le 200 ] || return 1
		sleep 0.05
	done
	bg_is_ours "$(cat "$P")"
}
