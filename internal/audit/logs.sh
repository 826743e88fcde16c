# shellcheck shell=sh
# sshd's log lines of each failed login asked about. readLogs in
# unexplained.go puts the header and attempt.sh (bg_attempt) before this
# script:
#   bg_client    the controller's address as the host sees it, or ""
#   bg_attempts  words USER:PORT (checked names; PORT 0: not known, the
#                user's latest connection from bg_client)
#   bg_linemax   the most bytes of a line kept
#   bg_lines     the most lines kept per attempt
# It prints "log USER PORT LINE".
# shellcheck disable=SC2154 # bg_client, bg_attempts, bg_linemax, bg_lines: set by the header
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
{
# Lines come from the journal where journald runs (sshd's, sshd-session's
# and sshd-auth's, whichever unit), else /var/log/auth.log (or
# /var/log/secure), the file sshd -E writes in the lab.
bg_log() {
	if [ -S /run/systemd/journal/socket ] && command -v journalctl >/dev/null 2>&1; then
		# By the name sshd logs under, not by unit: journald learns a
		# line's unit from the sender's /proc entry, which a refused
		# connection's process may have left already.
		journalctl -t sshd -t sshd-session -t sshd-auth --since -10min --no-pager -o short-iso 2>/dev/null
		return
	fi
	for f in /var/log/auth.log /var/log/secure; do
		if [ -r "$f" ]; then tail -n 5000 -- "$f"; return; fi
	done
}
set -f
for a in $bg_attempts; do
	u=${a%%:*} p=${a#*:}
	[ "$p" != 0 ] || p=
	bg_log | cut -c "1-$bg_linemax" | bg_attempt "$u" "$p" "$bg_client" | tail -n "$bg_lines" | while IFS= read -r l; do printf 'log %s %s %s\n' "$u" "${p:-0}" "$l"; done
done
} </dev/null
