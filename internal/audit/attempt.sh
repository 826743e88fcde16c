# shellcheck shell=sh
# bg_attempt U P IP: one connection's lines of sshd's log on stdin. U is
# the user, P the attempt's client port or "", IP the client address or "".
# A connection is a client port ("IP port N"), and the attempt is the
# connection from port P, or when P is unknown the one that names U and
# began last. Where lines carry sshd's pid (syslog, journald: "sshd[PID]:",
# OpenSSH 10's "sshd-session[PID]:" and "sshd-auth[PID]:"), it is every
# line of that pid from the connection's first line until the pid names
# another port; where they do not (sshd -E FILE), every line naming its
# port.
bg_attempt() {
	awk -v u="$1" -v p="$2" -v ip="$3" '
	function pidof(s) {
		if (match(s, /sshd(-session|-auth)?\[[0-9]+\]/)) {
			s = substr(s, RSTART, RLENGTH)
			sub(/^[^[]*\[/, "", s)
			sub(/\]$/, "", s)
			return s
		}
		return ""
	}
	{
		line[NR] = $0
		pid[NR] = pidof($0)
		port[NR] = ""
		if (match($0, / port [0-9]+/)) port[NR] = substr($0, RSTART + 6, RLENGTH - 6)
		else if (match($0, /\]:[0-9]+ on /)) port[NR] = substr($0, RSTART + 2, RLENGTH - 6)
		T = port[NR]
		w = " " $0 " "
		if (T == "" || ip != "" && !index(w, " " ip " port " T) && !index(w, "[" ip "]:" T " ")) next
		if (!(T in first)) first[T] = NR
		if (index(w, " " u " ") && (!best || first[T] > first[best])) best = T
	}
	END {
		if (p != "") best = (p in first) ? p : ""
		if (!best) exit
		T = best
		P = pid[first[T]]
		for (i = first[T]; i <= NR; i++) {
			if (P == "") {
				if (port[i] == T) print line[i]
				continue
			}
			if (pid[i] != P) continue
			if (port[i] != "" && port[i] != T) break
			print line[i]
		}
	}
	'
}
