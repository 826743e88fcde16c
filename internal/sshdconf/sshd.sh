# shellcheck shell=sh
# sshd.sh: how breakglass finds the main sshd on a host: the files its
# configuration is read from, its PidFile, its pid, and whether systemd's
# ssh.socket is in charge. The only shell that does; it collects and
# prints, and internal/sshdconf (Go) does the judging: the order sshd reads
# the files in, Match blocks, first value wins. Defined at the top of every
# script that needs it (sshdconf.Shell).

# bg_sshd_files [DIR]: print, one a line, the files sshd reads its
# configuration from: /etc/ssh/sshd_config, then what its Include lines expand to
# (relative patterns under /etc/ssh, expanded by the shell's glob, which
# skips dot files and sorts as sshd's glob(3) does), level by level, each
# once. A set, not sshd's order. It prints "?" when it cannot tell: a
# quoted or escaped Include argument, or includes nested deeper than sshd
# allows. DIR (tests) stands for /etc/ssh. Run it in a command
# substitution: it turns globbing on.
bg_sshd_files() {
	set +f
	bg_sf_d=${1:-/etc/ssh}
	[ -f "$bg_sf_d/sshd_config" ] || return 0
	printf '%s\n' "$bg_sf_d/sshd_config"
	bg_sf_all=" $bg_sf_d/sshd_config " bg_sf_new=$bg_sf_d/sshd_config bg_sf_i=0
	while [ -n "$bg_sf_new" ]; do
		bg_sf_i=$((bg_sf_i + 1))
		if [ "$bg_sf_i" -gt 16 ]; then
			echo '?'
			return 0
		fi
		# shellcheck disable=SC2086 # a list of paths
		bg_sf_pats=$(awk -v d="$bg_sf_d" '{
			l = $0
			sub(/^[ \t]+/, "", l)
			if (l !~ /^[Ii][Nn][Cc][Ll][Uu][Dd][Ee]([ \t=]|$)/) next
			l = substr(l, 8)
			sub(/^[ \t]*=?[ \t]*/, "", l)
			if (l ~ /["\047\\]/) { print "?"; next }
			n = split(l, a, /[ \t]+/)
			for (i = 1; i <= n; i++) {
				if (a[i] ~ /^#/) break
				if (a[i] == "") continue
				p = a[i]
				if (p !~ /^[\/~]/) p = d "/" p
				print p
			}
		}' $bg_sf_new 2>/dev/null </dev/null)
		bg_sf_new=
		for bg_sf_p in $bg_sf_pats; do
			if [ "$bg_sf_p" = '?' ]; then
				echo '?'
				continue
			fi
			for bg_sf_f in $bg_sf_p; do
				[ -f "$bg_sf_f" ] || continue
				case $bg_sf_all in *" $bg_sf_f "*) continue ;; esac
				bg_sf_all="$bg_sf_all$bg_sf_f "
				bg_sf_new="$bg_sf_new $bg_sf_f"
				printf '%s\n' "$bg_sf_f"
			done
		done
	done
}

# bg_sshd_pidfile [OUT]: print the main sshd's PidFile: the pidfile line of
# sshd -T's output OUT (sshd -T runs when OUT is not given), or sshd's
# default /run/sshd.pid when sshd -T fails or prints none (a configuration
# sshd -t refuses: the running sshd read an older one anyway).
bg_sshd_pidfile() {
	if [ $# -eq 0 ]; then
		set -- "$(sshd -T 2>/dev/null </dev/null)"
	fi
	bg_sp_pf=$(printf '%s\n' "$1" | awk '$1 == "pidfile" { print $2; exit }')
	printf '%s\n' "${bg_sp_pf:-/run/sshd.pid}"
}

# bg_sshd_alive PID: PID is a running sshd.
bg_sshd_alive() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q sshd
}

# bg_sshd_pid PIDFILE: print the pid of the running main sshd, the one
# PIDFILE names, when it runs.
bg_sshd_pid() {
	bg_sp_pid=
	[ -r "$1" ] && read -r bg_sp_pid _ <"$1" 2>/dev/null
	bg_sshd_alive "$bg_sp_pid" || return 1
	printf '%s\n' "$bg_sp_pid"
}

# bg_sshd_socket_activated: systemd's ssh.socket is in charge (Ubuntu since
# 22.10): it holds the port, and ssh.service is not enabled.
bg_sshd_socket_activated() {
	[ -d /run/systemd/system ] && systemctl is-active --quiet ssh.socket 2>/dev/null &&
		! systemctl is-enabled --quiet ssh.service 2>/dev/null
}

# bg_sshd_nomatch [DIR]: no file sshd reads its configuration from has a
# Match block (nor anything that may hide one), so sshd's effective
# configuration is the same for every user and connection.
bg_sshd_nomatch() {
	bg_sn_files=$(bg_sshd_files "$@")
	[ -n "$bg_sn_files" ] || return 1
	case $bg_sn_files in *'?'*) return 1 ;; esac
	# shellcheck disable=SC2086 # a list of paths
	awk '{ l = $0; sub(/^[ \t]+/, "", l) } l ~ /^[Mm][Aa][Tt][Cc][Hh]([ \t=]|$)/ { found = 1; exit } END { exit found }' $bg_sn_files 2>/dev/null </dev/null
}
