package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/tasks"
)

// logLines is how many of sshd's log lines a finding shows per user.
const logLines = 20

// logLineMax bounds each of those lines (bytes): a log line may quote
// what a client sent.
const logLineMax = 1000

// unexplained reports the failed logins of verify_access (env.Facts under
// tasks.FactAccess) that no finding explains, with sshd's log lines for
// them. Reading the log is a second round trip, made only when needed:
// the logins ran after the facts were gathered.
func (c *checker) unexplained(ctx context.Context, r tasks.Runner, env *tasks.Env) error {
	v, _ := env.Facts.Get(tasks.FactAccess)
	rows, _ := v.([]tasks.Access)
	var todo []tasks.Access
	for _, a := range rows {
		if a.Status == "not-repeated" {
			// Not made: sshd refused the same login earlier in the run,
			// and that row is judged.
			continue
		}
		sudoOnly := a.OK && a.Sudo != nil && !*a.Sudo
		if a.OK && !sudoOnly {
			continue
		}
		anyID := func(string) bool { return true }
		if c.has(a.User, SeverityLockout, anyID) || c.has("", SeverityLockout, anyID) {
			continue
		}
		if sudoOnly && (c.has(a.User, SeverityRisk, isSudoID) || c.has("", SeverityRisk, isSudoID)) {
			continue
		}
		if shell.ValidUser(a.User) != nil {
			continue
		}
		todo = append(todo, a)
	}
	if len(todo) == 0 {
		return nil
	}
	logs, err := readLogs(ctx, r, todo, tasks.ConnOf(env).Client)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		logs = nil
	}
	for _, a := range todo {
		what := "login"
		if a.OK {
			what = "sudo -n true after the login"
		}
		detail := fmt.Sprintf("%s as %s over %s failed (%s), and no check found a cause", what, a.User, a.Path, strings.TrimSpace(a.Error))
		which := "the latest of " + a.User + " from this client"
		if a.SourcePort > 0 {
			which = fmt.Sprintf("client port %d", a.SourcePort)
		}
		l := logs[attemptKey(a)]
		if penalised(l) || a.Status == "penalised" {
			// OpenSSH ≥ 9.8 dropped the connection for this address's
			// earlier refusals: says nothing about this user.
			c.add(a.User, "login-penalised", SeverityRisk, "",
				fmt.Sprintf("%s as %s over %s failed (%s) because sshd penalised this controller's address for earlier refused logins (PerSourcePenalties), not because of %s: %s", what, a.User, a.Path, strings.TrimSpace(a.Error), a.User, strings.Join(l, "\n")),
				"exempt the controller's address (PerSourcePenaltyExemptList), fix the refused logins, and run again after the penalty")
			continue
		}
		switch {
		case err != nil:
			detail += fmt.Sprintf("; sshd's log could not be read: %v", err)
		case len(l) == 0:
			detail += "; sshd's log has no line about that connection (" + which + ")"
		default:
			detail += ". sshd's log of that connection (" + which + "):\n" + strings.Join(l, "\n")
		}
		c.add(a.User, "login-failed-unexplained", SeverityLockout, "", detail,
			"raise sshd's LogLevel to VERBOSE (sshd module: {LogLevel: VERBOSE}), log in again with ssh -v, and read sshd's log")
	}
	return nil
}

func isSudoID(id string) bool { return strings.HasPrefix(id, "sudo-") }

// penalised reports whether sshd's lines of a connection say it dropped it
// for a per-source penalty (OpenSSH ≥ 9.8: "drop connection #N from
// [IP]:PORT on [IP]:PORT penalty: …").
func penalised(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, "drop connection") && strings.Contains(l, "penalty") {
			return true
		}
	}
	return false
}

// attemptKey names a login attempt in readLogs' answer.
func attemptKey(a tasks.Access) string { return fmt.Sprintf("%s %d", a.User, a.SourcePort) }

// readLogs returns, for each attempt (attemptKey), sshd's log lines of its
// connection: the one from its client port when known, else the user's
// latest from client ("" for any client); the failed attempt, not the
// older connections around it. Lines come from the journal where journald
// runs (sshd's, sshd-session's and sshd-auth's lines, whichever unit), else /var/log/auth.log (or /var/log/secure), the
// file sshd -E writes in the lab.
func readLogs(ctx context.Context, r tasks.Runner, attempts []tasks.Access, client string) (map[string][]string, error) {
	var b strings.Builder
	b.WriteString(`LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
{
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
`)
	fmt.Fprintf(&b, "bg_client=%s\n", shell.Quote(client))
	b.WriteString("for a in")
	seen := map[string]bool{}
	for _, a := range attempts {
		if k := attemptKey(a); !seen[k] {
			seen[k] = true
			b.WriteString(" " + shell.Quote(fmt.Sprintf("%s:%d", a.User, a.SourcePort)))
		}
	}
	fmt.Fprintf(&b, `; do
	u=${a%%%%:*} p=${a#*:}
	[ "$p" != 0 ] || p=
	bg_log | cut -c 1-%d | awk -v u="$u" -v p="$p" -v ip="$bg_client" %s | tail -n %d | while IFS= read -r l; do printf 'log %%s %%s %%s\n' "$u" "${p:-0}" "$l"; done
done
} </dev/null
`, logLineMax, shell.Quote(attemptAwk), logLines)
	out, err := r.Run(ctx, "/bin/sh -s", []byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("read sshd's log: %w", err)
	}
	logs := map[string][]string{}
	for _, l := range strings.Split(string(out), "\n") {
		// sshd -E FILE ends its lines in "\r\n".
		rest, ok := strings.CutPrefix(strings.TrimSuffix(l, "\r"), "log ")
		if !ok {
			continue
		}
		u, rest, _ := strings.Cut(rest, " ")
		port, line, _ := strings.Cut(rest, " ")
		logs[u+" "+port] = append(logs[u+" "+port], line)
	}
	return logs, nil
}

// attemptAwk selects one connection's lines from sshd's log (variables u,
// the user, p, the attempt's client port or "", and ip, the client address
// or ""): a connection is a client port ("IP port N"), and the attempt is
// the connection from port p, or when p is unknown the one that names u
// and began last. Where lines carry sshd's pid (syslog, journald: "sshd[PID]:",
// OpenSSH 10's "sshd-session[PID]:" and "sshd-auth[PID]:"), it is every
// line of that pid from the connection's first line until the pid names
// another port; where they do not (sshd -E FILE), every line naming its
// port.
const attemptAwk = `
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
`
