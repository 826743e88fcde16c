package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

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
	x := engine.NewExecutor(labRunner{h, r}, env)
	ctx := context.Background()
	run := func(task int, mod Module) {
		t.Helper()
		m := mod.(engine.Planner)
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
	if !errors.Is(out[1].Err, engine.ErrNotRun) || acctSh(t, h, "getent passwd bg-ops8 || echo none") != "none\n" {
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

// countingRunner runs commands with the local /bin/sh and counts round
// trips.
type countingRunner struct{ n int }

func (c *countingRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c.n++
	return shellRunner{}.Run(ctx, cmd, stdin)
}
