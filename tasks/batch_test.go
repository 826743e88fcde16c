package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

// countingRunner runs commands with the local /bin/sh and counts round
// trips.
type countingRunner struct{ n int }

func (c *countingRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c.n++
	return shellRunner{}.Run(ctx, cmd, stdin)
}

// TestBatchFlush: the queued steps of three tasks run in one round trip,
// in order, each writing its own content; a failing step stops the
// round trip, its task gets the error and the changes that completed, and
// the tasks after it are reported as not run.
func TestBatchFlush(t *testing.T) {
	dir := t.TempDir()
	me, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	owner := strings.TrimSpace(string(me)) + ":"
	write := func(name, content string) hostStep {
		return hostStep{
			change:  Change{What: "write " + name},
			cmd:     shell.Join("bg_write", filepath.Join(dir, name), owner, "0600", content),
			content: []byte(content),
		}
	}
	touch := func(name string) hostStep {
		return hostStep{change: Change{What: "touch " + name}, cmd: shell.Join("touch", filepath.Join(dir, name))}
	}
	fail := hostStep{change: Change{What: "fail"}, cmd: "false"}

	r := &countingRunner{}
	env := &Env{Facts: &Facts{}}
	env.Facts.Set("user:x", "old")
	b := &stepBatch{}
	env.batch = b
	for i, steps := range [][]hostStep{
		{write("a", "first\n"), touch("t1")},
		{write("b", "second 'x' $(y)\n")},
		{touch("t2")},
	} {
		env.batchTask = 10 + i
		res, err := applySteps(context.Background(), r, env, steps, "user:x")
		if err != nil || !res.Changed {
			t.Fatalf("queue %d: %v %+v", i, err, res)
		}
	}
	if r.n != 0 || !b.pending() || !b.queued(11) || b.queued(13) || !b.stales([]Query{{Key: "user:x"}}) || b.stales([]Query{{Key: "user:y"}}) {
		t.Fatalf("queued steps: %d round trips, pending %v", r.n, b.pending())
	}
	out := b.flush(context.Background(), r, env)
	if r.n != 1 || b.pending() {
		t.Fatalf("flush: %d round trips, still pending %v", r.n, b.pending())
	}
	for i, oc := range out {
		if oc.Task != 10+i || oc.Err != nil {
			t.Errorf("outcome %d: %+v", i, oc)
		}
	}
	for name, want := range map[string]string{"a": "first\n", "b": "second 'x' $(y)\n", "t1": "", "t2": ""} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v", name, got, err)
		}
	}
	// The stale user's facts are read again in the same round trip.
	if v, _ := env.Facts.Get("user:x"); v == "old" {
		t.Error("a stale fact survived the flush")
	} else if uf, ok := v.(*UserFacts); !ok || uf.Name != "x" {
		t.Errorf("facts of x not read again: %#v", v)
	}

	// A failure in the second task: the first completed, the second has
	// the change before the failing step, the third never ran.
	for i, steps := range [][]hostStep{{touch("u1")}, {touch("u2"), fail, touch("u3")}, {touch("u4")}} {
		env.batchTask = i
		if _, err := applySteps(context.Background(), r, env, steps); err != nil {
			t.Fatal(err)
		}
	}
	out = b.flush(context.Background(), r, env)
	if out[0].Err != nil || len(out[0].Result.Changes) != 1 {
		t.Errorf("task before the failure: %+v", out[0])
	}
	if out[1].Err == nil || !strings.HasPrefix(out[1].Err.Error(), "fail: ") || len(out[1].Result.Changes) != 1 || out[1].Result.Changes[0].What != "touch u2" {
		t.Errorf("failing task: %v %+v", out[1].Err, out[1].Result)
	}
	if !errors.Is(out[2].Err, ErrNotRun) || len(out[2].Result.Changes) != 0 {
		t.Errorf("task after the failure: %+v", out[2])
	}
	for name, want := range map[string]bool{"u1": true, "u2": true, "u3": false, "u4": false} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", name, err == nil, want)
		}
	}
}

// TestPredictedFactsOnLab: the facts authorized_key predicts for what its
// steps leave behind are the facts read from the host afterwards, for a
// new .ssh (under a set-group-ID home, whose bit it inherits) and for an
// existing .ssh and key file with the wrong owner and modes.
func TestPredictedFactsOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	acctSh(t, h, `useradd -m -s /bin/sh fresh && chmod 2755 /home/fresh && rm -rf /home/fresh/.ssh
useradd -m -s /bin/sh worn && mkdir -p /home/worn/.ssh && chmod 0755 /home/worn/.ssh && touch /home/worn/.ssh/authorized_keys && chmod 0644 /home/worn/.ssh/authorized_keys && chown root:root /home/worn/.ssh/authorized_keys`)
	for i, user := range []string{"fresh", "worn"} {
		m := benchModuleT(t, NewAuthorizedKey, fmt.Sprintf("{user: %s, key: %q}", user, testKey(t, i+1, user)))
		env.Facts = &Facts{}
		res, err := runModule(context.Background(), h.Runner(), env, m)
		if err != nil || !res.Changed {
			t.Fatalf("%s: %v %+v", user, err, res)
		}
		v, ok := env.Facts.Get(UserFactsKey(user))
		if !ok {
			t.Fatalf("%s: no predicted facts", user)
		}
		pred := v.(*UserFacts)
		fresh := &Env{ClientAddr: env.ClientAddr, ServerAddr: env.ServerAddr, ServerPort: env.ServerPort, Facts: &Facts{}}
		ufs, err := gatherUserFacts(context.Background(), h.Runner(), fresh, true, user)
		if err != nil {
			t.Fatal(err)
		}
		read := ufs[0]
		if pred.HomeStat != read.HomeStat {
			t.Errorf("%s home: predicted %+v, read %+v", user, pred.HomeStat, read.HomeStat)
		}
		for j := range read.KeyFiles {
			p, r := pred.KeyFiles[j], read.KeyFiles[j]
			if !slices.Equal(p.Walk, r.Walk) || !bytes.Equal(p.Content, r.Content) {
				t.Errorf("%s key file %s:\npredicted %+v %q\nread      %+v %q", user, r.Real, p.Walk, p.Content, r.Walk, r.Content)
			}
		}
	}
}

func benchModuleT(t *testing.T, f Factory, src string) Module {
	t.Helper()
	m, err := decodeTask(t, f, src)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBatchedSudoersOnLab: a sudoers transaction queued behind a user task
// runs in the same round trip, after it; a rule visudo refuses fails its
// task with the transaction's own report, leaves the previous file, and
// stops the queued steps after it.
func TestBatchedSudoersOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	r := &countingRunner{}
	// As the runner does: each task planned, then queued by the executor.
	x := NewExecutor(labRunner{h, r}, env)
	ctx := context.Background()
	run := func(task int, m Module) {
		t.Helper()
		p, err := x.Plan(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, queued, err := x.Execute(ctx, task, m, p); err != nil || !queued {
			t.Fatalf("task %d: queued %v, %v", task, queued, err)
		}
	}
	run(0, benchModuleT(t, NewUser, "{name: bg-ops9, shell: /bin/bash}"))
	run(1, mustSudoers(t, "{name: breakglass, users: [bg-ops9], nopasswd: true}"))
	before := r.n
	out := x.Flush(ctx, nil)
	if r.n != before+1 || out[0].Err != nil || out[1].Err != nil {
		t.Fatalf("flush: %d round trips, %+v", r.n-before, out)
	}
	installed := acctSh(t, h, "cat /etc/sudoers.d/breakglass")
	if !strings.Contains(installed, "bg-ops9 ALL=(ALL) NOPASSWD: ALL") || acctSh(t, h, "runuser -u bg-ops9 -- sudo -n true && echo ok") != "ok\n" {
		t.Fatalf("sudoers not installed: %q", installed)
	}

	env.Facts = &Facts{}
	run(0, mustSudoers(t, "{name: breakglass, users: [bg-ops9], commands: [/usr/bin/sudoedit /etc/motd]}"))
	run(1, benchModuleT(t, NewUser, "{name: bg-ops8, shell: /bin/bash}"))
	out = x.Flush(ctx, nil)
	var se *SudoersError
	if !errors.As(out[0].Err, &se) || se.Stage != "visudo-file" || len(out[0].Result.Changes) != 0 {
		t.Errorf("refused rule: %v %+v", out[0].Err, out[0].Result)
	}
	if !errors.Is(out[1].Err, ErrNotRun) || acctSh(t, h, "getent passwd bg-ops8 || echo none") != "none\n" {
		t.Errorf("the step after a failed transaction: %v", out[1].Err)
	}
	if got := acctSh(t, h, "cat /etc/sudoers.d/breakglass"); got != installed {
		t.Errorf("file changed by a refused rule: %q", got)
	}
}

// labRunner runs as root on a lab host and counts round trips.
type labRunner struct {
	h *lab.Host
	c *countingRunner
}

func (l labRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	l.c.n++
	return l.h.Runner().Run(ctx, cmd, stdin)
}

// TestBatchReportedSteps runs steps that report (okLine) through flush
// with the local /bin/sh: a step completes only when okLine is a whole
// line of its output (not part of one, and glob characters in it are
// literal), whatever its exit status; it runs with set +e and stdin from
// /dev/null; a step that did not complete stops the round trip and its
// report explains the output.
func TestBatchReportedSteps(t *testing.T) {
	dir := t.TempDir()
	const ok = "status ok*"
	reported := func(what, cmd string) hostStep {
		return hostStep{change: Change{What: what}, cmd: cmd, okLine: ok,
			report: func(out []byte) error { return fmt.Errorf("%s reported %q", what, out) }}
	}
	touch := func(name string) hostStep {
		return hostStep{change: Change{What: "touch " + name}, cmd: shell.Join("touch", filepath.Join(dir, name))}
	}
	tests := []struct {
		name   string
		step   hostStep
		done   bool
		errHas string
	}{
		{"ok line after a failure", reported("a", "false\nread -r x || echo 'no stdin'\nprintf 'noise\\nstatus ok*\\n'\nexit 3"), true, ""},
		{"ok line as the only output, no newline", reported("b", "printf 'status ok*'"), true, ""},
		{"ok line inside another line", reported("c", "echo 'xstatus ok*'; echo 'status ok* x'"), false, `c reported "xstatus ok*\nstatus ok* x"`},
		{"glob matches, literal does not", reported("d", "echo 'status okay'"), false, `d reported "status okay"`},
		{"no output", reported("e", "exit 0"), false, `e reported ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := tt.name + ".after"
			b := &stepBatch{}
			env := &Env{batch: b}
			if _, err := applySteps(context.Background(), shellRunner{}, env, []hostStep{tt.step, touch(after)}); err != nil {
				t.Fatal(err)
			}
			out := b.flush(context.Background(), shellRunner{}, env)
			_, statErr := os.Stat(filepath.Join(dir, after))
			if tt.done {
				if out[0].Err != nil || statErr != nil {
					t.Errorf("want both steps done: %v, next step: %v", out[0].Err, statErr)
				}
				return
			}
			if out[0].Err == nil || !strings.Contains(out[0].Err.Error(), tt.errHas) || statErr == nil {
				t.Errorf("want the round trip stopped with %q: %v, next step ran: %v", tt.errHas, out[0].Err, statErr == nil)
			}
		})
	}
}

// TestAgainPlanNeverBatched: the runner flushes queued steps before
// a plan only when !p.MayBatch(); Executor.Execute runs a plan with Again
// at once, never queued. A plan with Again and only steps (no ops, no
// guard) would then run before the steps earlier tasks queued.
func TestAgainPlanNeverBatched(t *testing.T) {
	p := &Plan{Steps: []hostStep{{change: Change{What: "x"}, cmd: "true"}}, Again: true}
	if p.MayBatch() {
		t.Error("a plan that looks Again says MayBatch: the runner would not flush the queue before it, and Execute runs it at once, ahead of earlier queued tasks")
	}
}
