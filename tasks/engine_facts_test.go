package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/transport"
)

// The engine reads what it needs of the facts through interfaces their
// values implement (engine.SSHDView, StartupLimits, Rereader); these tests
// pass this package's real facts through the engine's exported entry
// points, so that a fact that stops implementing one is noticed.

// closingSSHD closes every connection before authentication, as sshd's
// listener does to a penalised address, and counts them.
type closingSSHD struct {
	mu sync.Mutex
	n  int
}

func (c *closingSSHD) Login(context.Context, string, string, Path) (Runner, func() error, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil, nil, &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: io.EOF}
}

// TestGateReadsUserFactsPenalties: the login gate reads PerSourcePenalties
// from a user's facts; with penalties off, or an sshd before 9.8 that
// prints none, a close before authentication is the answer at once, never
// waited out as a penalty.
func TestGateReadsUserFactsPenalties(t *testing.T) {
	conn := Conn{Client: "127.0.0.1", Server: "127.0.0.2", Port: 22}
	for name, values := range map[string]map[string][]string{
		"penalties off": {"persourcepenalties": {"no"}},
		"before 9.8":    {"loglevel": {"INFO"}},
	} {
		facts := &Facts{}
		facts.Set(UserFactsKey("admin"), &UserFacts{Name: "admin", Conn: conn, SSHD: SSHDConfig{Values: values}})
		host := &closingSSHD{}
		start := time.Now()
		_, _, err := engine.GateLogins(host, facts, "192.0.2.7", 22).Login(context.Background(), "bg-ops1", "k", Path{Name: "direct"})
		if errors.Is(err, engine.ErrLoginPenalised) || !engine.ClosedInHandshake(err) || host.n != 1 || time.Since(start) > time.Second {
			t.Errorf("%s: %v after %d tries in %v: want the close at once", name, err, host.n, time.Since(start))
		}
	}
}

// countingSSHD lets every login in after a few milliseconds and keeps the
// most logins open at once.
type countingSSHD struct {
	mu         sync.Mutex
	open, most int
}

func (c *countingSSHD) Login(_ context.Context, user, _ string, _ Path) (Runner, func() error, error) {
	c.mu.Lock()
	c.open++
	c.most = max(c.most, c.open)
	c.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	return probeAnswer(user), func() error { c.mu.Lock(); c.open--; c.mu.Unlock(); return nil }, nil
}

type probeAnswer string

func (u probeAnswer) Run(context.Context, string, []byte) ([]byte, error) {
	return []byte(engine.ProbeOutputPrefix + " user=" + string(u) + " sudo=no\n"), nil
}

// TestProofBoundedByFacts: a removal's guard opens no more proof logins
// at once than sshd's MaxStartups (less two) lets in, read from the sshd
// module's facts first, else from a user's effective configuration.
func TestProofBoundedByFacts(t *testing.T) {
	var logins []Login
	for i := range 12 {
		logins = append(logins, Login{User: fmt.Sprintf("bg-many%02d", i), KeyFile: "/k"})
	}
	sshdF := parseSSHDFactsT(t, sshdFactsOut(debianMain, nil, "maxstartups 4:30:100\npersourcemaxstartups none\n"))
	user := &UserFacts{Name: "admin", SSHD: SSHDConfig{Values: map[string][]string{"maxstartups": {"5:30:100"}}}}
	for name, tc := range map[string]struct {
		facts map[string]any
		want  int
	}{
		"sshd module's facts": {map[string]any{sshdFactsKey: sshdF, UserFactsKey("admin"): user}, 2},
		"a user's facts":      {map[string]any{UserFactsKey("admin"): user}, 3},
	} {
		facts := &Facts{}
		for k, v := range tc.facts {
			facts.Set(k, v)
		}
		d := &countingSSHD{}
		env := &Env{ControlUser: "admin", Dial: d, Facts: facts, Logins: logins, MinWorking: len(logins)}
		if err := (&Guard{Refusal: "test"}).Prove(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if d.most > tc.want || d.most < 1 {
			t.Errorf("%s: %d logins at once, want at most %d", name, d.most, tc.want)
		}
	}
}

// TestUserFactsReadAgainAfterSteps: a user's facts that steps make stale
// are read again in the steps' own round trip (a user's later tasks read
// them), as the user facts they are.
func TestUserFactsReadAgainAfterSteps(t *testing.T) {
	env := &Env{Facts: &Facts{}}
	env.Facts.Set(UserFactsKey("x"), &UserFacts{Name: "x", HomeStat: PathStat{Path: "/stale"}})
	r := &countingRunner{}
	if _, err := applySteps(context.Background(), r, env, []hostStep{{change: Change{What: "nothing"}, cmd: "true"}}, UserFactsKey("x")); err != nil {
		t.Fatal(err)
	}
	v, _ := env.Facts.Get(UserFactsKey("x"))
	if uf, ok := v.(*UserFacts); !ok || uf.Name != "x" || uf.HomeStat.Path == "/stale" || r.n != 1 {
		t.Errorf("after %d round trips the fact is %#v, want the facts of x read again in the steps' round trip", r.n, v)
	}
}
