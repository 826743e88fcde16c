// Package runner runs a playbook's tasks on many hosts at once: a bounded
// pool of workers, one control connection per host reused by every task,
// the facts of all tasks gathered in one round trip, and one host's failure
// never stopping or slowing the others.
package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/transport"
	"github.com/breakglass/breakglass/tasks"
)

// Conn is a control connection to one host.
type Conn interface {
	Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error)
	Close() error
	User() string
	PublicKey() ssh.PublicKey
	LocalAddr() string
	RemoteAddr() string
}

// Dialer opens control connections.
type Dialer interface {
	Dial(ctx context.Context, t transport.Target) (Conn, error)
}

// Job is the work for one host: its connection target and the tasks of
// every play that selects it, already built for this host.
type Job struct {
	Name   string
	Target transport.Target
	Plays  []Play
	// BecomePassword is the host's own sudo password
	// (ansible_become_password); it wins over Options.BecomePassword.
	BecomePassword string
	// Fallback holds the verify_access tasks whose logins a recover run
	// may connect with when the inventory's user cannot get in.
	Fallback []Task
}

// Play is the part of one play that runs on a host.
type Play struct {
	Name   string
	Become bool
	Tasks  []Task
}

// Task is one task built for one host.
type Task struct {
	Name   string
	Module string
	Mod    tasks.Module
}

// Options control a run.
type Options struct {
	Forks          int
	Timeout        time.Duration // connect, and each remote command
	Check          bool
	Diff           bool
	Dir            string // playbook directory
	BecomePassword string
	// KeepGoing runs a host's later tasks after one fails (audit: every
	// check must run); otherwise a failed task ends the host's run.
	KeepGoing bool
	// NoControl runs without a control connection: every task makes its
	// own logins (verify, whose plays hold only verify_access). A host
	// reached directly gets a TCP connect instead, so that one that is
	// down is still reported unreachable.
	NoControl bool
	// Logins opens the fresh logins of verify_access and the safety net.
	// It may be nil.
	Logins func(job *Job) engine.LoginDialer
	// Progress is called after each host with the counts so far.
	Progress func(done, total, failed int)
	// HostDone is called once per host when it is finished, never
	// concurrently.
	HostDone func(h *report.Host)
	// LockNote says which run this is (the command line); with the
	// controller's name, pid, user and the start time it is written into
	// each host's run lock, for the message another run shows.
	LockNote string
}

// Run runs every job and returns the report (not yet settled for exit
// codes: call Settle).
func Run(ctx context.Context, command string, d Dialer, jobs []*Job, o Options) *report.Report {
	r := &report.Report{Version: report.Version, Command: command, Check: o.Check, Started: time.Now().UTC()}
	r.Hosts = make([]*report.Host, len(jobs))
	for i, j := range jobs {
		r.Hosts[i] = &report.Host{Name: j.Name, Address: address(j.Target), Tasks: []report.Task{}, Findings: []report.Finding{}, Access: []report.Access{}}
	}
	forks := o.Forks
	if forks <= 0 {
		forks = 50
	}
	if forks > len(jobs) {
		forks = len(jobs)
	}
	var (
		mu     sync.Mutex
		done   int
		failed int
		wg     sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < forks; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				h := r.Hosts[i]
				runHost(ctx, d, jobs[i], h, o)
				mu.Lock()
				done++
				if h.Error != "" || hostFailed(h) {
					failed++
				}
				if o.Progress != nil {
					o.Progress(done, len(jobs), failed)
				}
				if o.HostDone != nil {
					settleOne(h)
					o.HostDone(h)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range jobs {
		select {
		case next <- i:
		case <-ctx.Done():
			for _, h := range r.Hosts[i:] {
				h.NotDone = true
				h.Error = "interrupted before this host was started"
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	r.Finished = time.Now().UTC()
	r.Settle()
	return r
}

func settleOne(h *report.Host) {
	tmp := report.Report{Hosts: []*report.Host{h}}
	tmp.Settle()
}

func hostFailed(h *report.Host) bool {
	for _, t := range h.Tasks {
		if t.Status == report.StatusFailed {
			return true
		}
	}
	return false
}

func address(t transport.Target) string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// runHost does everything for one host; it writes only to h.
func runHost(ctx context.Context, d Dialer, job *Job, h *report.Host, o Options) {
	start := time.Now()
	defer func() { h.MS = time.Since(start).Milliseconds() }()

	if o.NoControl {
		runLogins(ctx, job, h, o)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	conn, err := d.Dial(dctx, job.Target)
	if err != nil && ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		// The per-host timeout ended the dial: say so, not only "context
		// deadline exceeded".
		err = fmt.Errorf("timed out after %s: %w", o.Timeout, err)
	}
	cancel()
	if err != nil {
		h.Status = report.StatusUnreachable
		h.Error = err.Error()
		if ctx.Err() != nil {
			h.NotDone = true
		}
		return
	}
	defer conn.Close()
	release, err := lockHost(ctx, conn, job, o)
	if err != nil {
		h.Error = err.Error()
		switch {
		case transport.IsUnreachable(err):
			h.Status = report.StatusUnreachable
			h.Error = "connection lost: " + err.Error()
		case ctx.Err() != nil:
			h.NotDone = true
		}
		for _, p := range job.Plays {
			for _, t := range p.Tasks {
				h.Tasks = append(h.Tasks, report.Task{Name: t.Name, Module: t.Module, Status: report.StatusSkipped, Changes: []report.Change{}})
			}
		}
		return
	}
	if release != nil {
		defer release()
	}
	if fb, ok := conn.(interface{ FallbackNote() string }); ok {
		h.Findings = append(h.Findings, report.Finding{
			ID: "control-login-failed", Severity: report.SeverityLockout, User: job.Target.User,
			Detail: fb.FallbackNote(),
			Fix:    "breakglass recover -i INVENTORY PLAYBOOK --user " + job.Target.User + " --yes",
		})
	}

	env := &engine.Env{
		Host:        job.Name,
		ControlUser: conn.User(),
		Check:       o.Check,
		Diff:        o.Diff,
		Dir:         o.Dir,
		Facts:       &engine.Facts{},
	}
	if k := conn.PublicKey(); k != nil {
		env.ControlKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	env.ClientAddr = hostOf(conn.LocalAddr())
	env.ServerAddr = hostOf(conn.RemoteAddr())
	env.ServerPort = portOf(conn.RemoteAddr())
	if o.Logins != nil {
		env.Dial = engine.GateLogins(o.Logins(job), env.Facts, job.Target.Host, job.Target.Port)
	}
	env.Logins, env.MinWorking = safetyLogins(job, o.Dir)

	for _, play := range job.Plays {
		var r engine.Runner = timed{conn, o.Timeout, &h.RoundTrips}
		if play.Become {
			pw := o.BecomePassword
			if job.BecomePassword != "" {
				pw = job.BecomePassword
			}
			b := &transport.Become{Client: conn, Password: pw}
			defer b.Close()
			r = timed{b, o.Timeout, &h.RoundTrips}
		}
		if !runPlay(ctx, r, play, env, h, o) {
			return
		}
	}
}

// lockHost takes the host's run lock (transport.Become.Lock) for the
// whole run of the job: one run per host at a time, so that two runs
// never interleave their edits. It is taken as root, as the job's plays
// become root; a job that never becomes root (and a connection that
// cannot hold a session open, as in unit tests) takes none. The returned
// release is nil when no lock was taken.
func lockHost(ctx context.Context, conn Conn, job *Job, o Options) (release func(), err error) {
	if _, ok := conn.(transport.Holder); !ok {
		return nil, nil
	}
	root := conn.User() == "root"
	for _, p := range job.Plays {
		root = root || p.Become
	}
	if !root {
		return nil, nil
	}
	pw := o.BecomePassword
	if job.BecomePassword != "" {
		pw = job.BecomePassword
	}
	lctx := ctx
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, o.Timeout+transport.LockWait)
		defer cancel()
	}
	b := &transport.Become{Client: conn, Password: pw}
	release, err = b.Lock(lctx, lockNote(o.LockNote), transport.LockWait)
	if err != nil && ctx.Err() == nil && errors.Is(lctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", o.Timeout+transport.LockWait, err)
	}
	return release, err
}

// whoRuns is this controller's name, process and user, and when it
// started, for lock notes.
var whoRuns = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	who := "?"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	return fmt.Sprintf("controller %s, pid %d, user %s, started %s", host, os.Getpid(), who, time.Now().UTC().Format(time.RFC3339))
})

// lockNote says who holds a host: what this run runs, and whoRuns.
func lockNote(what string) string {
	if what == "" {
		what = "breakglass"
	}
	return what + " (" + whoRuns() + ")"
}

// runPlay runs one play's tasks on the host; it returns false when the
// host's run ends (a task failed, or the connection was lost).
//
// The runner owns the order, task by task: gather (every task's facts in
// one round trip before the first) → plan (from facts, no I/O) → batch
// (outside check mode the steps of consecutive plans that may join a
// batch are queued and sent in one round trip: before a plan that may
// not, which is then planned again from the host as the round trip left
// it; before a task whose facts queued steps make stale; and at the end
// of the play) → guard → execute → report. Queued tasks are reported when
// their round trip has run.
func runPlay(ctx context.Context, r engine.Runner, play Play, env *engine.Env, h *report.Host, o Options) bool {
	x := engine.NewExecutor(r, env)
	var all []engine.Query
	for _, t := range play.Tasks {
		all = append(all, t.Mod.Queries()...)
	}
	x.Gather(ctx, all)
	queued := map[int]int{} // task → its index in h.Tasks
	skipFrom := func(i int) {
		for _, rest := range play.Tasks[i:] {
			h.Tasks = append(h.Tasks, report.Task{Name: rest.Name, Module: rest.Module, Status: report.StatusSkipped, Changes: []report.Change{}})
		}
	}
	// flush runs the queued changes and settles the queued tasks' reports;
	// of the facts they make stale it reads again those that the tasks
	// from the from'th on read.
	flush := func(from int) bool {
		if !x.Pending() {
			return true
		}
		ok := true
		want := map[string]bool{}
		for _, t := range play.Tasks[min(from, len(play.Tasks)):] {
			for _, q := range t.Mod.Queries() {
				want[q.Key] = true
			}
		}
		for _, oc := range x.Flush(ctx, func(k string) bool { return want[k] }) {
			tr := &h.Tasks[queued[oc.Task]]
			tr.Changes = []report.Change{}
			tr.Status = report.StatusOK
			if oc.Result != nil {
				for _, c := range oc.Result.Changes {
					tr.Changes = append(tr.Changes, report.Change{What: c.What, Path: c.Path, Diff: diff(c, o.Diff)})
				}
				if oc.Result.Changed || len(oc.Result.Changes) > 0 {
					tr.Status = report.StatusChanged
					forgetRefusals(env, o)
				}
			}
			if oc.Err == nil {
				continue
			}
			ok = false
			tr.Error = oc.Err.Error()
			tr.Status = report.StatusFailed
			if errors.Is(oc.Err, engine.ErrNotRun) {
				tr.Status = report.StatusSkipped
			}
			if ctx.Err() != nil {
				h.NotDone = true
				tr.Error = "interrupted: " + tr.Error
			}
			if transport.IsUnreachable(oc.Err) {
				h.Status = report.StatusUnreachable
				h.Error = "connection lost: " + oc.Err.Error()
			}
		}
		clear(queued)
		return ok
	}
	for i, t := range play.Tasks {
		// Plan from the host as it is: run what is queued first when it
		// makes this task's facts stale, or when the task is a program
		// that reads the host itself.
		planner, plans := t.Mod.(engine.Planner)
		if x.Pending() && (!plans || x.Stale(t.Mod.Queries())) && !flush(i) {
			skipFrom(i)
			return false
		}
		tr := report.Task{Name: t.Name, Module: t.Module, Status: report.StatusOK, Changes: []report.Change{}}
		if ctx.Err() != nil {
			h.NotDone = true
			tr.Status = report.StatusSkipped
			h.Tasks = append(h.Tasks, tr)
			continue
		}
		ts := time.Now()
		var res *engine.Result
		var err error
		isQueued := false
		if plans {
			var p *engine.Plan
			p, err = x.Plan(ctx, planner)
			if err == nil && x.Pending() && !p.MayBatch() {
				fs := time.Now()
				if !flush(i) {
					skipFrom(i)
					return false
				}
				// The flush ran earlier tasks' steps: not this task's time.
				ts = ts.Add(time.Since(fs))
				// Plan again from the host as the flush left it: a plan
				// reads more than the facts it names (the logins its proof
				// tries last come from other users' facts), and the flush
				// changed or forgot some. What it names was read again in
				// the flush's round trip, so this costs none.
				p, err = x.Plan(ctx, planner)
			}
			if err == nil {
				res, isQueued, err = x.Execute(ctx, i, planner, p)
			}
		} else if prog, ok := t.Mod.(tasks.Program); ok {
			res, err = prog.Run(ctx, r, env)
		} else {
			err = fmt.Errorf("internal error: task %q neither plans nor runs", t.Name)
		}
		tr.MS = time.Since(ts).Milliseconds()
		if res != nil {
			for _, c := range res.Changes {
				tr.Changes = append(tr.Changes, report.Change{What: c.What, Path: c.Path, Diff: diff(c, o.Diff)})
			}
			if res.Changed || len(res.Changes) > 0 {
				tr.Status = report.StatusChanged
				forgetRefusals(env, o)
			}
			tr.RolledBack = res.RolledBack
			for _, f := range res.Findings {
				h.Findings = append(h.Findings, report.Finding{ID: f.ID, Severity: f.Severity, User: f.User, Path: f.Path, Detail: f.Detail, Fix: f.Fix})
			}
			for _, a := range res.Access {
				h.Access = append(h.Access, report.Access{User: a.User, Path: a.Path, OK: a.OK, Sudo: a.Sudo, Error: a.Error, MS: a.MS, Status: a.Status})
			}
			if len(res.Access) > 0 {
				prev, _ := env.Facts.Get(engine.FactAccess)
				rows, _ := prev.([]engine.Access)
				env.Facts.Set(engine.FactAccess, append(rows, res.Access...))
			}
		}
		if err != nil {
			tr.Status = report.StatusFailed
			tr.Error = err.Error()
			if ctx.Err() != nil {
				// The run was interrupted during this task: the host is
				// not done, whatever the task's own error says.
				h.NotDone = true
				tr.Error = "interrupted: " + tr.Error
			}
			h.Tasks = append(h.Tasks, tr)
			lost := transport.IsUnreachable(err)
			if lost {
				h.Status = report.StatusUnreachable
				h.Error = "connection lost: " + err.Error()
			}
			if o.KeepGoing && !lost {
				continue
			}
			// Like Ansible, a failed task ends the host's run; what earlier
			// tasks queued still runs.
			flush(len(play.Tasks))
			skipFrom(i + 1)
			return false
		}
		if isQueued {
			queued[i] = len(h.Tasks)
		}
		h.Tasks = append(h.Tasks, tr)
	}
	return flush(len(play.Tasks))
}

// runLogins runs a job whose tasks make their own logins, without a
// control connection: a command run on the host is an error.
func runLogins(ctx context.Context, job *Job, h *report.Host, o Options) {
	if len(job.Target.Jumps) == 0 {
		d := net.Dialer{Timeout: o.Timeout}
		c, err := d.DialContext(ctx, "tcp", address(job.Target))
		if err != nil {
			h.Status = report.StatusUnreachable
			h.Error = err.Error()
			if ctx.Err() != nil {
				h.NotDone = true
			}
			return
		}
		c.Close()
	}
	env := &engine.Env{Host: job.Name, ControlUser: job.Target.User, Dir: o.Dir, Facts: &engine.Facts{}}
	if o.Logins != nil {
		env.Dial = engine.GateLogins(o.Logins(job), env.Facts, job.Target.Host, job.Target.Port)
	}
	env.Logins, env.MinWorking = safetyLogins(job, o.Dir)
	var r engine.Runner = timed{noControl{}, o.Timeout, &h.RoundTrips}
	for _, play := range job.Plays {
		if !runPlay(ctx, r, play, env, h, o) {
			return
		}
	}
}

// noControl is the runner of a run without a control connection.
type noControl struct{}

func (noControl) Run(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("internal error: a command for the control connection in a run that has none")
}

// safetyLogins collects the logins of every verify_access task of the job,
// which the safety net of access-cutting changes proves before committing.
func safetyLogins(job *Job, dir string) ([]engine.Login, int) {
	var all []engine.Login
	seen := map[string]bool{}
	need := 0
	for _, p := range job.Plays {
		for _, t := range p.Tasks {
			v, ok := t.Mod.(tasks.LoginSource)
			if !ok {
				continue
			}
			logins, n := v.SafetyLogins(dir)
			for _, l := range logins {
				if !seen[l.User] {
					seen[l.User] = true
					all = append(all, l)
				}
			}
			need = max(need, n)
		}
	}
	return all, need
}

// timed bounds every remote command by the per-host timeout.
type timed struct {
	r interface {
		Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error)
	}
	d time.Duration
	n *int // round trips; only this host's worker touches it
}

func (t timed) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	*t.n++
	if t.d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.d)
		defer cancel()
	}
	out, err := t.r.Run(ctx, cmd, stdin)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return out, fmt.Errorf("timed out after %s: %w", t.d, err)
	}
	return out, err
}

func diff(c engine.Change, on bool) string {
	if !on || (c.Before == "" && c.After == "") {
		return ""
	}
	return UnifiedDiff(c.Path, c.Before, c.After)
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 22
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 22
	}
	return n
}

// forgetRefusals lets the host's fresh logins try again the logins sshd
// refused before a task changed the host: the change may have fixed them
// (engine.GateLogins never repeats a refused login otherwise).
func forgetRefusals(env *engine.Env, o Options) {
	if f, ok := env.Dial.(interface{ ForgetRefusals() }); ok && !o.Check {
		f.ForgetRefusals()
	}
}
