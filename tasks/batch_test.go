package tasks

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
// in order, each reading its own part of stdin; a failing step stops the
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
			change: Change{What: "write " + name},
			cmd:    shell.Join("bg_write", filepath.Join(dir, name), owner, "0600", fmt.Sprint(len(content))),
			stdin:  []byte(content),
		}
	}
	touch := func(name string) hostStep {
		return hostStep{change: Change{What: "touch " + name}, cmd: shell.Join("touch", filepath.Join(dir, name))}
	}
	fail := hostStep{change: Change{What: "fail"}, cmd: "false"}

	r := &countingRunner{}
	env := &Env{Facts: &Facts{}}
	env.Facts.Set("user:x", "old")
	b := &Batch{}
	env.Batch = b
	for i, steps := range [][]hostStep{
		{write("a", "first\n"), touch("t1")},
		{write("b", "second 'x' $(y)\n")},
		{touch("t2")},
	} {
		env.BatchTask = 10 + i
		res, err := applySteps(context.Background(), r, env, steps, "user:x")
		if err != nil || !res.Changed {
			t.Fatalf("queue %d: %v %+v", i, err, res)
		}
	}
	if r.n != 0 || !b.Pending() || !b.Queued(11) || b.Queued(13) || !b.Stales([]Query{{Key: "user:x"}}) || b.Stales([]Query{{Key: "user:y"}}) {
		t.Fatalf("queued steps: %d round trips, pending %v", r.n, b.Pending())
	}
	out := b.Flush(context.Background(), r, env)
	if r.n != 1 || b.Pending() {
		t.Fatalf("flush: %d round trips, still pending %v", r.n, b.Pending())
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
		env.BatchTask = i
		if _, err := applySteps(context.Background(), r, env, steps); err != nil {
			t.Fatal(err)
		}
	}
	out = b.Flush(context.Background(), r, env)
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
