package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
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
	return sshdProbeRunner(user), closeFn, nil
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
		f.Set(sshdFactsKey, &sshdFacts{MaxStartups: startups, PerSourceMaxStartups: perSource})
		return f
	}
	userF := func(startups string) *Facts {
		f := &Facts{}
		f.Set(UserFactsKey("admin"), &UserFacts{Name: "admin", SSHD: SSHDConfig{Values: map[string][]string{"maxstartups": {startups}, "persourcemaxstartups": {"none"}}}})
		return f
	}
	tests := []struct {
		name     string
		facts    *Facts
		settings []sshdSetting
		want     int
	}{
		{"unknown", &Facts{}, nil, proveUnknownParallel},
		{"no facts at all", nil, nil, proveUnknownParallel},
		{"sshd default", sshdF("10:30:100", "none"), nil, loginParallel},
		{"sshd facts, low MaxStartups", sshdF("5:30:60", "none"), nil, 3},
		{"PerSourceMaxStartups", sshdF("10:30:100", "2"), nil, 2},
		{"MaxStartups 1", sshdF("1", "none"), nil, 1},
		{"user facts", userF("6:30:100"), nil, 4},
		{"high MaxStartups", sshdF("100:30:200", "none"), nil, loginParallel},
		{"the change lowers it", sshdF("10:30:100", "none"), []sshdSetting{{"MaxStartups", "4:50:10"}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &concurrentLogins{}
			env := &Env{ControlUser: "admin", Dial: d, Facts: tt.facts, Logins: manyLogins(50), MinWorking: 50}
			sum, err := proveAccess(context.Background(), env, Path{Name: "direct"}, time.Now().Add(time.Minute), tt.settings)
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
	sum, err := proveAccess(context.Background(), env, Path{Name: "direct"}, time.Now().Add(time.Minute), nil)
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logins []string
	for i := range 20 {
		logins = append(logins, fmt.Sprintf("{user: bg-many%02d, key_file: k}", i))
	}
	for _, tt := range []struct {
		parallel string
		want     int
	}{{"", loginParallel}, {"parallel: 3, ", 3}} {
		v, err := decodeVerify(t, "{"+tt.parallel+"logins: ["+strings.Join(logins, ", ")+"], paths: [direct, {port: 2222}]}")
		if err != nil {
			t.Fatal(err)
		}
		d := &concurrentLogins{}
		res, err := runModule(context.Background(), nil, &Env{Dir: dir, Dial: d}, v)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Access) != 40 || d.most > tt.want || d.most < 1 {
			t.Errorf("%s: %d rows, %d logins at once, want 40 rows and at most %d", tt.parallel, len(res.Access), d.most, tt.want)
		}
	}
}

// transportDialer opens fresh logins with breakglass's own SSH transport,
// as a real run does, so that its typed errors reach ProveAccess.
type transportDialer struct {
	d    *transport.Dialer
	h    *lab.Host
	ctrl string // the control user's key
}

func (t transportDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	if keyFile == "" {
		keyFile = t.ctrl
	}
	port := t.h.Port
	if p.Port != 0 {
		port = p.Port
	}
	c, err := t.d.Dial(ctx, transport.Target{Name: t.h.Name, Host: t.h.Addr, Port: port, User: user,
		IdentityFiles: []string{keyFile}, NoAgent: true, IdentitiesOnly: true})
	if err != nil {
		return nil, nil, err
	}
	return c, c.Close, nil
}

// TestSSHDOnHostFiftyLogins: a harmless change on a host with 50
// break-glass logins, all required, and sshd's default MaxStartups
// (10:30:100). Opening all 51 proof logins at once made sshd drop some
// before authentication, and the change was rolled back; bounded proof
// logins keep it.
func TestSSHDOnHostFiftyLogins(t *testing.T) {
	t.Parallel()
	const n = 50
	l := lab.New(t, 1)
	h := l.Hosts[0]
	dir := t.TempDir()
	var script strings.Builder
	var logins []Login
	for i := range n {
		u := fmt.Sprintf("bg-many%02d", i)
		key := filepath.Join(dir, u)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", u, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "useradd -m -s /bin/sh -p '*' %[1]s && install -d -m 0700 -o %[1]s -g %[1]s /home/%[1]s/.ssh &&\n"+
			"printf '%%s\\n' '%[2]s' >/home/%[1]s/.ssh/authorized_keys && chown %[1]s:%[1]s /home/%[1]s/.ssh/authorized_keys || exit 1\n",
			u, strings.TrimSpace(string(pub)))
		logins = append(logins, Login{User: u, KeyFile: key})
	}
	if out, err := h.Exec(context.Background(), script.String(), nil); err != nil {
		t.Fatalf("creating users: %v: %s", err, out)
	}
	if out, err := h.Exec(context.Background(), "sshd -T | grep -i '^maxstartups '", nil); err != nil || strings.TrimSpace(string(out)) != "maxstartups 10:30:100" {
		t.Fatalf("the lab host's MaxStartups is not the default: %q %v", out, err)
	}
	// The sshd module's facts carry the value the bound is taken from.
	if out, err := h.Exec(context.Background(), sshdQuery().Script, nil); err != nil {
		t.Fatal(err)
	} else if f := parseSSHDFactsT(t, string(out)); f.MaxStartups != "10:30:100" || f.PerSourceMaxStartups != "none" {
		t.Errorf("sshd facts: MaxStartups %q PerSourceMaxStartups %q", f.MaxStartups, f.PerSourceMaxStartups)
	}
	d, err := transport.NewDialer(transport.Config{KnownHostsFile: l.KnownHosts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Host: h.Name, ControlUser: "admin", Dial: transportDialer{d, h, l.AdminKey}, Facts: &Facts{},
		ClientAddr: "127.0.0.1", ServerAddr: h.Addr, ServerPort: h.Port, Logins: logins, MinWorking: n}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := runModule(ctx, h.Runner(), env, mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`))
	t.Logf("sshd change with %d proof logins: %s", n+1, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("a harmless change was not kept: %v", err)
	}
	if !res.Changed || res.RolledBack || !strings.Contains(res.Changes[0].What, "fresh logins ok: admin (control), bg-many00") {
		t.Errorf("result %+v", res)
	}
	out, err := h.Exec(context.Background(), "sshd -T | grep -i '^loglevel'; grep -c 'drop connection' /var/log/auth.log || :", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "loglevel VERBOSE\n0\n" {
		t.Errorf("effective LogLevel and sshd's MaxStartups drops: %q, want VERBOSE and none", got)
	}
}

// TestSSHDFactsStartups: the sshd module's facts carry MaxStartups and
// PerSourceMaxStartups from the sshd -T it runs anyway.
func TestSSHDFactsStartups(t *testing.T) {
	f := parseSSHDFactsT(t, sshdFactsOut(debianMain, nil, "maxstartups 10:30:100\npersourcemaxstartups none\n"))
	if f.MaxStartups != "10:30:100" || f.PerSourceMaxStartups != "none" {
		t.Errorf("MaxStartups %q PerSourceMaxStartups %q", f.MaxStartups, f.PerSourceMaxStartups)
	}
	env := &Env{Facts: &Facts{}}
	env.Facts.Set(sshdFactsKey, f)
	if n, why := proveParallel(env, nil); n != loginParallel || why != "sshd MaxStartups 10:30:100" {
		t.Errorf("proveParallel: %d (%s)", n, why)
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

// TestProbeCommandsUnchanged pins the probe one-liners that
// probe_login.sh and probe_key.sh carry: the probe's line is parsed from
// recorded outputs (testdata/facts/probe), and ProbeCommand is written
// into users' authorized_keys files, so any change to either text must be
// deliberate.
func TestProbeCommandsUnchanged(t *testing.T) {
	for name, tt := range map[string]struct{ got, want string }{
		"VerifyCommand": {VerifyCommand, `printf '` + ProbeOutputPrefix + ` user=%s sudo=' "${LOGNAME:-$(id -un)}"; if sudo -n true </dev/null >/dev/null 2>&1; then echo ok; else echo no; fi`},
		"ProbeCommand":  {ProbeCommand, `echo ` + ProbeOutputPrefix + ` user=$(id -un) sudo=$(sudo -n true </dev/null >/dev/null 2>&1 && echo ok || echo no)`},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", name, tt.got, tt.want)
		}
	}
	for _, bad := range []string{"# only a comment\n\n", "echo a\necho b\n"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("commandLine(%q) did not panic", bad)
				}
			}()
			commandLine(bad)
		}()
	}
}
