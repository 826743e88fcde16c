package runner

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/transport"
)

// lockingConn answers the host lock's command as a host would: taken, or
// held by another run with its note.
type lockingConn struct {
	localConn
	busy     string // the other run's note; "" when the lock is free
	released *atomic.Int32
	cmd      *atomic.Pointer[string]
}

func (c *lockingConn) Hold(ctx context.Context, cmd string, stdin []byte) (string, func(), error) {
	c.cmd.Store(&cmd)
	if c.busy != "" {
		return "bg-lock-busy " + c.busy, func() {}, nil
	}
	return "bg-lock-held", func() { c.released.Add(1) }, nil
}

type lockingDialer struct {
	busy     map[string]string
	user     string
	released atomic.Int32
	cmd      atomic.Pointer[string]
}

func (d *lockingDialer) Dial(ctx context.Context, t transport.Target) (Conn, error) {
	return &lockingConn{localConn: localConn{user: d.user}, busy: d.busy[t.Name], released: &d.released, cmd: &d.cmd}, nil
}

// A host another run holds fails alone, saying which run holds it; every
// other host runs, and its lock is released at the end.
func TestHostLockTaken(t *testing.T) {
	var ran atomic.Int32
	d := &lockingDialer{user: "admin", busy: map[string]string{"h001": "breakglass apply site.yml (controller ctl, pid 4242, user ops, started 2026-12-07T13:00:00Z)"}}
	jobs := jobsFor(3, func(i int) []Task {
		return []Task{{Name: "first", Module: "step", Mod: &step{ran: &ran}}, {Name: "second", Module: "step", Mod: &step{ran: &ran}}}
	})
	for _, j := range jobs {
		j.Plays[0].Become = true
	}
	r := Run(context.Background(), "apply", d, jobs, Options{Forks: 3, Timeout: time.Second, LockNote: "breakglass apply pb.yml"})
	h := r.Hosts[1]
	if h.Status != report.StatusFailed || !strings.Contains(h.Error, "another breakglass run holds this host") || !strings.Contains(h.Error, "pid 4242") {
		t.Errorf("locked host: status %s, error %q", h.Status, h.Error)
	}
	if len(h.Tasks) != 2 || h.Tasks[0].Status != report.StatusSkipped || h.Tasks[1].Status != report.StatusSkipped {
		t.Errorf("locked host's tasks: %+v", h.Tasks)
	}
	for _, i := range []int{0, 2} {
		if r.Hosts[i].Status != report.StatusChanged {
			t.Errorf("%s: %s %q", r.Hosts[i].Name, r.Hosts[i].Status, r.Hosts[i].Error)
		}
	}
	if ran.Load() != 4 || d.released.Load() != 2 {
		t.Errorf("%d task runs (want 4), %d locks released (want 2)", ran.Load(), d.released.Load())
	}
	if r.ExitCode() != report.ExitFailed {
		t.Errorf("exit %d, want 2", r.ExitCode())
	}
	cmd := *d.cmd.Load()
	if !strings.Contains(cmd, "sudo -n") || !strings.Contains(cmd, transport.LockFile) || !strings.Contains(cmd, "breakglass apply pb.yml (controller ") {
		t.Errorf("lock command: %s", cmd)
	}
}

// A job that never becomes root, as a non-root user, takes no lock.
func TestHostLockNotTakenWithoutRoot(t *testing.T) {
	var ran atomic.Int32
	d := &lockingDialer{user: "admin", busy: map[string]string{"h000": "someone"}}
	jobs := jobsFor(1, func(int) []Task { return []Task{{Name: "first", Module: "step", Mod: &step{ran: &ran}}} })
	r := Run(context.Background(), "apply", d, jobs, Options{Timeout: time.Second})
	if r.Hosts[0].Status != report.StatusChanged || d.cmd.Load() != nil {
		t.Errorf("status %s, lock command %v", r.Hosts[0].Status, d.cmd.Load())
	}
}
