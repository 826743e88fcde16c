package tasks

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/breakglass/breakglass/internal/transport"
)

// The prover: the one implementation of "make a fresh login and run the
// probe on it", used by verify_access, the transaction's proof and the
// removal guards (ProveAccess), recover, and the CLI's control-login
// fallback (which dials itself and keeps the connection: ProveOn).

// ProbeOutputPrefix starts the one line the probe command prints.
const ProbeOutputPrefix = "breakglass-probe"

// VerifyCommand is what a verify login runs: one line with the user name
// (as sshd set LOGNAME for the account it authenticated; id -un when it is
// unset) and whether sudo works without a password, the same line probe
// keys' forced command prints. It forks only for sudo, like the plain
// `id -un; sudo -n true` it is measured against. It is the command line of
// probe_login.sh.
var VerifyCommand = commandLine(probeLoginScript)

//go:embed probe_login.sh
var probeLoginScript string

// commandLine returns the one line of script that is neither empty nor a
// comment: a one-line command kept in a .sh file so that shellcheck reads
// it, sent without its comments. It panics unless there is exactly one
// such line (a defect of the embedded file, which any test finds).
func commandLine(script string) string {
	var line string
	n := 0
	for _, l := range strings.Split(script, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			line, n = l, n+1
		}
	}
	if n != 1 {
		panic(fmt.Sprintf("want one command line in the script, found %d", n))
	}
	return line
}

// ProbeLimit bounds what the probe's login may print: the probe is one
// short line, but the user's login scripts print whatever they like.
const ProbeLimit = 64 << 10

// Outcome is how one probe login ended.
type Outcome int

const (
	// ProbeOK: logged in as the user, and the probe answered.
	ProbeOK Outcome = iota
	// ProbeRefused: sshd refused the key.
	ProbeRefused
	// ProbePenalised: closed before authentication on every try while
	// sshd penalises this address (ErrLoginPenalised); access not judged.
	ProbePenalised
	// ProbeNotRepeated: not made, sshd refused the same login earlier in
	// this run (ErrLoginNotRepeated).
	ProbeNotRepeated
	// ProbeDropped: no connection, or closed before authentication.
	ProbeDropped
	// ProbeNoLogin: the login failed another way (key file, host key, …).
	ProbeNoLogin
	// ProbeNoSession: logged in, but the command failed or the probe did
	// not answer (missing shell, forced password change, nologin).
	ProbeNoSession
	// ProbeWrongUser: logged in, but as another user.
	ProbeWrongUser
)

var outcomeNames = [...]string{"ok", "refused", "penalised", "not-repeated", "dropped", "no-login", "no-session", "wrong-user"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Proof is the result of one probe login.
type Proof struct {
	Outcome Outcome
	// Sudo is the probe's answer to sudo -n true (only with ProbeOK).
	Sudo bool
	// Err says why the outcome is not ProbeOK; nil with ProbeOK.
	Err error
	// SourcePort is the client port of the login's connection (0 when
	// unknown), set also for a refused login.
	SourcePort int
	// MS is how long the login and the probe took.
	MS int64
}

// OK reports whether the login was made as the user and the probe answered.
func (p Proof) OK() bool { return p.Outcome == ProbeOK }

// Prove makes a fresh login as user with keyFile over path through d (the
// login gate of a run: GateLogins) and runs the probe on it, then closes
// it.
func Prove(ctx context.Context, d LoginDialer, user, keyFile string, path Path) (pr Proof) {
	start := time.Now()
	defer func() { pr.MS = time.Since(start).Milliseconds() }()
	var port atomic.Int64
	r, closeFn, err := d.Login(WithSourcePort(ctx, func(p int) { port.Store(int64(p)) }), user, keyFile, path)
	pr.SourcePort = int(port.Load())
	if err != nil {
		return Proof{Outcome: dialOutcome(err), Err: err, SourcePort: pr.SourcePort}
	}
	defer closeFn()
	p := ProveOn(ctx, r, user)
	p.SourcePort = pr.SourcePort
	return p
}

// ProveOn runs the probe on a login just made as user (for a caller that
// dials itself and keeps the connection when it works) and judges its
// answer; what it reads is bounded by ProbeLimit.
func ProveOn(ctx context.Context, r Runner, user string) Proof {
	out, err := r.Run(transport.WithOutputLimit(ctx, ProbeLimit), VerifyCommand, nil)
	if err != nil {
		return Proof{Outcome: ProbeNoSession, Err: fmt.Errorf("logged in, but the command failed: %w", err)}
	}
	got, sudo, ok := ParseProbe(out)
	switch {
	case !ok:
		return Proof{Outcome: ProbeNoSession, Err: fmt.Errorf("logged in, but the probe answered %q", probeFirstLine(string(out)))}
	case got != user:
		return Proof{Outcome: ProbeWrongUser, Err: fmt.Errorf("logged in as %q, not %q", got, user)}
	}
	return Proof{Outcome: ProbeOK, Sudo: sudo}
}

// dialOutcome names how a fresh login's dial failed.
func dialOutcome(err error) Outcome {
	switch {
	case errors.Is(err, ErrLoginPenalised):
		return ProbePenalised
	case errors.Is(err, ErrLoginNotRepeated):
		return ProbeNotRepeated
	case loginRefused(err):
		return ProbeRefused
	case droppedBeforeAuth(err):
		return ProbeDropped
	}
	return ProbeNoLogin
}

// ParseProbe reads the probe command's line.
func ParseProbe(out []byte) (user string, sudo, ok bool) {
	for _, line := range strings.Split(string(out), "\n") {
		rest, found := strings.CutPrefix(strings.TrimSpace(line), ProbeOutputPrefix+" ")
		if !found {
			continue
		}
		var u, s string
		for _, f := range strings.Fields(rest) {
			if k, val, ok := strings.Cut(f, "="); ok {
				switch k {
				case "user":
					u = val
				case "sudo":
					s = val
				}
			}
		}
		if u != "" {
			return u, s == "ok", true
		}
	}
	return "", false, false
}

func probeFirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
