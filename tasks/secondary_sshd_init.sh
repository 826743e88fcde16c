#!/bin/sh
### BEGIN INIT INFO
# Provides:          breakglass-sshd
# Required-Start:    $remote_fs $syslog
# Required-Stop:     $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: breakglass emergency OpenSSH server
# Description:       The second way in (secondary_sshd): an sshd of its own,
#                    started at boot whatever happens to ssh.
### END INIT INFO
# Managed by breakglass (secondary_sshd): changes made here are overwritten.
# Installed where no systemd runs, registered with update-rc.d, so the rc
# scripts of sysvinit (or OpenRC) start the emergency sshd at boot.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# breakglass:vars
S=/usr/sbin/sshd
F=/etc/ssh/sshd_config_breakglass
P=/run/sshd-breakglass.pid
# breakglass:end

# running: the process in $P is an sshd run with -f $F (sets pid).
running() {
	pid=$(cat "$P" 2>/dev/null) || return 1
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	c=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	case "$c " in *sshd*" -f $F "*) return 0 ;; esac
	return 1
}

do_stop() {
	running || return 0
	kill "$pid" || return 1
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -le 100 ] || return 1
		sleep 0.1
	done
}

case "${1-}" in
start)
	if running; then
		echo "emergency sshd ($F) already running, pid $pid"
		exit 0
	fi
	# /run is empty after a boot: sshd needs its privilege separation dir.
	[ -d /run/sshd ] || mkdir -m 0755 /run/sshd || exit 1
	"$S" -t -f "$F" || exit 1
	rm -f -- "$P"
	"$S" -f "$F" || exit 1
	# sshd returns once it forked; it writes its PidFile after binding the
	# port. Wait for that, so "started" means it answers (at most 10 s).
	i=0
	until running; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			echo "emergency sshd ($F) did not come up" >&2
			exit 1
		fi
		sleep 0.1
	done
	;;
stop)
	do_stop
	;;
restart)
	do_stop || exit 1
	exec "$0" start
	;;
reload | force-reload)
	if ! running; then
		echo "emergency sshd ($F) is not running" >&2
		exit 7
	fi
	"$S" -t -f "$F" && kill -HUP "$pid"
	;;
status)
	if running; then
		echo "emergency sshd ($F) is running, pid $pid"
		exit 0
	fi
	echo "emergency sshd ($F) is not running"
	exit 3
	;;
*)
	echo "usage: $0 {start|stop|restart|reload|force-reload|status}" >&2
	exit 3
	;;
esac
