# shellcheck shell=sh
# shellcheck disable=SC2154 # F P unit I S port tmp: set by SecondarySSHD.script before this script
# The fixed part of the emergency sshd's apply script: its functions, then
# /run/sshd. SecondarySSHD.script calls the functions in the order its plan
# needs, between steps that carry the plan's data.
bg_fail() { echo "status ${st:-failed}"; printf '| %s\n' "$@"; exit 0; }
# bg_sshd_says runs the daemon once in the foreground (-d: it logs to
# stderr, where a daemon's words are lost without syslog) to quote why it
# does not start; timeout ends it should it start after all.
bg_sshd_says() {
	timeout 3 "$S" -d -f "$F" -o PidFile=none </dev/null 2>&1 | grep -iE 'bind|fatal|error|cannot|missing' | head -n 3 | tr '\n' ' '
}
# bg_port_holder says who listens on the port already, where ss can tell.
bg_port_holder() {
	h=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 3) || return 0
	[ -z "$h" ] || printf 'port %s is held by: %s' "$port" "$(printf '%s' "$h" | tr -s ' \n' ' ;')"
}
# bg_install_config checks the new configuration, which bg_temp wrote to
# $tmp (root's, 0644), with sshd -t, then bg_commit moves it over $F,
# keeping the old one as .NAME.breakglass.bak beside it.
bg_install_config() {
	if ! out=$("$S" -t -f "$tmp" 2>&1); then
		rm -f -- "$tmp"
		echo "status invalid"
		printf '%s\n' "$out" | sed 's/^/| /'
		exit 0
	fi
	out=$(bg_commit "$tmp" "$F" 2>&1) || { rm -f -- "$tmp"; bg_fail "rename $tmp to $F" "$out"; }
	st=installed-not-running
}
# bg_unit_restart (re)starts the systemd unit and waits until it listens.
bg_unit_restart() {
	rm -f -- "$P"
	out=$(systemctl restart "$unit" 2>&1) || bg_fail "systemctl restart $unit failed: $out" "$(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)"
	bg_wait_pidfile "" || bg_fail "$unit did not come up: $(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)" "$(bg_port_holder)"
}
# bg_unit_reload reloads the systemd unit and waits until it listens again.
bg_unit_reload() {
	pid=$(bg_secondary_pid) || pid=
	rm -f -- "$P"
	out=$(systemctl reload "$unit" 2>&1) || bg_fail "systemctl reload $unit failed: $out"
	bg_wait_pidfile "$pid" || bg_fail "$unit did not come back after the reload: $(systemctl status --no-pager "$unit" 2>&1 | tail -n 5)"
}
# bg_rc_enable links the init script ${I##*/} into the runlevels.
bg_rc_enable() {
	n=${I##*/}
	out=$(update-rc.d "$n" defaults 2>&1 && update-rc.d "$n" enable 2>&1) || bg_fail "update-rc.d $n failed" "$out"
	for l in 2 3 4 5; do
		set -- /etc/rc$l.d/S[0-9][0-9]"$n"
		[ -L "$1" ] || bg_fail "update-rc.d $n did not link it into runlevel $l" "$out"
	done
}
# bg_rc_start, without systemd: reloads the running daemon when its
# configuration or keys changed, else starts it. Decided from what runs
# now, not from the facts: the daemon may have died or come up since.
bg_rc_start() {
	if pid=$(bg_secondary_pid); then
		if [ "${st-}" = installed-not-running ] || [ -n "${keys_changed-}" ]; then
			rm -f -- "$P"
			kill -HUP "$pid" || bg_fail "kill -HUP $pid failed"
			bg_wait_pidfile "$pid" || bg_fail "the emergency sshd (pid $pid) did not come back after the reload"
		fi
	else
		rm -f -- "$P"
		out=$("$S" -f "$F" 2>&1 </dev/null) || bg_fail "$S -f $F failed: $out" "$(bg_port_holder)"
		bg_wait_pidfile "" || bg_fail "$S -f $F did not write $P: it is not running${out:+: $out}" "$(bg_sshd_says)" "$(bg_port_holder)"
	fi
}
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd || bg_fail "create /run/sshd"
