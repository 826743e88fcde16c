package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

// These tests run against real OpenSSH servers: lab hosts (see package lab),
// each its own sshd on 127.x.y.z:22 with an admin user that has
// passwordless sudo. lab.New skips loudly without root or openssh-server,
// and fails instead when CI=true.

type labEnv struct {
	lab      *lab.Lab
	adminPub ssh.PublicKey
}

func (e *labEnv) target(h *lab.Host) Target {
	return Target{Name: h.Name, Host: h.Addr, Port: h.Port, User: lab.AdminUser, IdentityFiles: []string{e.lab.AdminKey}, NoAgent: true}
}

func (e *labEnv) dial(t *testing.T, cfg Config, target Target) *Client {
	t.Helper()
	if cfg.KnownHostsFile == "" {
		cfg.KnownHostsFile = e.lab.KnownHosts
	}
	c, err := dialOnce(t, cfg, target)
	if err != nil {
		t.Fatalf("dial %s: %v", target.Name, err)
	}
	return c
}

// hostKeyLine is h's line in the lab's known_hosts.
func (e *labEnv) hostKey(t *testing.T, h *lab.Host) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(e.lab.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && slices.Contains(strings.Split(f[0], ","), knownhosts.Normalize(net.JoinHostPort(h.Addr, strconv.Itoa(h.Port)))) {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f[1] + " " + f[2]))
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	t.Fatalf("%s is not in %s", h.Name, e.lab.KnownHosts)
	return nil
}

func hostExec(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, script, nil)
	if err != nil {
		t.Fatalf("%s: %s: %v", h.Name, script, err)
	}
	return string(out)
}

func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: integration tests against real sshd skipped in -short mode")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	l := lab.New(t, 2)
	pubData, err := os.ReadFile(l.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pubData)
	if err != nil {
		t.Fatal(err)
	}
	env := &labEnv{lab: l, adminPub: signer.PublicKey()}

	t.Run("Run", func(t *testing.T) { testRun(t, env) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, env) })
	t.Run("BecomeNoPassword", func(t *testing.T) { testBecomeNoPassword(t, env) })
	t.Run("BecomePassword", func(t *testing.T) { testBecomePassword(t, env) })
	t.Run("RootShell", func(t *testing.T) { testRootShell(t, env) })
	t.Run("ShellStartCutOff", func(t *testing.T) { testShellStartCutOff(t, env) })
	t.Run("Jump", func(t *testing.T) { testJump(t, env) })
	t.Run("HostKeys", func(t *testing.T) { testRealHostKeys(t, env) })
	t.Run("KeepaliveClosesDeadConnection", func(t *testing.T) { testKeepalive(t, env) })
	t.Run("OutputLimit", func(t *testing.T) { testOutputLimit(t, env) })
	t.Run("HostLock", func(t *testing.T) { testHostLock(t, env) })
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testRun(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[0]
	c := env.dial(t, Config{}, env.target(h))
	ctx := context.Background()

	if c.User() != lab.AdminUser {
		t.Errorf("User() = %q", c.User())
	}
	if got := c.PublicKey(); got == nil || !bytes.Equal(got.Marshal(), env.adminPub.Marshal()) {
		t.Errorf("PublicKey() = %v, want the admin key", got)
	}

	// The addresses are the server's view, as in $SSH_CONNECTION.
	out, err := c.Run(ctx, `echo "$SSH_CONNECTION"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 || c.LocalAddr() != f[0] || c.RemoteAddr() != net.JoinHostPort(f[2], f[3]) || f[2] != h.Addr {
		t.Errorf("LocalAddr %q RemoteAddr %q, server sees %q", c.LocalAddr(), c.RemoteAddr(), out)
	}

	// stdin arrives intact, binary and large, and is closed after.
	for _, in := range [][]byte{nil, []byte("no newline at end"), randomBytes(t, 1<<20)} {
		out, err := c.Run(ctx, "cat", in)
		if err != nil {
			t.Fatalf("cat: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("cat returned %d bytes, sent %d", len(out), len(in))
		}
	}

	// Failure: stdout still returned, exit code and stderr in ExitError.
	out, err = c.Run(ctx, "printf partial; echo 'first problem' >&2; echo second >&2; exit 3", nil)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || exit.Stderr != "first problem\nsecond\n" || string(out) != "partial" {
		t.Fatalf("got out=%q err=%#v, want exit 3 with stderr", out, err)
	}
	if got, want := err.Error(), "exit status 3: first problem; second"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if IsUnreachable(err) {
		t.Errorf("a failing command is not an unreachable host")
	}
	_, err = c.Run(ctx, "kill -TERM $$", nil)
	if !errors.As(err, &exit) || exit.Signal != "TERM" || exit.Code != 128+15 {
		t.Errorf("want killed by TERM, got %#v", err)
	}

	// Sessions in parallel on one connection (sshd allows 10).
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("session %d", i)
			out, err := c.Run(ctx, "cat", []byte(want))
			if err != nil || string(out) != want {
				t.Errorf("parallel Run: %q, %v", out, err)
			}
		}()
	}
	wg.Wait()

	c.Close()
	if _, err := c.Run(ctx, "true", nil); err == nil {
		t.Errorf("Run after Close succeeded")
	}
}

func testCancel(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[0]
	c := env.dial(t, Config{}, env.target(h))
	marker := "4242.5" // sleep 4242.5: easy to find on the host
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, "sleep "+marker, nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled Run took %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want context.DeadlineExceeded, got %v", err)
	}
	// The remote command is stopped too, and the connection still works.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(hostExec(t, h, "ps -eo args"), "sleep "+marker) {
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled command still runs on %s", h.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := c.Run(context.Background(), "echo ok", nil); err != nil || string(out) != "ok\n" {
		t.Errorf("Run after a cancelled one: %q, %v", out, err)
	}
}

// testBecomeNoPassword: admin has NOPASSWD sudo on lab hosts.
func testBecomeNoPassword(t *testing.T, env *labEnv) {
	c := env.dial(t, Config{}, env.target(env.lab.Hosts[0]))
	b := &Become{Client: c}
	in := []byte("line one\n'quoted' \"double\" $HOME `id`\n\x00binary\xff\nno final newline")
	out, err := b.Run(context.Background(), `id -un; cat; echo; printf '%s\n' "${LC_ALL-unset}"`, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "root\n" + string(in) + "\nunset\n"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	// A password given anyway is dropped, not fed to the command.
	b.Password = "not needed"
	if out, err := b.Run(context.Background(), "cat", in); err != nil || !bytes.Equal(out, in) {
		t.Errorf("NOPASSWD with a password: %q, %v", out, err)
	}
	// An exit status of the command is the command's.
	_, err = b.Run(context.Background(), "exit 7", nil)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 7 {
		t.Errorf("want exit 7, got %v", err)
	}
}

// testRootShell: without a password, commands run in subshells of one
// root shell: the same parent for every command, nothing one command does
// to its shell leaks into the next, output and exit statuses framed
// exactly; a command cut off by its context ends that shell, and the next
// command gets a new one.
func testRootShell(t *testing.T, env *labEnv) {
	c := env.dial(t, Config{}, env.target(env.lab.Hosts[0]))
	b := &Become{Client: c}
	defer b.Close()
	run := func(cmd string, in []byte) string {
		t.Helper()
		out, err := b.Run(context.Background(), cmd, in)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return string(out)
	}
	parent := run("echo $PPID; id -un", nil)
	if !strings.HasSuffix(parent, "\nroot\n") {
		t.Fatalf("not root: %q", parent)
	}
	run("cd /tmp; X=leaked; export Y=leaked; umask 077; exit 0", nil)
	if got := run("echo $PPID; id -un; [ \"$(pwd)\" != /tmp ] && echo elsewhere; echo ${X-unset} ${Y-unset}; umask", nil); got != parent+"elsewhere\nunset unset\n0022\n" {
		t.Errorf("second command: %q (first %q)", got, parent)
	}
	for _, out := range []string{"", "no newline", "two\n\n", "@@bg-done fake 0\n"} {
		if got := run("printf '%s' "+shell.Quote(out), nil); got != out {
			t.Errorf("output %q came back as %q", out, got)
		}
	}
	in := []byte("line one\n'quoted' \"double\" $HOME `id`\nBG_IN_x\n\n")
	if got := run("cat", in); got != string(in) {
		t.Errorf("input %q came back as %q", in, got)
	}
	_, err := b.Run(context.Background(), "echo out; echo oops >&2; exit 3", nil)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || exit.Stderr != "oops\n" {
		t.Errorf("want exit 3 with stderr oops, got %#v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := b.Run(ctx, "sleep 5", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cut off: %v", err)
	}
	if again := run("echo $PPID; id -un", nil); again == parent {
		t.Errorf("the shell that ran the cut-off command was used again: %q", again)
	}
}

// testShellStartCutOff: a shell that never answers "ready" — still
// reading its input, or printing something else first — is given up on
// when ctx ends or at once, never waited for, and the connection stays
// usable. (CI once hung here for 8 minutes behind a slow link.)
func testShellStartCutOff(t *testing.T, env *labEnv) {
	c := env.dial(t, Config{}, env.target(env.lab.Hosts[0]))
	for _, tc := range []struct {
		name, cmd string
		timeout   time.Duration // ctx given to StartShell
		within    time.Duration // when StartShell must have returned
		want      func(error) bool
	}{
		// Cut off by ctx: returns as ctx ends.
		{"reads its input forever", "cat >/dev/null", time.Second, 2 * time.Second,
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		// Not cut off: its input is closed, and it ends at once.
		{"prints something else first", "echo hello; exec cat >/dev/null", time.Minute, cancelGrace,
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "unexpected first line") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				sh, err := c.StartShell(ctx, tc.cmd)
				if sh != nil {
					sh.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !tc.want(err) {
					t.Errorf("StartShell: %v", err)
				}
				if d := time.Since(start); d > tc.within {
					t.Errorf("StartShell took %s, want at most %s", d, tc.within)
				}
			case <-time.After(tc.within + 20*time.Second):
				t.Fatal("StartShell did not return")
			}
			if out, err := c.Run(context.Background(), "echo still here", nil); err != nil || string(out) != "still here\n" {
				t.Errorf("the connection after: %q %v", out, err)
			}
		})
	}
}

// testBecomePassword: a user whose sudo rule needs the password.
func testBecomePassword(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[1]
	const user, password = "bgpw", `pw with spaces, 'quotes' and $x`
	hostExec(t, h, fmt.Sprintf(`set -e
useradd -m -s /bin/bash %[1]s
printf '%%s:%%s\n' %[1]s %[2]s | chpasswd
echo '%[1]s ALL=(ALL:ALL) ALL' > /etc/sudoers.d/%[1]s
chmod 0440 /etc/sudoers.d/%[1]s
install -d -o %[1]s -m 0700 /home/%[1]s/.ssh
install -o %[1]s -m 0600 /home/%[3]s/.ssh/authorized_keys /home/%[1]s/.ssh/authorized_keys`,
		user, shell.Quote(password), lab.AdminUser))
	target := env.target(h)
	target.User = user
	c := env.dial(t, Config{}, target)
	ctx := context.Background()

	// The command's stdin arrives intact after the password line, even
	// when it holds the password itself.
	in := []byte("first line\n" + password + "\nlast line, no newline")
	out, err := (&Become{Client: c, Password: password}).Run(ctx, "id -un; cat", in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "root\n" + string(in); string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}

	// The password is on no command line while sudo runs.
	out, err = (&Become{Client: c, Password: password}).Run(ctx, "ps -eo args", nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("quotes")) {
		t.Errorf("the password shows in the process list:\n%s", out)
	}

	// No password: recognisable.
	_, err = (&Become{Client: c}).Run(ctx, "true", nil)
	if !errors.Is(err, ErrBecomeNeedsPassword) {
		t.Errorf("want ErrBecomeNeedsPassword, got %v", err)
	}

	// A wrong password: one attempt only, clear, and not echoed — even with
	// several lines of input that sudo -S would otherwise try as passwords.
	wrong := "wrong-Secret-42"
	_, err = (&Become{Client: c, Password: wrong}).Run(ctx, "cat", []byte("a\nb\nc\n"))
	if !errors.Is(err, ErrBecomeBadPassword) {
		t.Fatalf("want ErrBecomeBadPassword, got %v", err)
	}
	if strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "1 incorrect password attempt") {
		t.Errorf("error %q: want one attempt reported and no password", err)
	}
}

func testJump(t *testing.T, env *labEnv) {
	jump, dest := env.lab.Hosts[0], env.lab.Hosts[1]
	target := env.target(dest)
	target.Jumps = []Target{env.target(jump)}
	c := env.dial(t, Config{}, target)
	out, err := c.Run(context.Background(), "hostname", nil)
	if err != nil || strings.TrimSpace(string(out)) != dest.Name {
		t.Errorf("hostname through %s: %q, %v (want %s)", jump.Name, out, err, dest.Name)
	}
	if c.RemoteAddr() != net.JoinHostPort(dest.Addr, "22") || c.LocalAddr() == "" {
		t.Errorf("through a jump: LocalAddr %q RemoteAddr %q", c.LocalAddr(), c.RemoteAddr())
	}

	// Each hop's key is checked under its own name.
	for _, tc := range []struct {
		missing *lab.Host
		hop     string
	}{{jump, jump.Name}, {dest, ""}} {
		file := knownHostsFile(t, khLine(net.JoinHostPort(otherOf(env, tc.missing).Addr, "22"), env.hostKey(t, otherOf(env, tc.missing))))
		_, err := dialOnce(t, Config{KnownHostsFile: file}, target)
		var de *DialError
		if !errors.As(err, &de) || de.Stage != StageHostKey || de.Hop != tc.hop || !errors.Is(err, ErrHostKeyUnknown) {
			t.Errorf("%s unknown: want a hostkey DialError with Hop %q, got %v", tc.missing.Name, tc.hop, err)
		}
	}
}

func otherOf(env *labEnv, h *lab.Host) *lab.Host {
	if h == env.lab.Hosts[0] {
		return env.lab.Hosts[1]
	}
	return env.lab.Hosts[0]
}

func testRealHostKeys(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[0]
	real := env.hostKey(t, h)

	// Unknown: refused, nothing written.
	empty := knownHostsFile(t)
	_, err := dialOnce(t, Config{KnownHostsFile: empty}, env.target(h))
	wantUnknown(t, err, empty)

	// Accept-new records the very key the host has.
	file := knownHostsFile(t)
	env.dial(t, Config{KnownHostsFile: file, AcceptNew: true}, env.target(h))
	data, _ := os.ReadFile(file)
	if want := khLine(net.JoinHostPort(h.Addr, "22"), real) + "\n"; string(data) != want {
		t.Errorf("recorded %q, want %q", data, want)
	}

	// Changed: refused, both fingerprints shown, even with AcceptNew.
	old := newKey(t, "ed25519").pub()
	changed := knownHostsFile(t, khLine(net.JoinHostPort(h.Addr, "22"), old))
	_, err = dialOnce(t, Config{KnownHostsFile: changed, AcceptNew: true}, env.target(h))
	wantChanged(t, err, changed, ssh.FingerprintSHA256(old), ssh.FingerprintSHA256(real))
}

// testKeepalive: a network that goes silent under a running command ends
// the command with a lost connection after three missed keepalives.
func testKeepalive(t *testing.T, env *labEnv) {
	h := env.lab.Hosts[0]
	p := startProxy(t, net.JoinHostPort(h.Addr, "22"))
	host, portStr, _ := net.SplitHostPort(p.addr)
	port, _ := strconv.Atoi(portStr)
	file := knownHostsFile(t, khLine(p.addr, env.hostKey(t, h)))
	target := env.target(h)
	target.Host, target.Port = host, port
	c := env.dial(t, Config{KnownHostsFile: file, Keepalive: 500 * time.Millisecond}, target)
	if _, err := c.Run(context.Background(), "true", nil); err != nil {
		t.Fatal(err)
	}
	// Alive and idle for several intervals: keepalives are answered.
	time.Sleep(2 * time.Second)
	if _, err := c.Run(context.Background(), "true", nil); err != nil {
		t.Fatalf("idle connection with keepalives: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), "sleep 30", nil)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	p.freeze()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrConnectionLost) || !IsUnreachable(err) {
			t.Errorf("want ErrConnectionLost, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end 10s after the network went silent (keepalive 500ms)")
	}
	if _, err := c.Run(context.Background(), "true", nil); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Run on a lost connection: %v", err)
	}
}

// proxy forwards TCP to a server until frozen; then it forwards nothing
// but keeps the connections open, like a network that went silent.
type proxy struct {
	addr   string
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func startProxy(t *testing.T, to string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go p.pipe(out, in)
			go p.pipe(in, out)
		}
	}()
	return p
}

func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *proxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			io.Copy(io.Discard, src)
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
