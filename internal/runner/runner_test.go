package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/transport"
)

// localConn runs commands on this machine: enough to test the runner's own
// logic (pool, isolation, gathering) without a network.
type localConn struct{ user string }

func (c *localConn) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	x := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	x.Stdin = bytes.NewReader(stdin)
	return x.Output()
}
func (c *localConn) Close() error             { return nil }
func (c *localConn) User() string             { return c.user }
func (c *localConn) PublicKey() ssh.PublicKey { return nil }
func (c *localConn) LocalAddr() string        { return "127.0.0.1:50000" }
func (c *localConn) RemoteAddr() string       { return "127.0.0.2:22" }

type fakeDialer struct {
	mu      sync.Mutex
	active  int
	peak    int
	down    map[string]bool
	delay   time.Duration
	dialled atomic.Int32
}

func (d *fakeDialer) Dial(ctx context.Context, t transport.Target) (Conn, error) {
	d.dialled.Add(1)
	d.mu.Lock()
	d.active++
	if d.active > d.peak {
		d.peak = d.active
	}
	d.mu.Unlock()
	defer func() { d.mu.Lock(); d.active--; d.mu.Unlock() }()
	select {
	case <-time.After(d.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.down[t.Name] {
		return nil, &transport.DialError{Target: t.Name, Stage: "connect", Err: errors.New("connection refused")}
	}
	return &localConn{user: "root"}, nil
}

// step is a module that fails on demand.
type step struct {
	fail bool
	ran  *atomic.Int32
}

func (*step) Queries() []engine.Query { return nil }

func (s *step) Run(ctx context.Context, r engine.Runner, env *engine.Env) (*engine.Result, error) {
	s.ran.Add(1)
	if s.fail {
		return nil, errors.New("boom")
	}
	return &engine.Result{Changed: true, Changes: []engine.Change{{What: "did it"}}}, nil
}

func jobsFor(n int, mk func(i int) []Task) []*Job {
	var jobs []*Job
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%03d", i)
		jobs = append(jobs, &Job{Name: name, Target: transport.Target{Name: name, Host: "127.0.0.1"}, Plays: []Play{{Tasks: mk(i)}}})
	}
	return jobs
}

func TestPoolAndIsolation(t *testing.T) {
	var ran atomic.Int32
	d := &fakeDialer{down: map[string]bool{"h003": true}, delay: 5 * time.Millisecond}
	jobs := jobsFor(40, func(i int) []Task {
		return []Task{
			{Name: "first", Module: "step", Mod: &step{fail: i == 7, ran: &ran}},
			{Name: "second", Module: "step", Mod: &step{ran: &ran}},
		}
	})
	var doneCalls atomic.Int32
	r := Run(context.Background(), "apply", d, jobs, Options{Forks: 4, Timeout: time.Second, HostDone: func(*report.Host) { doneCalls.Add(1) }})
	if d.peak > 4 {
		t.Errorf("%d dials at once with --forks 4", d.peak)
	}
	if doneCalls.Load() != 40 {
		t.Errorf("HostDone called %d times", doneCalls.Load())
	}
	if r.Summary.Unreachable != 1 || r.Summary.Failed != 1 || r.Summary.Changed != 38 {
		t.Errorf("summary %+v", r.Summary)
	}
	h7 := r.Hosts[7]
	if h7.Tasks[0].Status != report.StatusFailed || h7.Tasks[1].Status != report.StatusSkipped {
		t.Errorf("failed host tasks: %+v", h7.Tasks)
	}
	// 38 hosts × 2 tasks + 1 task on the failing host
	if ran.Load() != 77 {
		t.Errorf("%d task runs, want 77", ran.Load())
	}
	if r.ExitCode() != 6 {
		t.Errorf("exit %d, want 6", r.ExitCode())
	}
}

func TestCancelMarksHostsNotDone(t *testing.T) {
	var ran atomic.Int32
	d := &fakeDialer{delay: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(80*time.Millisecond, cancel)
	jobs := jobsFor(20, func(int) []Task { return []Task{{Module: "step", Mod: &step{ran: &ran}}} })
	r := Run(ctx, "apply", d, jobs, Options{Forks: 2, Timeout: time.Second})
	if r.Summary.NotDone == 0 || r.Summary.NotDone == 20 {
		t.Fatalf("not done: %d of 20", r.Summary.NotDone)
	}
	if r.ExitCode()&report.ExitFailed == 0 {
		t.Errorf("an interrupted run must not exit 0: %d", r.ExitCode())
	}
}

// facty gathers a fact and checks it arrived before Run.
type facty struct {
	key, script string
	got         *string
}

func (f *facty) Queries() []engine.Query {
	return []engine.Query{{Key: f.key, Script: f.script, Parse: func(b []byte) (any, error) { return string(b), nil }}}
}

func (f *facty) Run(ctx context.Context, r engine.Runner, env *engine.Env) (*engine.Result, error) {
	v, ok := env.Facts.Get(f.key)
	if !ok {
		return nil, fmt.Errorf("fact %s not gathered", f.key)
	}
	*f.got = v.(string)
	return &engine.Result{}, nil
}

// countingConn counts round trips.
type countingConn struct {
	localConn
	n atomic.Int32
}

func (c *countingConn) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c.n.Add(1)
	return c.localConn.Run(ctx, cmd, stdin)
}

type oneConn struct{ c *countingConn }

func (o oneConn) Dial(context.Context, transport.Target) (Conn, error) { return o.c, nil }

func TestFactsInOneRoundTrip(t *testing.T) {
	var a, b, c string
	tricky := "printf 'no newline at the end'"
	jobs := []*Job{{Name: "h", Plays: []Play{{Tasks: []Task{
		{Module: "a", Mod: &facty{key: "a", script: "echo alpha; echo beta", got: &a}},
		{Module: "b", Mod: &facty{key: "b", script: tricky, got: &b}},
		{Module: "c", Mod: &facty{key: "c", script: "cat <<'EOF'\nBREAKGLASS_EOF here\nEOF", got: &c}},
		{Module: "a2", Mod: &facty{key: "a", script: "echo again", got: new(string)}},
	}}}}}
	conn := &countingConn{localConn: localConn{user: "root"}}
	r := Run(context.Background(), "apply", oneConn{conn}, jobs, Options{Forks: 1, Timeout: 5 * time.Second})
	if r.Hosts[0].Status != report.StatusOK {
		t.Fatalf("host: %+v", r.Hosts[0])
	}
	if n := conn.n.Load(); n != 1 {
		t.Errorf("%d round trips for facts, want 1", n)
	}
	if a != "alpha\nbeta\n" || b != "no newline at the end" || c != "BREAKGLASS_EOF here\n" {
		t.Errorf("facts: %q %q %q", a, b, c)
	}
}

func TestUnifiedDiff(t *testing.T) {
	d := UnifiedDiff("/etc/sudoers.d/x", "a\nb\nc\n", "a\nc\nd\n")
	want := "--- /etc/sudoers.d/x (before)\n+++ /etc/sudoers.d/x (after)\n a\n-b\n c\n+d\n"
	if d != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", d, want)
	}
}

// TestRace200Hosts runs 200 hosts, 50 at a time, through gathering, tasks
// that fail on some hosts, hosts that are down, progress and per-host
// callbacks, then again with the run cancelled half-way: under -race (as
// make test runs it) any unsynchronised access shows up. Every host is
// reported exactly once and no goroutine outlives the run.
func TestRace200Hosts(t *testing.T) {
	before := runtime.NumGoroutine()
	down := map[string]bool{}
	for i := 0; i < 200; i += 23 {
		down[fmt.Sprintf("h%03d", i)] = true
	}
	for _, cancelAfter := range []time.Duration{0, 150 * time.Millisecond} {
		var ran atomic.Int32
		d := &fakeDialer{down: down, delay: time.Millisecond}
		jobs := jobsFor(200, func(i int) []Task {
			got := new(string)
			return []Task{
				{Name: "fact", Module: "facty", Mod: &facty{key: "k", script: fmt.Sprintf("echo %d", i), got: got}},
				{Name: "first", Module: "step", Mod: &step{fail: i%17 == 0, ran: &ran}},
				{Name: "second", Module: "step", Mod: &step{ran: &ran}},
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		if cancelAfter > 0 {
			time.AfterFunc(cancelAfter, cancel)
		}
		seen := map[string]int{}
		var last int
		r := Run(ctx, "apply", d, jobs, Options{
			Forks: 50, Timeout: 5 * time.Second,
			Progress: func(done, total, failed int) {
				if done <= last || total != 200 || failed > done {
					t.Errorf("progress %d/%d (%d failed) after %d", done, total, failed, last)
				}
				last = done
			},
			HostDone: func(h *report.Host) { seen[h.Name]++ },
		})
		cancel()
		if d.peak > 50 {
			t.Errorf("%d dials at once with --forks 50", d.peak)
		}
		if len(r.Hosts) != 200 {
			t.Fatalf("%d hosts reported", len(r.Hosts))
		}
		for _, h := range r.Hosts {
			if n := seen[h.Name]; n > 1 || (n == 0 && !h.NotDone) {
				t.Errorf("%s reported %d times (not done: %v)", h.Name, n, h.NotDone)
			}
			if down[h.Name] && !h.NotDone && h.Status != report.StatusUnreachable {
				t.Errorf("%s is down but %s", h.Name, h.Status)
			}
		}
		if cancelAfter == 0 && (r.Summary.Unreachable != len(down) || r.Summary.Failed == 0 || r.Summary.NotDone != 0) {
			t.Errorf("summary %+v", r.Summary)
		}
		if cancelAfter > 0 && r.Summary.NotDone == 0 {
			t.Errorf("cancelled run: nothing reported not done: %+v", r.Summary)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines left running (%d before)", n, before)
	}
}

// TestPlannedAgainAfterFlush: a plan that may not join the batch (it has
// an op, as the sshd transaction and a removal's guard do) is made once
// the queued steps have run. A plan reads more than the facts it names
// (the logins a proof tries last come from other users' facts), so one
// made before the flush would have read what the flush changed: the
// runner plans it again.
func TestPlannedAgainAfterFlush(t *testing.T) {
	file := t.TempDir() + "/f"
	if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var seen string
	jobs := []*Job{{Name: "h", Plays: []Play{{Tasks: []Task{
		{Module: "writes", Mod: &writesFile{file: file, key: "file"}},
		{Module: "reads", Mod: &readsCache{key: "file", seen: &seen}},
	}}}}}
	r := Run(context.Background(), "apply", oneConn{&countingConn{localConn: localConn{user: "root"}}}, jobs, Options{Forks: 1, Timeout: 5 * time.Second})
	if r.Hosts[0].Status != report.StatusOK && r.Hosts[0].Status != report.StatusChanged {
		t.Fatalf("host: %+v", r.Hosts[0])
	}
	// The flush made "file" stale and no later task names it: forgotten.
	if seen != "<nil>" {
		t.Errorf("the plan after the flush saw %q in the cache, want nothing: it was made before the flush", seen)
	}
}

// writesFile plans one step that changes file, making the fact key (the
// file's content) stale.
type writesFile struct{ file, key string }

func (w *writesFile) Queries() []engine.Query { return w.PlanQueries(engine.Conn{}) }
func (w *writesFile) PlanQueries(engine.Conn) []engine.Query {
	return []engine.Query{{Key: w.key, Script: "cat " + shell.Quote(w.file), Parse: func(b []byte) (any, error) { return string(b), nil }}}
}
func (*writesFile) ConnFacts() bool { return false }
func (w *writesFile) Plan(_ *engine.Env, _ []any) (*engine.Plan, error) {
	return &engine.Plan{Steps: []engine.Step{{Change: engine.Change{What: "write " + w.file}, Cmd: "echo new >" + shell.Quote(w.file)}}, Stale: []string{w.key}}, nil
}

// readsCache names no fact, but its plan holds what the facts cache had
// under key when it was made, and its op reports it.
type readsCache struct {
	key  string
	seen *string
}

func (*readsCache) Queries() []engine.Query                { return nil }
func (*readsCache) PlanQueries(engine.Conn) []engine.Query { return nil }
func (*readsCache) ConnFacts() bool                        { return false }
func (r *readsCache) Plan(env *engine.Env, _ []any) (*engine.Plan, error) {
	v, _ := env.Facts.Get(r.key)
	return &engine.Plan{Ops: []engine.Op{&reportOp{fmt.Sprint(v), r.seen}}}, nil
}

type reportOp struct {
	what string
	to   *string
}

func (o *reportOp) String() string         { return o.what }
func (*reportOp) ReadOnly() bool           { return true }
func (*reportOp) Planned() []engine.Change { return nil }
func (o *reportOp) Run(context.Context, engine.Runner, *engine.Env, *engine.Result) error {
	*o.to = o.what
	return nil
}
