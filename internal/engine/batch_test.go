package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	write := func(name, content string) Step {
		return Step{
			Change: Change{What: "write " + name},
			Cmd:    shell.Join("bg_write", filepath.Join(dir, name), owner, "0600", content),
		}
	}
	touch := func(name string) Step {
		return Step{Change: Change{What: "touch " + name}, Cmd: shell.Join("touch", filepath.Join(dir, name))}
	}
	fail := Step{Change: Change{What: "fail"}, Cmd: "false"}

	r := &countingRunner{}
	env := &Env{Facts: &Facts{}}
	env.Facts.Set("user:x", rereader("x"))
	env.Facts.Set("path:/p", "a fact nobody reads again")
	b := &stepBatch{}
	env.batch = b
	for i, steps := range [][]Step{
		{write("a", "first\n"), touch("t1")},
		{write("b", "second 'x' $(y)\n")},
		{touch("t2")},
	} {
		env.batchTask = 10 + i
		res, err := applySteps(context.Background(), r, env, steps, "user:x", "path:/p")
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
	if v, _ := env.Facts.Get("user:x"); v != "read again: x" {
		t.Errorf("facts of x not read again: %#v", v)
	}
	if v, ok := env.Facts.Get("path:/p"); ok {
		t.Errorf("a stale fact that is not read again survived the flush: %#v", v)
	}

	// A failure in the second task: the first completed, the second has
	// the change before the failing step, the third never ran.
	for i, steps := range [][]Step{{touch("u1")}, {touch("u2"), fail, touch("u3")}, {touch("u4")}} {
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

// TestBatchReportedSteps runs steps that report (okLine) through flush
// with the local /bin/sh: a step completes only when okLine is a whole
// line of its output (not part of one, and glob characters in it are
// literal), whatever its exit status; it runs with set +e and stdin from
// /dev/null; a step that did not complete stops the round trip and its
// report explains the output.
func TestBatchReportedSteps(t *testing.T) {
	dir := t.TempDir()
	const ok = "status ok*"
	reported := func(what, cmd string) Step {
		return Step{Change: Change{What: what}, Cmd: cmd, OKLine: ok,
			Report: func(out []byte) error { return fmt.Errorf("%s reported %q", what, out) }}
	}
	touch := func(name string) Step {
		return Step{Change: Change{What: "touch " + name}, Cmd: shell.Join("touch", filepath.Join(dir, name))}
	}
	tests := []struct {
		name   string
		step   Step
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
			if _, err := applySteps(context.Background(), shellRunner{}, env, []Step{tt.step, touch(after)}); err != nil {
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
	p := &Plan{Steps: []Step{{Change: Change{What: "x"}, Cmd: "true"}}, Again: true}
	if p.MayBatch() {
		t.Error("a plan that looks Again says MayBatch: the runner would not flush the queue before it, and Execute runs it at once, ahead of earlier queued tasks")
	}
}

// shellRunner runs commands with the local /bin/sh.
type shellRunner struct{}

func (shellRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = strings.NewReader(string(stdin))
	return c.Output()
}

// rereader is a fact that is read again after the steps that make it
// stale (as a user's facts are): its query prints "read again: NAME".
type rereader string

func (r rereader) Reread(Conn) Query {
	return Query{Key: "user:" + string(r), Script: "echo 'read again: " + string(r) + "'",
		Parse: func(out []byte) (any, error) { return strings.TrimSpace(string(out)), nil }}
}
