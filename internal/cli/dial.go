package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/runner"
	"github.com/breakglass/breakglass/internal/transport"
	"github.com/breakglass/breakglass/tasks"
)

// fallbackDialer opens the control connection of each host. It first tries
// the inventory's way in (or, for recover, the locked-out user); when sshd
// refuses that login, it tries each break-glass user of the playbook's
// verify_access tasks on each of their paths until one gets in. A host
// whose key is unknown or changed, or that does not answer, gets no second
// try: that is no login problem.
type fallbackDialer struct {
	d    *transport.Dialer
	plan *plan
	jobs map[string]*runner.Job
	// first replaces the plain dial of the inventory's target (recover).
	first func(ctx context.Context, t transport.Target) (runner.Conn, error)
	// probe replaces dialProbe (tests).
	probe func(ctx context.Context, t transport.Target, user, key string, path engine.Path) (runner.Conn, error)
}

func newFallbackDialer(d *transport.Dialer, p *plan, jobs []*runner.Job) *fallbackDialer {
	byName := make(map[string]*runner.Job, len(jobs))
	for _, j := range jobs {
		byName[j.Name] = j
	}
	return &fallbackDialer{d: d, plan: p, jobs: byName}
}

// fellBack is a control connection made as a break-glass user because the
// inventory's user could not log in; the runner reports that as a lockout.
type fellBack struct {
	runner.Conn
	note string
}

// StartShell starts a long-lived shell on the connection, when it can.
func (f *fellBack) StartShell(ctx context.Context, cmd string) (*transport.Shell, error) {
	if s, ok := f.Conn.(transport.ShellStarter); ok {
		return s.StartShell(ctx, cmd)
	}
	return nil, errors.New("this connection cannot start a shell")
}

// Hold starts a command held open on the connection (the host's run
// lock), when it can.
func (f *fellBack) Hold(ctx context.Context, cmd string, stdin []byte) (string, func(), error) {
	if h, ok := f.Conn.(transport.Holder); ok {
		return h.Hold(ctx, cmd, stdin)
	}
	return "", nil, errors.New("this connection cannot hold a session open")
}

// FallbackNote says who could not log in and who got in instead.
func (f *fellBack) FallbackNote() string { return f.note }

// preauthRetryDelay separates the dials of a control connection sshd
// closed before authentication; preauthRetryMargin is the least time left
// before the dial's deadline for another try.
var (
	preauthRetryDelay  = 2 * time.Second
	preauthRetryMargin = 5 * time.Second
)

// closedBeforeAuth reports whether err is a dial that sshd ended before any
// authentication (how it drops a penalised or surplus connection).
func closedBeforeAuth(err error) bool { return engine.ClosedInHandshake(err) }

func isLoginRefused(err error) bool {
	var de *transport.DialError
	return errors.As(err, &de) && de.Stage == transport.StageAuth
}

func (f *fallbackDialer) Dial(ctx context.Context, t transport.Target) (runner.Conn, error) {
	var (
		c        runner.Conn
		firstErr error
	)
	dial := func() {
		c = nil
		if f.first != nil {
			c, firstErr = f.first(ctx, t)
			return
		}
		var tc *transport.Client
		tc, firstErr = f.d.Dial(ctx, t)
		if firstErr == nil {
			c = tc
		}
	}
	dial()
	// sshd closes a connection before authentication when this address is
	// penalised (OpenSSH ≥ 9.8's PerSourcePenalties, earned by refused
	// logins, e.g. a locked-out user's in the previous run) or when too
	// many are unauthenticated (MaxStartups). Neither says the host is
	// down, both end by themselves, and a dropped connection earns no
	// penalty: try again until the dial's deadline is near.
	tries := 1
	for closedBeforeAuth(firstErr) {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) < preauthRetryDelay+preauthRetryMargin {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(preauthRetryDelay):
		}
		if ctx.Err() != nil {
			break
		}
		dial()
		tries++
	}
	if tries > 1 && closedBeforeAuth(firstErr) {
		firstErr = fmt.Errorf("%w (closed before authentication on each of %d tries: this address may be penalised by sshd's PerSourcePenalties for refused logins, or over its MaxStartups)", firstErr, tries)
	}
	if firstErr == nil {
		f.remember(t.Name, c)
		return c, nil
	}
	if f.first == nil && !isLoginRefused(firstErr) {
		return nil, firstErr
	}
	job := f.jobs[t.Name]
	if job == nil || len(job.Fallback) == 0 || ctx.Err() != nil {
		return nil, firstErr
	}
	errs := []string{firstErr.Error()}
	type way struct {
		user, key string
		path      engine.Path
	}
	got := func(c runner.Conn, w way) runner.Conn {
		if f.first != nil {
			return c
		}
		f.remember(t.Name, c)
		return &fellBack{Conn: c, note: fmt.Sprintf("the control user %s cannot log in (%v); reached the host as break-glass user %s via %s instead", t.User, firstErr, w.user, w.path.Name)}
	}
	probe := f.probe
	if probe == nil {
		probe = f.dialProbe
	}
	// Each way in is tried once, in the playbook's order; a refused one is
	// never tried again (another refusal only adds to this address's
	// penalty). Those closed before authentication are tried again below.
	var cut []way
	for _, vt := range job.Fallback {
		v, ok := vt.Mod.(tasks.LoginSource)
		if !ok {
			continue
		}
		logins, _ := v.SafetyLogins(f.plan.pb.Dir)
		for _, l := range logins {
			for _, p := range v.WaysIn() {
				w := way{l.User, l.KeyFile, p}
				c, err := probe(ctx, t, w.user, w.key, w.path)
				if err == nil {
					return got(c, w), nil
				}
				errs = append(errs, err.Error())
				if engine.ClosedInHandshake(err) {
					cut = append(cut, w)
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
		}
	}
	// No way in got in, and some were closed before authentication: sshd
	// may be penalising this address (OpenSSH >= 9.8), for the refusal of
	// the inventory's user just now among others. A penalty ends by
	// itself: try those again as long as one can last, within the dial's
	// deadline.
	end := time.Now().Add(engine.PenaltyWait(1))
	for len(cut) > 0 {
		next := time.Now().Add(preauthRetryDelay)
		if dl, ok := ctx.Deadline(); next.After(end) || ok && time.Until(dl) < preauthRetryDelay+preauthRetryMargin {
			errs = append(errs, fmt.Sprintf("%d way(s) in were closed before authentication until %s: this address may be penalised by sshd's PerSourcePenalties for refused logins", len(cut), time.Now().Format("15:04:05")))
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(preauthRetryDelay):
		}
		var still []way
		for _, w := range cut {
			c, err := probe(ctx, t, w.user, w.key, w.path)
			if err == nil {
				return got(c, w), nil
			}
			if engine.ClosedInHandshake(err) {
				still = append(still, w)
			} else {
				errs = append(errs, err.Error())
			}
		}
		cut = still
	}
	return nil, &transport.DialError{Target: t.Name, Stage: transport.StageAuth, Err: errors.New("no way in: " + strings.Join(errs, "; "))}
}

// remember keeps the host key verified on host's control connection.
func (f *fallbackDialer) remember(host string, c runner.Conn) {
	if hk, ok := c.(interface{ HostKey() ssh.PublicKey }); ok && hk.HostKey() != nil {
		f.plan.hostKeys.Store(host, hk.HostKey())
	}
}

// dialProbe logs in as user by path and runs the probe: sshd accepts some
// locked-out users and then ends the session (missing shell, forced
// password change), so only a command proves the login.
func (f *fallbackDialer) dialProbe(ctx context.Context, t transport.Target, user, key string, path engine.Path) (runner.Conn, error) {
	tt, err := pathTarget(f.plan, t, user, key, path)
	if err != nil {
		return nil, fmt.Errorf("%s via %s: %w", user, path.Name, err)
	}
	c, err := f.d.Dial(ctx, tt)
	if err != nil {
		return nil, fmt.Errorf("%s via %s: %w", user, path.Name, err)
	}
	if pr := engine.ProveOn(ctx, c, user); !pr.OK() {
		c.Close()
		return nil, fmt.Errorf("%s via %s: no working session: %w", user, path.Name, pr.Err)
	}
	return c, nil
}
