package engine

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakglass/breakglass/internal/transport"
)

// The prover: the one implementation of "make a fresh login and run the
// probe on it", used by verify_access, the transaction's proof and the
// removal guards (proveAccess), recover, and the CLI's control-login
// fallback (which dials itself and keeps the connection: ProveOn).

// ProbeOutputPrefix starts the one line the probe command prints.
const ProbeOutputPrefix = "breakglass-probe"

// VerifyCommand is what a verify login runs: one line with the user name
// (as sshd set LOGNAME for the account it authenticated; id -un when it is
// unset) and whether sudo works without a password, the same line probe
// keys' forced command prints. It forks only for sudo, like the plain
// `id -un; sudo -n true` it is measured against. It is the command line of
// probe_login.sh.
var VerifyCommand = CommandLine(probeLoginScript)

//go:embed probe_login.sh
var probeLoginScript string

// CommandLine returns the one line of script that is neither empty nor a
// comment: a one-line command kept in a .sh file so that shellcheck reads
// it, sent without its comments. It panics unless there is exactly one
// such line (a defect of the embedded file, which any test finds).
func CommandLine(script string) string {
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

// --- proving the ways in after a change ---

// ErrAccessNotProven means the fresh logins after a change did not show
// that the control user and enough break-glass users can still log in.
var ErrAccessNotProven = errors.New("fresh logins failed")

// proveCommitMargin is the time proveAccess leaves to commit before the
// revert deadline.
const proveCommitMargin = 3 * time.Second

// proveRetryDelay separates the two attempts of a login dropped before
// authentication: a daemon that was just reloaded may need a moment before
// it listens again, and sshd may have been busy with others' connections.
var proveRetryDelay = time.Second

// proveAccess opens fresh logins over path for the control user
// (authenticating as the control connection does) and every break-glass
// login of env, in parallel but no more at once than the host's sshd lets
// in (see proveParallel), each running VerifyCommand, and requires the
// control user and at least env.MinWorking break-glass users to succeed
// before by (the revert deadline, less a margin). A login dropped before
// authentication is tried once more; a login sshd refused is never
// repeated (OpenSSH 9.8+ penalises the address for it). It returns a
// summary for the report, or an error wrapping ErrAccessNotProven.
//
// settings are sshd settings just put in force (the sshd module's), which
// may lower the bound on logins at once; nil when none.
func proveAccess(ctx context.Context, env *Env, p Path, by time.Time, settings []Setting, doubt Doubt) (string, error) {
	if env.Dial == nil {
		return "", fmt.Errorf("%w: no way to open fresh logins", ErrAccessNotProven)
	}
	// Leave time to commit before the revert fires: a proof that ends
	// after it would prove the restored state, not the change.
	lim := time.Until(by) - proveCommitMargin
	if lim <= 0 {
		return "", fmt.Errorf("%w: the revert fires at %s, too soon to prove the change (applying it took too long for the deadline)", ErrAccessNotProven, by.Format("15:04:05"))
	}
	ctx, cancel := context.WithTimeout(ctx, lim)
	defer cancel()
	type attempt struct {
		login Login
		err   error
	}
	logins := append([]Login{{User: env.ControlUser}}, env.Logins...)
	results := make([]attempt, len(logins))
	parallel, limits := proveParallel(env, settings)
	// The logins likely to get in first: a user in doubt goes last, so
	// that its refusal cannot get this address penalised before the
	// others are proven.
	order := make([]int, len(logins))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return order[a] == 0 || (order[b] != 0 && doubt[logins[order[a]].User] == "" && doubt[logins[order[b]].User] != "")
	})
	eachLogin(len(logins), parallel, func(n int) {
		i := order[n]
		l := logins[i]
		if err := ctx.Err(); err != nil {
			results[i] = attempt{l, err}
			return
		}
		pr := Prove(ctx, env.Dial, l.User, l.KeyFile, p)
		if pr.Outcome == ProbeDropped && ctx.Err() == nil {
			select {
			case <-time.After(proveRetryDelay):
				pr = Prove(ctx, env.Dial, l.User, l.KeyFile, p)
			case <-ctx.Done():
			}
		}
		results[i] = attempt{l, pr.Err}
	})
	dropped := func(err error) string {
		if droppedBeforeAuth(err) {
			return fmt.Sprintf(" (dropped before authentication twice; logins made %d at a time, %s)", parallel, limits)
		}
		return ""
	}

	var problems, okUsers, failedUsers []string
	if err := results[0].err; err != nil {
		problems = append(problems, fmt.Sprintf("the control user %s cannot log in: %v%s", env.ControlUser, err, dropped(err)))
	} else {
		okUsers = append(okUsers, env.ControlUser+" (control)")
	}
	working := 0
	for _, a := range results[1:] {
		if a.err != nil {
			failedUsers = append(failedUsers, fmt.Sprintf("%s (%v%s)", a.login.User, a.err, dropped(a.err)))
			continue
		}
		working++
		okUsers = append(okUsers, a.login.User)
	}
	need := max(env.MinWorking, 0)
	if working < need {
		problems = append(problems, fmt.Sprintf("%d of %d break-glass users can log in, fewer than min_working %d (failing: %s)", working, len(logins)-1, need, strings.Join(failedUsers, "; ")))
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("%w over path %s: %s", ErrAccessNotProven, p.Name, strings.Join(problems, "; "))
	}
	summary := "fresh logins ok: " + strings.Join(okUsers, ", ")
	if len(failedUsers) > 0 {
		summary += "; failing (within min_working): " + strings.Join(failedUsers, "; ")
	}
	return summary, nil
}

// proveUnknownParallel is how many proof logins run at once on a host
// whose MaxStartups this run has not read: well under sshd's default 10.
const proveUnknownParallel = 4

// proveParallel returns how many fresh logins proveAccess opens at once on
// env's host, and what bounded it, for messages. Until sshd accepts a key
// a login is one of its unauthenticated connections, which it drops
// (before any authentication) beyond the start value of MaxStartups
// (start:rate:full, default 10:30:100) and beyond PerSourceMaxStartups per
// address (all proof logins come from this one). The bound is
// LoginParallel, at most the start value less two (left to the operator's
// own connections), at most PerSourceMaxStartups. It reads what the run
// gathered already (the sshd module's facts, else any user's effective
// configuration), and settings just put in force; with none of them known,
// proveUnknownParallel. MaxSessions bounds sessions within one connection
// and does not matter here: every proof login opens one session.
func proveParallel(env *Env, settings []Setting) (int, string) {
	var startups, perSource []string
	if env.Facts != nil {
		var view SSHDView
		env.Facts.Range(func(_ string, v any) bool {
			if l, ok := v.(StartupLimits); ok {
				if st, ps := l.StartupLimits(); st != "" {
					startups, perSource = []string{st}, []string{ps}
					return false
				}
			}
			if sv, ok := v.(SSHDView); ok && view == nil {
				if st, _ := sv.SSHDSetting("maxstartups"); st != "" {
					view = sv
				}
			}
			return true
		})
		if startups == nil && view != nil {
			st, _ := view.SSHDSetting("maxstartups")
			ps, _ := view.SSHDSetting("persourcemaxstartups")
			startups, perSource = []string{st}, []string{ps}
		}
	}
	for _, st := range settings {
		switch strings.ToLower(st.Keyword) {
		case "maxstartups":
			startups = append(startups, st.Value)
		case "persourcemaxstartups":
			perSource = append(perSource, st.Value)
		}
	}
	n, known := LoginParallel, false
	var why []string
	for _, v := range startups {
		begin, _, _ := strings.Cut(v, ":")
		if b, err := strconv.Atoi(begin); err == nil {
			n, known = min(n, max(1, b-2)), true
			why = append(why, "sshd MaxStartups "+v)
		}
	}
	for _, v := range perSource {
		if b, err := strconv.Atoi(v); err == nil && b > 0 {
			n = min(n, b)
			why = append(why, "PerSourceMaxStartups "+v)
		}
	}
	if !known {
		n = min(n, proveUnknownParallel)
		why = append(why, "sshd's MaxStartups unknown")
	}
	return n, strings.Join(why, ", ")
}

// droppedBeforeAuth reports whether a login ended before sshd judged any
// key: no TCP connection (a daemon being reloaded), or the connection
// closed or reset during the SSH handshake (MaxStartups, PerSourcePenalties,
// a restarting daemon). Only such a login is tried again: a refused one
// would count as another failed authentication against this address.
func droppedBeforeAuth(err error) bool {
	var de *transport.DialError
	return errors.As(err, &de) && (de.Stage == transport.StageConnect || de.Stage == transport.StageHandshake)
}

// LoginParallel bounds the fresh logins breakglass opens at once on one
// host (verify_access's default parallel, and the most the prover opens):
// every login is an unauthenticated connection until sshd accepts its key,
// and sshd drops new ones beyond MaxStartups (by default from 10 on).
const LoginParallel = 8

// eachLogin calls login(i) for every i below n, in order, at most limit
// at a time (at least one), and returns when every call has returned.
// verify_access and proveAccess share it, so both stay under the bound.
func eachLogin(n, limit int, login func(i int)) {
	limit = max(1, min(limit, n))
	next := make(chan int)
	var wg sync.WaitGroup
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				login(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Doubt maps a user to the lockout cause its facts showed when the plan
// was made ("StrictModes refuses /home/bg"): the prover makes that user's
// logins last, so that a refusal sshd will likely give cannot get this
// address penalised before the others are proven.
type Doubt map[string]string

// String lists the users in doubt with their causes, sorted by user.
func (d Doubt) String() string {
	users := make([]string, 0, len(d))
	for u := range d {
		users = append(users, u)
	}
	sort.Strings(users)
	for i, u := range users {
		users[i] = u + " (" + d[u] + ")"
	}
	return strings.Join(users, ", ")
}

// proveWithout proves that the control user and env.MinWorking of env's
// break-glass logins, those leftOut left out, log in on the direct path:
// the guard of a change that takes ways in away.
func proveWithout(ctx context.Context, env *Env, doubt Doubt, leftOut func(Login) bool) error {
	others := *env
	others.Logins = nil
	for _, l := range env.Logins {
		if !leftOut(l) {
			others.Logins = append(others.Logins, l)
		}
	}
	_, err := proveAccess(ctx, &others, Path{Name: "direct"}, time.Now().Add(2*time.Minute+proveCommitMargin), nil, doubt)
	return err
}
