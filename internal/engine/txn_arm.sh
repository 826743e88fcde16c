# shellcheck shell=sh
# shellcheck disable=SC2154 # T, unit: set by Txn.armScript before this script
# Arming the transaction, after its header (which defines
# bg_install_revert: write $T/revert.sh): install revert.sh and start it,
# detached, to sleep until the deadline.
[ -d "$T/files" ] || { echo "status failed"; echo "| $T is gone"; exit 0; }
bg_install_revert
# Detach it from this session: with systemd, a transient unit (outside the
# session's scope, so logind cannot kill it with the session); otherwise
# its own session and process group, immune to SIGHUP, stdio on /dev/null.
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
	systemd-run --quiet --collect --unit="$unit" --description="breakglass revert $unit" /bin/sh "$T/revert.sh" arm >/dev/null 2>&1 ||
		{ echo "status failed"; echo "| systemd-run failed"; exit 0; }
else
	setsid nohup /bin/sh "$T/revert.sh" arm </dev/null >/dev/null 2>&1 &
fi
i=0
while [ ! -s "$T/pid" ]; do
	i=$((i + 1))
	if [ "$i" -gt 200 ]; then echo "status failed"; echo "| the revert did not start within 10s"; exit 0; fi
	sleep 0.05
done
pid=$(cat "$T/pid")
kill -0 "$pid" 2>/dev/null || { echo "status failed"; echo "| the revert (pid $pid) exited at once: $(tail -n 5 "$T/revert.log" 2>/dev/null)"; exit 0; }
echo "status armed"
echo "| pid $pid"
