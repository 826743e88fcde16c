package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/transport"
)

// concurrentLogins is a LoginDialer that counts the logins open at once
// (from the dial to the close) and remembers the most; each login takes a
// few milliseconds so that an unbounded caller would pile them up. fail
// gives a user's answers in turn (nil: logged in); the last repeats.
type concurrentLogins struct {
	mu       sync.Mutex
	open     int
	most     int
	attempts map[string]int
	fail     map[string][]error
}

func (c *concurrentLogins) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	c.mu.Lock()
	if c.attempts == nil {
		c.attempts = map[string]int{}
	}
	n := c.attempts[user]
	c.attempts[user]++
	c.open++
	c.most = max(c.most, c.open)
	var err error
	if errs := c.fail[user]; len(errs) > 0 {
		err = errs[min(n, len(errs)-1)]
	}
	c.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	closeFn := func() error {
		c.mu.Lock()
		c.open--
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return fixedRunner(ProbeOutputPrefix + " user=" + user + " sudo=no\n"), closeFn, nil
}

func manyLogins(n int) []Login {
	var ls []Login
	for i := range n {
		ls = append(ls, Login{User: fmt.Sprintf("bg-many%02d", i), KeyFile: "/k"})
	}
	return ls
}

// TestProveAccessBounded: the proof never opens more logins at once than
// the host's sshd lets in, read from facts the run already has.
func TestProveAccessBounded(t *testing.T) {
	sshdF := func(startups, perSource string) *Facts {
		f := &Facts{}
		f.Set("sshd:config", startupLimits{startups, perSource})
		return f
	}
	userF := func(startups string) *Facts {
		f := &Facts{}
		f.Set("user:admin", sshdView{settings: map[string]string{"maxstartups": startups, "persourcemaxstartups": "none"}})
		return f
	}
	tests := []struct {
		name     string
		facts    *Facts
		settings []Setting
		want     int
	}{
		{"unknown", &Facts{}, nil, proveUnknownParallel},
		{"no facts at all", nil, nil, proveUnknownParallel},
		{"sshd default", sshdF("10:30:100", "none"), nil, LoginParallel},
		{"sshd facts, low MaxStartups", sshdF("5:30:60", "none"), nil, 3},
		{"PerSourceMaxStartups", sshdF("10:30:100", "2"), nil, 2},
		{"MaxStartups 1", sshdF("1", "none"), nil, 1},
		{"user facts", userF("6:30:100"), nil, 4},
		{"high MaxStartups", sshdF("100:30:200", "none"), nil, LoginParallel},
		{"the change lowers it", sshdF("10:30:100", "none"), []Setting{{"MaxStartups", "4:50:10"}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &concurrentLogins{}
			env := &Env{ControlUser: "admin", Dial: d, Facts: tt.facts, Logins: manyLogins(50), MinWorking: 50}
			sum, err := proveAccess(context.Background(), env, Path{Name: "direct"}, time.Now().Add(time.Minute), tt.settings, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(sum, "fresh logins ok: admin (control), bg-many00, ") {
				t.Errorf("summary %q", sum)
			}
			if d.most > tt.want || d.most < 1 {
				t.Errorf("%d logins at once, want at most %d", d.most, tt.want)
			}
			if d.most < tt.want {
				t.Logf("only %d logins at once (bound %d)", d.most, tt.want)
			}
			if len(d.attempts) != 51 {
				t.Errorf("%d users tried, want 51", len(d.attempts))
			}
		})
	}
}

// TestProveAccessRetriesOnlyDrops: a login dropped before authentication
// is tried once more; a refused login is never repeated.
func TestProveAccessRetriesOnlyDrops(t *testing.T) {
	old := proveRetryDelay
	proveRetryDelay = time.Millisecond
	defer func() { proveRetryDelay = old }()
	reset := &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: errors.New("read: connection reset by peer")}
	refused := &transport.DialError{Target: "h", Stage: transport.StageConnect, Err: errors.New("connect: connection refused")}
	denied := &transport.DialError{Target: "h", Stage: transport.StageAuth, Err: errors.New("ssh: unable to authenticate")}
	d := &concurrentLogins{fail: map[string][]error{
		"bg-ops1": {reset, nil},   // dropped once: proven on the second try
		"admin":   {refused, nil}, // a daemon still reloading
		"bg-ops2": {denied},       // refused: never again
		"bg-ops3": {reset},        // dropped every time
		"bg-ops4": {errors.New("ssh: unable to authenticate")},
	}}
	env := &Env{ControlUser: "admin", Dial: d, Facts: &Facts{}, MinWorking: 2,
		Logins: []Login{{"bg-ops1", "/k1"}, {"bg-ops2", "/k2"}, {"bg-ops3", "/k3"}, {"bg-ops4", "/k4"}, {"bg-ops5", "/k5"}}}
	sum, err := proveAccess(context.Background(), env, Path{Name: "direct"}, time.Now().Add(time.Minute), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"admin": 2, "bg-ops1": 2, "bg-ops2": 1, "bg-ops3": 2, "bg-ops4": 1, "bg-ops5": 1}
	for u, n := range want {
		if d.attempts[u] != n {
			t.Errorf("%s: %d attempts, want %d", u, d.attempts[u], n)
		}
	}
	if !strings.Contains(sum, "fresh logins ok: admin (control), bg-ops1, bg-ops5") ||
		!strings.Contains(sum, "bg-ops3 (h: ssh handshake: read: connection reset by peer (dropped before authentication twice") {
		t.Errorf("summary %q", sum)
	}
	if strings.Contains(sum, "bg-ops2 (h: login: ssh: unable to authenticate (dropped") {
		t.Errorf("a refusal is reported as a drop: %q", sum)
	}
}

// TestVerifyAccessBounded: verify_access makes at most parallel logins at
// once on a host, through the same limiter.
func TestVerifyAccessBounded(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, parallel := range []int{LoginParallel, 3} {
		op := &VerifyLogins{Paths: []Path{{Name: "direct"}, {Name: "port 2222", Port: 2222}}, Parallel: parallel}
		for i := range 20 {
			op.Logins = append(op.Logins, Login{User: fmt.Sprintf("bg-many%02d", i), KeyFile: key})
		}
		d := &concurrentLogins{}
		res := &Result{}
		if err := op.Run(context.Background(), nil, &Env{Dial: d}, res); err != nil {
			t.Fatal(err)
		}
		if len(res.Access) != 40 || d.most > parallel || d.most < 1 {
			t.Errorf("parallel %d: %d rows, %d logins at once, want 40 rows and at most %d", parallel, len(res.Access), d.most, parallel)
		}
	}
}

// TestProveOutcomes: the prover names each way a probe login ends, with
// the messages the reports show.
func TestProveOutcomes(t *testing.T) {
	refused := &transport.DialError{Target: "h", Stage: transport.StageAuth, Err: errors.New("ssh: unable to authenticate")}
	closed := &transport.DialError{Target: "h", Stage: transport.StageHandshake, Err: io.EOF}
	for _, c := range []struct {
		name    string
		err     error  // the dial's
		out     string // the probe's answer
		runErr  error
		want    Outcome
		sudo    bool
		message string
	}{
		{name: "ok sudo", out: "motd\nbreakglass-probe user=bg sudo=ok\n", want: ProbeOK, sudo: true},
		{name: "ok no sudo", out: "breakglass-probe user=bg sudo=no\n", want: ProbeOK},
		{name: "refused", err: refused, want: ProbeRefused, message: "unable to authenticate"},
		{name: "dropped", err: closed, want: ProbeDropped, message: "EOF"},
		{name: "penalised", err: fmt.Errorf("%w: cut: %w", ErrLoginPenalised, closed), want: ProbePenalised, message: "PerSourcePenalties"},
		{name: "not repeated", err: fmt.Errorf("%w: refused earlier", ErrLoginNotRepeated), want: ProbeNotRepeated, message: "not tried again"},
		{name: "no login", err: errors.New("key file: no such file"), want: ProbeNoLogin, message: "key file"},
		{name: "command failed", runErr: errors.New("exit status 1"), want: ProbeNoSession, message: "logged in, but the command failed: exit status 1"},
		{name: "nologin", out: "This account is currently not available.\n", want: ProbeNoSession, message: `logged in, but the probe answered "This account is currently not available."`},
		{name: "wrong user", out: "breakglass-probe user=root sudo=ok\n", want: ProbeWrongUser, message: `logged in as "root", not "bg"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := proveDialer{err: c.err, r: answerRunner{c.out, c.runErr}}
			pr := Prove(context.Background(), d, "bg", "/k", Path{Name: "direct"})
			if pr.Outcome != c.want || pr.OK() != (c.want == ProbeOK) || pr.Sudo != c.sudo {
				t.Fatalf("outcome %v ok %v sudo %v (err %v), want %v sudo %v", pr.Outcome, pr.OK(), pr.Sudo, pr.Err, c.want, c.sudo)
			}
			if (pr.Err == nil) != (c.message == "") || pr.Err != nil && !strings.Contains(pr.Err.Error(), c.message) {
				t.Fatalf("error %v, want one saying %q", pr.Err, c.message)
			}
			if c.err != nil && !errors.Is(pr.Err, c.err) {
				t.Fatalf("error %v does not wrap the dial's %v", pr.Err, c.err)
			}
		})
	}
}

type proveDialer struct {
	err error
	r   Runner
}

func (d proveDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	if d.err != nil {
		return nil, nil, d.err
	}
	return d.r, func() error { return nil }, nil
}

type answerRunner struct {
	out string
	err error
}

func (a answerRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if cmd != VerifyCommand {
		return nil, errors.New("unexpected command " + cmd)
	}
	return []byte(a.out), a.err
}

// startupLimits is a fact that read MaxStartups from sshd's own
// configuration, as the sshd module's facts do (StartupLimits).
type startupLimits struct{ maxStartups, perSource string }

func (l startupLimits) StartupLimits() (string, string) { return l.maxStartups, l.perSource }
