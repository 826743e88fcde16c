package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/report"
)

// blackhole listens on 127.0.0.1 and accepts connections but never sends a
// byte: a host whose kernel answers and whose sshd is wedged.
func blackhole(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// slowProxy listens on 127.0.0.1 and forwards every connection to *target,
// holding each chunk for delay in both directions: a host at the far end of
// a bad satellite link. target is read when a connection arrives.
func slowProxy(t *testing.T, target *atomic.Pointer[string], delay time.Duration) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case <-time.After(delay):
				case <-done:
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", *target.Load())
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(done)
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// hostKeyLine is h's ed25519 host key as a plain known_hosts line for name.
func hostKeyLine(t *testing.T, h *lab.Host, name string) string {
	t.Helper()
	out, err := exec.Command("ssh-keyscan", "-t", "ed25519", h.Addr).Output()
	if err != nil {
		t.Fatalf("ssh-keyscan %s: %v", h.Addr, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && !strings.HasPrefix(line, "#") {
			return name + " " + f[1] + " " + f[2] + "\n"
		}
	}
	t.Fatalf("ssh-keyscan %s: no key in %q", h.Addr, out)
	return ""
}

// waitRemote polls script on h until it succeeds; it returns false after d.
func waitRemote(h *lab.Host, script string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := h.Exec(ctx, script, nil)
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func hostsByName(r *report.Report) map[string]*report.Host {
	m := map[string]*report.Host{}
	for _, h := range r.Hosts {
		m[h.Name] = h
	}
	return m
}

func sshKeygen(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	b, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(b))
}

// TestFaultsOnLab breaks hosts the ways networks and servers break, one
// fault per run, and checks that only the broken host is reported, with a
// reason, on time, and that the others finish as if nothing happened.
func TestFaultsOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	silentPort := blackhole(t)
	var slowTarget atomic.Pointer[string]
	slowTarget.Store(new(string))
	slowPort := slowProxy(t, &slowTarget, 300*time.Millisecond)
	extra := fmt.Sprintf("    faulty:\n      hosts:\n        silent:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n        slow:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n", silentPort, slowPort)
	f := newFleet(t, 3, extra, nil)
	hosts := f.lab.Hosts
	slowTarget.Store(new(net.JoinHostPort(hosts[1].Addr, "22")))
	// The proxy is a path to hosts[1]: known_hosts knows its key under the
	// proxy's name, as ssh would record it.
	kh, err := os.OpenFile(f.knownHosts, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kh.WriteString(hostKeyLine(t, hosts[1], fmt.Sprintf("[127.0.0.1]:%d", slowPort))); err != nil {
		t.Fatal(err)
	}
	kh.Close()
	touch := write(t, f.dir, "touch.yml", "- hosts: all\n  become: true\n  tasks:\n    - command: {cmd: \"touch /root/touched\"}\n")

	t.Run("sshd dies in the middle of apply", func(t *testing.T) {
		_, pub := sshKeygen(t, t.TempDir(), "bg-ops1")
		pb := write(t, f.dir, "mid.yml", `- hosts: labhosts
  become: true
  tasks:
    - user: {name: bg-ops1, shell: /bin/bash}
    - authorized_key: {user: bg-ops1, key: "`+pub+`"}
    - sudoers: {name: breakglass, users: [bg-ops1], nopasswd: true}
    - command: {cmd: "sleep 3"}
    - command: {cmd: "touch /root/after"}
`)
		victim := hosts[0]
		type result struct {
			code     int
			out, err string
		}
		res := make(chan result, 1)
		start := time.Now()
		go func() {
			code, out, stderr := runCLI(t, f.args("apply", pb, "--limit", "labhosts", "--format", "json")...)
			res <- result{code, out, stderr}
		}()
		if !waitRemote(victim, "pgrep -x sleep >/dev/null", 45*time.Second) {
			t.Fatal("the sleep task never started on " + victim.Name)
		}
		if err := victim.KillSSHD(); err != nil {
			t.Fatal(err)
		}
		// The listener is gone; now the sessions ([s] keeps pkill off this
		// very shell, whose command line would match too).
		if _, err := victim.Exec(context.Background(), "pkill -KILL -f '[s]shd:' || true", nil); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		var r result
		select {
		case r = <-res:
		case <-time.After(90 * time.Second):
			t.Fatal("apply did not end after the host's sshd died")
		}
		// The other hosts still sleep 3 s after the kill at most; the
		// victim must not hold the run for anything like --timeout.
		if d := time.Since(killed); d > 30*time.Second {
			t.Errorf("apply took %s after the kill (whole run %s)", d, time.Since(start))
		}
		if r.code&report.ExitUnreachable == 0 {
			t.Errorf("exit %d, want bit 4 set (a host was lost)", r.code)
		}
		byName := hostsByName(decodeReport(t, r.out))
		v := byName[victim.Name]
		if v == nil || v.Status != report.StatusUnreachable {
			t.Fatalf("%s: %+v, want unreachable", victim.Name, v)
		}
		if !strings.Contains(v.Error, "connection lost") {
			t.Errorf("%s: error %q does not say the connection was lost", victim.Name, v.Error)
		}
		for _, h := range hosts[1:] {
			if got := byName[h.Name]; got == nil || got.Status != report.StatusChanged {
				t.Errorf("%s: %+v, want changed", h.Name, got)
			}
			if _, err := h.Exec(context.Background(), "test -e /root/after", nil); err != nil {
				t.Errorf("%s: the last task did not run", h.Name)
			}
		}
		if _, err := victim.Exec(context.Background(), "test ! -e /root/after", nil); err != nil {
			t.Errorf("%s: a task ran after its connection was lost", victim.Name)
		}

		// No half-written files: the key file is absent or exactly the key,
		// sudo's tree is valid, and no temp file is left behind.
		out, err := victim.Exec(context.Background(), "cat /home/bg-ops1/.ssh/authorized_keys 2>/dev/null || true", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "" && got != pub {
			t.Errorf("%s: authorized_keys is neither old nor new:\n%s", victim.Name, out)
		}
		if out, err := victim.Exec(context.Background(), "visudo -c", nil); err != nil {
			t.Errorf("%s: visudo -c fails after the kill: %v %s", victim.Name, err, out)
		}
		out, err = victim.Exec(context.Background(), "find /etc/sudoers.d /home/bg-ops1 /etc -maxdepth 2 \\( -name '*.tmp*' -o -name '.*.breakglass-*' \\) ! -name '.*.breakglass.bak' 2>/dev/null", nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("%s: temp files left behind:\n%s", victim.Name, s)
		}
		if err := victim.StartSSHD(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a host that accepts TCP and never answers", func(t *testing.T) {
		const timeout = 5 * time.Second
		start := time.Now()
		code, out, _ := runCLI(t, "apply", "-i", f.inventory, "--known-hosts", f.knownHosts, "--timeout", timeout.String(),
			"--limit", "silent:"+hosts[2].Name, "--format", "json", touch)
		elapsed := time.Since(start)
		if code != report.ExitUnreachable {
			t.Errorf("exit %d, want 4", code)
		}
		if elapsed > timeout+5*time.Second {
			t.Errorf("run took %s with --timeout %s", elapsed, timeout)
		}
		byName := hostsByName(decodeReport(t, out))
		if s := byName["silent"]; s == nil || s.Status != report.StatusUnreachable || !mentionsTimeout(s.Error) {
			t.Errorf("silent: %+v, want unreachable with a timeout reason", s)
		}
		if h := byName[hosts[2].Name]; h == nil || h.Status != report.StatusChanged || time.Duration(h.MS)*time.Millisecond > timeout {
			t.Errorf("%s: %+v, want changed on time", hosts[2].Name, h)
		}
	})

	t.Run("a very slow host", func(t *testing.T) {
		// 300 ms per chunk each way: the ssh handshake alone needs several
		// seconds. Given the time, it converges.
		code, out, _ := runCLI(t, f.args("apply", touch, "--limit", "slow", "--format", "json")...)
		if code != 0 {
			t.Fatalf("exit %d, want 0 through the slow link", code)
		}
		if h := decodeReport(t, out).Hosts[0]; h.Status != report.StatusChanged {
			t.Errorf("slow: %+v", h)
		}
		if _, err := hosts[1].Exec(context.Background(), "test -e /root/touched", nil); err != nil {
			t.Error("the task did not run on the host behind the slow link")
		}

		// Not given the time, it is reported with the reason, on time,
		// and the fast host is not held back.
		const timeout = 2 * time.Second
		start := time.Now()
		code, out, _ = runCLI(t, "apply", "-i", f.inventory, "--known-hosts", f.knownHosts, "--timeout", timeout.String(),
			"--limit", "slow:"+hosts[2].Name, "--format", "json", touch)
		elapsed := time.Since(start)
		if code != report.ExitUnreachable {
			t.Errorf("exit %d, want 4", code)
		}
		if elapsed > timeout+5*time.Second {
			t.Errorf("run took %s with --timeout %s", elapsed, timeout)
		}
		byName := hostsByName(decodeReport(t, out))
		if s := byName["slow"]; s == nil || s.Status != report.StatusUnreachable || !mentionsTimeout(s.Error) {
			t.Errorf("slow: %+v, want unreachable with a timeout reason", s)
		}
		if h := byName[hosts[2].Name]; h == nil || h.Status == report.StatusUnreachable || h.Status == report.StatusFailed {
			t.Errorf("%s: %+v, want it done", hosts[2].Name, h)
		}
	})

	t.Run("a changed host key is refused even with --accept-new", func(t *testing.T) {
		_, other := sshKeygen(t, t.TempDir(), "impostor")
		otherFields := strings.Fields(other)
		kh := write(t, t.TempDir(), "known_hosts", hostKeyLine(t, hosts[2], hosts[2].Addr)+
			hosts[1].Addr+" "+otherFields[0]+" "+otherFields[1]+"\n")
		before := logins(t, hosts[1])
		code, out, _ := runCLI(t, "apply", "-i", f.inventory, "--known-hosts", kh, "--accept-new", "--timeout", "60s",
			"--limit", hosts[1].Name+":"+hosts[2].Name, "--format", "json", touch)
		if code != report.ExitUnreachable {
			t.Errorf("exit %d, want 4", code)
		}
		byName := hostsByName(decodeReport(t, out))
		h1 := byName[hosts[1].Name]
		if h1 == nil || h1.Status != report.StatusUnreachable {
			t.Fatalf("%s: %+v, want unreachable", hosts[1].Name, h1)
		}
		want := sshFingerprint(t, hosts[1])
		got := keyFingerprint(t, other)
		for _, fp := range []string{want, got} {
			if !strings.Contains(h1.Error, fp) {
				t.Errorf("%s: error lacks fingerprint %s: %q", hosts[1].Name, fp, h1.Error)
			}
		}
		if logins(t, hosts[1]) != before {
			t.Errorf("%s: logged in to a host whose key changed", hosts[1].Name)
		}
		if h2 := byName[hosts[2].Name]; h2 == nil || h2.Status != report.StatusChanged {
			t.Errorf("%s: %+v, want changed", hosts[2].Name, h2)
		}
		if data, _ := os.ReadFile(kh); strings.Count(string(data), "\n") != 2 {
			t.Errorf("known_hosts was modified:\n%s", data)
		}
	})
}

// mentionsTimeout: the reason a user reads must say the time ran out, in
// words, not only Go's "context deadline exceeded".
func mentionsTimeout(s string) bool {
	return strings.Contains(s, "timed out after") || strings.Contains(s, "no answer within")
}

// sshFingerprint is the SHA256 fingerprint of h's ed25519 host key.
func sshFingerprint(t *testing.T, h *lab.Host) string {
	t.Helper()
	return keyFingerprint(t, strings.TrimSpace(strings.SplitN(hostKeyLine(t, h, "x"), " ", 2)[1]))
}

func keyFingerprint(t *testing.T, pub string) string {
	t.Helper()
	p := write(t, t.TempDir(), "k.pub", pub+"\n")
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", p).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("ssh-keygen -l: %q", out)
	}
	return f[1]
}

// buildBinary builds cmd/breakglass into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "breakglass")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/breakglass/breakglass/cmd/breakglass")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBecomePasswordNeverLeaksOnLab runs apply as a control user who needs
// a password for sudo, with the password in BREAKGLASS_BECOME_PASSWORD, and
// looks for the password and the control user's private key everywhere a
// user or another local user could see them: every command line on the
// host while the run is in progress, the output, the JSON report.
func TestBecomePasswordNeverLeaksOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	const password = "S3cret-Pa55"
	bin := buildBinary(t)
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	key, pub := sshKeygen(t, t.TempDir(), "ops")
	setup := `useradd -m -s /bin/bash ops && echo 'ops:` + password + `' | chpasswd &&
echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops && chmod 0440 /etc/sudoers.d/ops &&
install -d -m 0700 -o ops -g ops /home/ops/.ssh && cat > /home/ops/.ssh/authorized_keys &&
chown ops:ops /home/ops/.ssh/authorized_keys && chmod 0600 /home/ops/.ssh/authorized_keys`
	if out, err := h.Exec(context.Background(), setup, []byte(pub+"\n")); err != nil {
		t.Fatalf("set up ops: %v %s", err, out)
	}
	if out, err := sshAs(f, h, "ops", key, "sudo -n true"); err == nil {
		t.Fatalf("ops has passwordless sudo: the test would prove nothing (%s)", out)
	}
	inv := write(t, t.TempDir(), "inv.yml", "all:\n  hosts:\n    "+h.Name+":\n      ansible_host: "+h.Addr+
		"\n      ansible_user: ops\n      ansible_ssh_private_key_file: "+key+"\n")
	pb := write(t, t.TempDir(), "pb.yml", "- hosts: all\n  become: true\n  tasks:\n    - user: {name: bg-ops1, shell: /bin/bash}\n    - command: {cmd: \"sleep 2\"}\n")

	apply := func(pw string) (int, string, string) {
		cmd := exec.Command(bin, "apply", "-i", inv, "--known-hosts", f.knownHosts, "--timeout", "60s", "--format", "json", pb)
		cmd.Env = append(os.Environ(), "BREAKGLASS_BECOME_PASSWORD="+pw)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
		return code, out.String(), errb.String()
	}

	// Scan every command line on the host, with the shell's own case (no
	// child process carries the password in its argv), until told to stop.
	// The secrets: the password and every line of the private key's body.
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{password}
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			secrets = append(secrets, l)
		}
	}
	if len(secrets) < 2 {
		t.Fatalf("no private key body in %s", key)
	}
	const scan = `secrets=$(cat)
for f in /proc/[0-9]*/cmdline; do
	c=$(tr '\0' ' ' < "$f" 2>/dev/null) || continue
	while IFS= read -r pw; do
		case "$c" in *"$pw"*) echo "LEAK $f: $c";; esac
	done <<EOF
$secrets
EOF
	case "$c" in "sleep 2"*) echo SLEEP;; esac
done`
	stop := make(chan struct{})
	var leaks []string
	sawSleep := false
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, _ := h.Exec(context.Background(), scan, []byte(strings.Join(secrets, "\n")+"\n"))
			for _, line := range strings.Split(string(out), "\n") {
				switch {
				case strings.HasPrefix(line, "LEAK"):
					leaks = append(leaks, line)
				case line == "SLEEP":
					sawSleep = true
				}
			}
		}
	}()
	code, out, stderr := apply(password)
	close(stop)
	<-scanned
	if code != 0 {
		t.Fatalf("exit %d, want 0 with the right become password", code)
	}
	if !sawSleep {
		t.Error("the scan never saw the run's command in progress: it proved nothing")
	}
	for _, l := range leaks {
		t.Errorf("a secret (the password or the private key) is on a command line on the host: %s", l)
	}
	for i, sec := range secrets {
		if strings.Contains(out, sec) || strings.Contains(stderr, sec) {
			t.Errorf("secret %d (0: the password, else a line of the private key) is in the output", i)
		}
	}
	if _, err := h.Exec(context.Background(), "id bg-ops1", nil); err != nil {
		t.Error("the become task did not run as root")
	}

	const wrong = "Wr0ng-Pa55-q7"
	code, out, stderr = apply(wrong)
	if code != report.ExitFailed {
		t.Errorf("wrong password: exit %d, want 2", code)
	}
	if !strings.Contains(out, "rejected the become password") {
		t.Errorf("wrong password: the report does not say so")
	}
	for _, s := range []string{out, stderr} {
		if strings.Contains(s, wrong) || strings.Contains(s, password) {
			t.Error("wrong password: a password is in the output")
		}
	}
}

// TestInterruptOnLab sends the real binary SIGINT while every host is in
// the middle of a task.
func TestInterruptOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	bin := buildBinary(t)
	f := newFleet(t, 3, "", nil)
	pb := write(t, f.dir, "pb.yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - command: {cmd: \"sleep 5\"}\n    - command: {cmd: \"touch /root/after\"}\n")
	cmd := exec.Command(bin, f.args("apply", pb, "--format", "json")...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // harmless once it has exited
		<-exited
	})
	for _, h := range f.lab.Hosts {
		if !waitRemote(h, "pgrep -x sleep >/dev/null", 45*time.Second) {
			t.Fatalf("%s: the sleep never started", h.Name)
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGINT\nstderr:\n%s", errb.String())
	}
	err := waitErr
	t.Logf("exited %v after SIGINT in %s\nstdout:\n%s\nstderr:\n%s", err, time.Since(sent), out.String(), errb.String())
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() <= 0 {
		t.Errorf("exit %v, want a non-zero exit code", err)
	}
	r := decodeReport(t, out.String())
	if r.Summary.NotDone != len(f.lab.Hosts) {
		t.Errorf("summary says %d hosts not done, want %d", r.Summary.NotDone, len(f.lab.Hosts))
	}
	for _, h := range r.Hosts {
		if !h.NotDone {
			t.Errorf("%s: not marked not done: %+v", h.Name, h)
		}
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("stderr does not say the run was interrupted")
	}
	for _, h := range f.lab.Hosts {
		if _, err := h.Exec(context.Background(), "test ! -e /root/after", nil); err != nil {
			t.Errorf("%s: a task ran after the interrupt", h.Name)
		}
	}
	// Nothing of the run is left on this machine.
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && exe == bin {
			t.Errorf("a breakglass process is still running: %s", p)
		}
	}
}
