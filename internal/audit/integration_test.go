package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
)

var record = flag.Bool("record", false, "save what the host query reads on the lab hosts to testdata/lab")

// testKeys are the key pairs of the test users, made once per test run.
type testKeys struct {
	dir  string
	mu   sync.Mutex
	pubs map[string]string // user → authorized_keys line
}

func newTestKeys(t *testing.T) *testKeys {
	return &testKeys{dir: t.TempDir(), pubs: map[string]string{}}
}

// key returns the private key file of user, making the pair on first use.
func (k *testKeys) key(t *testing.T, user string) string {
	t.Helper()
	file, _ := k.pair(t, user)
	return file
}

// pair returns the private key file and the authorized_keys line of user.
func (k *testKeys) pair(t *testing.T, user string) (string, string) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	file := filepath.Join(k.dir, user)
	if pub, ok := k.pubs[user]; ok {
		return file, pub
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, user+"@audit-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	spk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k.pubs[user] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))) + " " + user + "@audit-test"
	return file, k.pubs[user]
}

// expand replaces {{key:NAME}} with NAME's public key, quoted.
func (k *testKeys) expand(t *testing.T, script string) string {
	t.Helper()
	for {
		i := strings.Index(script, "{{key:")
		if i < 0 {
			return script
		}
		j := strings.Index(script[i:], "}}")
		user := script[i+len("{{key:") : i+j]
		_, pub := k.pair(t, user)
		script = script[:i] + shell.Quote(pub) + script[i+j+2:]
	}
}

// sshLogin logs in to h as user with only key, as an operator would, and
// runs true.
func sshLogin(t *testing.T, l *lab.Lab, h *lab.Host, user, key string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", "-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+l.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=10",
		"-i", key,
		"-p", strconv.Itoa(h.Port),
		user+"@"+h.Addr, "true").CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(err.Error() + ": " + string(out)))
	}
	return nil
}

// portRe finds a client port in one of sshd's log lines.
var portRe = regexp.MustCompile(`(?: port |\]:)(\d+)\b`)

// refusedLogin tries to log in to h as user with key, which sshd must
// refuse, over a connection whose client port it returns (as
// verify_access records it).
// bobAttempts makes bob's older, successful connection, then the refused
// attempt verify_access made (its client port, returned), then a later
// refused one.
func bobAttempts(t *testing.T, l *lab.Lab, h *lab.Host, keys *testKeys) int {
	t.Helper()
	if err := sshLogin(t, l, h, "bob", keys.key(t, "bob")); err != nil {
		t.Fatalf("bob with his own key: %v", err)
	}
	port := refusedLogin(t, l, h, "bob", l.AdminKey)
	if err := sshLogin(t, l, h, "bob", l.AdminKey); err == nil {
		t.Fatal("bob logs in with admin's key")
	}
	return port
}

func refusedLogin(t *testing.T, l *lab.Lab, h *lab.Host, user, key string) int {
	t.Helper()
	pem, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(l.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(h.Addr, strconv.Itoa(h.Port))
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.TCPAddr).Port
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, _, _, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys})
	if err == nil {
		c.Close()
		t.Fatalf("%s logs in to %s with %s", user, h.Name, key)
	}
	return port
}

// holdSession opens an interactive session (a pty: sshd records it in
// utmp) as user on h, running until the test ends.
func holdSession(t *testing.T, l *lab.Lab, h *lab.Host, user, key string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-tt",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+l.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-i", key,
		"-p", strconv.Itoa(h.Port),
		user+"@"+h.Addr, "exec sleep 600")
	stdin, err := cmd.StdinPipe() // held open: the session lasts
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("hold a session of %s: %v", user, err)
	}
	t.Cleanup(func() {
		cancel()
		stdin.Close()
		_ = cmd.Wait()
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if out, err := h.Exec(wctx, "for i in $(seq 200); do pgrep -u "+shell.Quote(user)+" -x sleep >/dev/null && exit 0; sleep 0.1; done; exit 1", nil); err != nil {
		t.Fatalf("the held session of %s never started: %v\n%s", user, err, out)
	}
}

// recorder keeps the output of the host query.
type recorder struct {
	r   engine.Runner
	out []byte
	fc  []byte // the answer about forced commands' programs
}

func (r *recorder) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	out, err := r.r.Run(ctx, cmd, stdin)
	nonce, bodies, framed := wire.Parse(stdin)
	switch {
	case framed && len(bodies) == 1 && strings.HasPrefix(bodies[0], "bg_client="):
		// The host query's output, without its wire markers: what
		// answerHostQuery frames again for the replaying script.
		begin := wire.Begun(nonce, 0, "")
		end := strings.TrimPrefix(wire.Reply(nonce, 0, "", 0), begin)
		o, okBegin := bytes.CutPrefix(out, []byte(begin))
		o, okEnd := bytes.CutSuffix(o, []byte(end))
		if !okBegin || !okEnd || err != nil {
			return out, fmt.Errorf("recorder: the host query did not end with status 0: %v\n%s", err, out)
		}
		r.out = o
	case bytes.Contains(stdin, []byte("\nbg_fc() {")):
		r.fc = out
	}
	return out, err
}

// noRunner fails the test when anything is run.
type noRunner struct{ t *testing.T }

func (n noRunner) Run(_ context.Context, cmd string, _ []byte) ([]byte, error) {
	n.t.Errorf("a second round trip: %s", cmd)
	return nil, errors.New("no runner")
}

func labEnv(h *lab.Host) *engine.Env {
	return &engine.Env{Host: h.Name, ControlUser: lab.AdminUser, ClientAddr: "127.0.0.1", ServerAddr: h.Addr, ServerPort: 22, Facts: &engine.Facts{}}
}

// TestLabScenarios injects each host's faults on a real lab host, audits
// it, and compares with exactly what the scenario expects; plain ssh then
// proves that the lockouts are real (and that the control logins work).
func TestLabScenarios(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		lab.Skip(t, "no ssh client: %v", err)
	}
	runLabScenarios(t, lab.New(t, len(labHosts)+1), *record)
}

// TestLabScenariosOnKinds runs the same scenarios on systemd hosts of each
// kind (Debian 12 and 13: OpenSSH 9.2 and 10.0, sshd logging to journald),
// which must give the same diagnoses as the namespace hosts.
func TestLabScenariosOnKinds(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		lab.Skip(t, "no ssh client: %v", err)
	}
	// One kind at a time: each systemd host's init, journald and logind
	// hold inotify instances, and two kinds' hosts at once (30) exceed
	// the machine's default fs.inotify.max_user_instances (128): systemd
	// then exits at boot with "Too many open files".
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			start := time.Now()
			l := lab.NewKind(t, k, len(labHosts)+1)
			t.Logf("booted %d %s hosts in %v", len(l.Hosts), k, time.Since(start).Round(time.Millisecond))
			runLabScenarios(t, l, false)
		})
	}
}

// runLabScenarios runs every scenario of labHosts on l's hosts (one each,
// and a spare for "unexplained"); save records what the host query read.
func runLabScenarios(t *testing.T, l *lab.Lab, save bool) {
	if l.Kind.Systemd() {
		// The host as the lab made it, before the kind's prelude: what
		// the prelude changes must be the only finding.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := New(Options{}).Run(ctx, l.Hosts[0].Runner(), labEnv(l.Hosts[0]))
		if err != nil {
			t.Fatalf("untouched %s host: %v", l.Kind, err)
		}
		checkFindings(t, auditCase{name: "untouched " + string(l.Kind) + " host", want: kindUntouched[l.Kind]}, res.Findings)
	}
	if pre := kindPrelude[l.Kind]; pre != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		errs := make([]error, len(l.Hosts))
		var wg sync.WaitGroup
		for i, h := range l.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := h.Exec(ctx, setupPrelude+pre, nil); err != nil {
					errs[i] = fmt.Errorf("%s: %s prelude: %w\n%s", h.Name, l.Kind, err, out)
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	keys := newTestKeys(t)
	keyOf := func(user string) string {
		if user == lab.AdminUser {
			return l.AdminKey
		}
		return keys.key(t, user)
	}
	for i, lh := range labHosts {
		h := l.Hosts[i]
		t.Run(lh.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if lh.setup != "" {
				start := time.Now()
				if out, err := h.Exec(ctx, setupPrelude+keys.expand(t, lh.setup), nil); err != nil {
					t.Fatalf("setup: %v\n%s", err, out)
				}
				t.Logf("setup: %v", time.Since(start))
			}
			for _, u := range lh.hold {
				holdSession(t, l, h, u, keyOf(u))
			}
			for _, ac := range lh.audits {
				rec := &recorder{r: h.Runner()}
				start := time.Now()
				res, err := New(ac.opts).Run(ctx, rec, labEnv(h))
				t.Logf("audit %s: %v", ac.name, time.Since(start))
				if err != nil {
					t.Fatalf("%s: %v", ac.name, err)
				}
				if res.Changed || len(res.Changes) > 0 {
					t.Errorf("%s: audit reports changes: %+v", ac.name, res.Changes)
				}
				checkFindingsOn(t, l.Kind, ac, res.Findings)
				if save {
					if err := os.WriteFile(filepath.Join("testdata", "lab", ac.name+".txt"), rec.out, 0o644); err != nil {
						t.Fatal(err)
					}
					if rec.fc != nil {
						if err := os.WriteFile(filepath.Join("testdata", "lab", ac.name+".fc.txt"), rec.fc, 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for _, u := range append(slices.Clone(lh.refused), lh.refusedOn[l.Kind]...) {
				if err := sshLogin(t, l, h, u, keyOf(u)); err == nil {
					t.Errorf("ssh %s@%s works, but the audit says %s is locked out", u, lh.name, u)
				}
			}
			for _, u := range append(slices.Clone(lh.works), lh.worksOn[l.Kind]...) {
				if err := sshLogin(t, l, h, u, keyOf(u)); err != nil {
					t.Errorf("ssh %s@%s: %v", u, lh.name, err)
				}
			}
		})
	}
	// The runner's path: every query of the task gathered in one script
	// by the runner's Executor (in an SSH session under sudo: here its
	// environment is given), then Run needs no further round trip.
	t.Run("one round trip", func(t *testing.T) {
		t.Parallel()
		h := l.Hosts[0] // clean: audits there do not change it
		for _, users := range [][]string{nil, {lab.AdminUser}} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m := New(Options{Users: users})
			env := labEnv(h)
			engine.NewExecutor(sessionRunner{h}, env).Gather(ctx, m.Queries())
			for _, q := range m.Queries() {
				if _, ok := env.Facts.Get(q.Key); !ok {
					t.Fatalf("query %s: not gathered", q.Key)
				}
			}
			res, err := m.Run(ctx, noRunner{t}, env)
			if err != nil {
				t.Fatal(err)
			}
			checkFindings(t, auditCase{name: "one round trip"}, res.Findings)
		}
	})
	// A failed login that nothing explains is reported with sshd's log;
	// one a finding explains is not. On the spare host: bob is fine, but
	// logs in with a key sshd does not know.
	t.Run("unexplained", func(t *testing.T) {
		t.Parallel()
		h := l.Hosts[len(labHosts)]
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		script := setupPrelude + keys.expand(t, "bg_adduser bob {{key:bob}}\nbg_adduser carol {{key:carol}}\nchage -E 1 carol")
		if out, err := h.Exec(ctx, script, nil); err != nil {
			t.Fatalf("setup: %v\n%s", err, out)
		}
		// Only the lines of the one attempt are its evidence.
		port := bobAttempts(t, l, h, keys)
		// journald may write the refused attempts' lines a moment after
		// the client gave up: audit reads the log as it is then.
		if out, err := h.Exec(ctx, `for i in $(seq 200); do
	[ "$({ journalctl -t sshd -t sshd-session --no-pager 2>/dev/null; cat /var/log/auth.log 2>/dev/null; } | grep -c 'authenticating user bob')" -ge 2 ] && exit 0
	sleep 0.1
done
{ journalctl -t sshd -t sshd-session --no-pager 2>/dev/null; cat /var/log/auth.log 2>/dev/null; } | tail -n 40
exit 1`, nil); err != nil {
			t.Fatalf("the refused attempts never reached sshd's log: %v\n%s", err, out)
		}
		env := labEnv(h)
		no := false
		env.Facts.Set(engine.FactAccess, []engine.Access{
			{User: "bob", Path: "direct", OK: false, Error: "ssh: handshake failed: unable to authenticate", SourcePort: port},
			{User: "carol", Path: "direct", OK: false, Error: "ssh: handshake failed: unable to authenticate"},
			{User: lab.AdminUser, Path: "direct", OK: true, Sudo: &no},
		})
		res, err := New(Options{Users: []string{"bob", "carol"}, SudoUsers: []string{"bob", "carol"}}).Run(ctx, h.Runner(), env)
		if err != nil {
			t.Fatal(err)
		}
		checkFindings(t, auditCase{
			name: "unexplained",
			want: []string{
				"admin login-failed-unexplained lockout ",
				"bob login-failed-unexplained lockout ",
				"carol account-expired lockout /etc/shadow",
				"carol sudo-account lockout /etc/shadow",
			},
			details: map[string][]string{
				"bob login-failed-unexplained ":   {"login as bob over direct failed", fmt.Sprintf("authenticating user bob 127.0.0.1 port %d", port), fmt.Sprintf("client port %d", port)},
				"admin login-failed-unexplained ": {"sudo -n true after the login as admin"},
			},
		}, res.Findings)
		for _, f := range res.Findings {
			if f.User != "bob" {
				continue
			}
			if strings.Contains(f.Detail, "Accepted publickey for bob") {
				t.Errorf("bob's failed attempt quotes his older, successful connection:\n%s", f.Detail)
			}
			// Every quoted line is of that connection: none names
			// another client port.
			for _, line := range strings.Split(f.Detail, "\n")[1:] {
				for _, m := range portRe.FindAllStringSubmatch(line, -1) {
					if m[1] != strconv.Itoa(port) {
						t.Errorf("bob's attempt from port %d quotes another connection's line: %s", port, line)
					}
				}
			}
			if n := len(strings.Split(f.Detail, "\n")) - 1; n == 0 {
				t.Errorf("bob's attempt quotes no log line:\n%s", f.Detail)
			}
		}
	})
}

// TestSocketActivationOnKinds: on a systemd host switched to socket
// activation as Ubuntu ships it, a Port in sshd_config that the socket
// does not listen on is reported; before it, nothing is.
func TestSocketActivationOnKinds(t *testing.T) {
	k := lab.Bookworm
	lab.Require(t, k)
	l := lab.NewKind(t, k, 1)
	h := l.Hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Debian 12's ssh.socket starts one sshd per connection (ssh@.service),
	// which keeps no /run/sshd: without it sshd -T fails, which audit
	// rightly reports as privsep-dir; here it is made, to judge the port.
	if out, err := h.Exec(ctx, "systemctl disable --now ssh.service && systemctl enable --now ssh.socket && install -d -m 0755 /run/sshd", nil); err != nil {
		t.Fatalf("socket activation: %v\n%s", err, out)
	}
	audit := func() []string {
		t.Helper()
		res, err := New(Options{}).Run(ctx, h.Runner(), labEnv(h))
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(res.Findings)
	}
	if got := audit(); len(got) != 0 {
		t.Errorf("socket-activated, Port as the socket: %q", got)
	}
	if out, err := h.Exec(ctx, "printf 'Port 2200\\n' >/etc/ssh/sshd_config.d/50-port.conf", nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := audit(); !slices.Contains(got, " socket-overrides-port risk ssh.socket") {
		t.Errorf("Port 2200 beside a socket on 22: %q", got)
	}
	// The same port on another address: the socket does not listen there
	// either.
	if out, err := h.Exec(ctx, "rm /etc/ssh/sshd_config.d/50-port.conf && printf 'ListenAddress 127.0.0.1\\n' >/etc/ssh/sshd_config.d/50-listen.conf", nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	res, err := New(Options{}).Run(ctx, h.Runner(), labEnv(h))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, f := range res.Findings {
		if f.ID == "socket-overrides-port" {
			found = true
			if !strings.Contains(f.Detail, "127.0.0.1:22") || !strings.Contains(f.Detail, "50-listen.conf") {
				t.Errorf("ListenAddress 127.0.0.1 beside a socket on %s:22: the finding does not name the address and its line: %s", h.Addr, f.Detail)
			}
		}
	}
	if !found {
		t.Errorf("ListenAddress 127.0.0.1 beside a socket on %s:22: %q", h.Addr, keysOf(res.Findings))
	}
}

// sessionRunner runs scripts on a lab host as in an SSH session under
// sudo, whose environment it gives.
type sessionRunner struct{ h *lab.Host }

func (r sessionRunner) Run(ctx context.Context, _ string, stdin []byte) ([]byte, error) {
	session := "SSH_CONNECTION=" + shell.Quote("127.0.0.1 40000 "+r.h.Addr+" 22") + " SUDO_USER=admin; export SSH_CONNECTION SUDO_USER; /bin/sh -s"
	return r.h.Exec(ctx, session, stdin)
}
