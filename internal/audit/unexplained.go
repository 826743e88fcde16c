package audit

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
)

// logLines is how many of sshd's log lines a finding shows per user.
const logLines = 20

// logLineMax bounds each of those lines (bytes): a log line may quote
// what a client sent.
const logLineMax = 1000

// unexplained reports the failed logins of verify_access (env.Facts under
// engine.FactAccess) that no finding explains, with sshd's log lines for
// them. Reading the log is a second round trip, made only when needed:
// the logins ran after the facts were gathered.
func (c *checker) unexplained(ctx context.Context, r engine.Runner, env *engine.Env) error {
	v, _ := env.Facts.Get(engine.FactAccess)
	rows, _ := v.([]engine.Access)
	var todo []engine.Access
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
	logs, err := readLogs(ctx, r, todo, env.Conn().Client)
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
func attemptKey(a engine.Access) string { return fmt.Sprintf("%s %d", a.User, a.SourcePort) }

// readLogs returns, for each attempt (attemptKey), sshd's log lines of its
// connection: the one from its client port when known, else the user's
// latest from client ("" for any client); the failed attempt, not the
// older connections around it. Lines come from the journal where journald
// runs (sshd's, sshd-session's and sshd-auth's lines, whichever unit), else /var/log/auth.log (or /var/log/secure), the
// file sshd -E writes in the lab.
func readLogs(ctx context.Context, r engine.Runner, attempts []engine.Access, client string) (map[string][]string, error) {
	var words []string
	seen := map[string]bool{}
	for _, a := range attempts {
		if k := attemptKey(a); !seen[k] {
			seen[k] = true
			words = append(words, fmt.Sprintf("%s:%d", a.User, a.SourcePort))
		}
	}
	script := fmt.Sprintf("bg_client=%s\nbg_attempts=%s\nbg_linemax=%d\nbg_lines=%d\n", shell.Quote(client), shell.Quote(strings.Join(words, " ")), logLineMax, logLines) +
		attemptScript + logsScript
	out, err := r.Run(ctx, "/bin/sh -s", []byte(script))
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

// attemptScript is attempt.sh: bg_attempt U P IP, the awk that selects
// one connection's lines from sshd's log.
//
//go:embed attempt.sh
var attemptScript string

// logsScript is logs.sh: it reads the log for each attempt of
// bg_attempts (words USER:PORT: user names are checked, ports numbers).
//
//go:embed logs.sh
var logsScript string
