package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sshTo runs cmd on h as admin with the OpenSSH client, strictly checking
// the host key against the lab's known_hosts.
func sshTo(t *testing.T, l *Lab, h *Host, cmd string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		Skip(t, "no ssh client (apt-get install openssh-client): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", "-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+l.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=10",
		"-i", l.AdminKey,
		"-p", strconv.Itoa(h.Port),
		AdminUser+"@"+h.Addr, cmd).CombinedOutput()
	return string(out), err
}

func execOK(t *testing.T, h *Host, script string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), script, nil)
	if err != nil {
		t.Fatalf("%s: %s: %v", h.Name, script, err)
	}
	return string(out)
}

func TestLab(t *testing.T) {
	l := New(t, 3)

	t.Run("ssh as admin with sudo", func(t *testing.T) {
		names := map[string]bool{}
		for _, h := range l.Hosts {
			out, err := sshTo(t, l, h, "id -un; sudo -n id -u; hostname; cat /etc/hostname")
			if err != nil {
				t.Fatalf("ssh %s: %v\n%s", h.Name, err, out)
			}
			want := fmt.Sprintf("admin\n0\n%s\n%s\n", h.Name, h.Name)
			if out != want {
				t.Errorf("ssh %s: got %q, want %q", h.Name, out, want)
			}
			names[h.Name] = true
		}
		if len(names) != len(l.Hosts) {
			t.Errorf("host names not distinct: %v", names)
		}
	})

	t.Run("private home, tmp and srv", func(t *testing.T) {
		a, b := l.Hosts[0], l.Hosts[1]
		if out, err := sshTo(t, l, a, "echo secret > ~/marker && touch /tmp/bg-lab-marker && sudo -n touch /srv/bg-lab-marker && cat ~/marker"); err != nil || out != "secret\n" {
			t.Fatalf("write marker on %s: %v\n%s", a.Name, err, out)
		}
		if out, err := sshTo(t, l, b, "ls -a ~ /tmp /srv"); err != nil || strings.Contains(out, "marker") {
			t.Errorf("%s sees %s's files (err %v):\n%s", b.Name, a.Name, err, out)
		}
		for _, p := range []string{"/home/admin/marker", "/tmp/bg-lab-marker", "/srv/bg-lab-marker"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the machine sees %s's %s: stat err %v", a.Name, p, err)
			}
		}
	})

	t.Run("provisioned like a cloud server", func(t *testing.T) {
		h := l.Hosts[0]
		out := execOK(t, h, `stat -c '%n %a %U' /home/admin /home/admin/.ssh /home/admin/.ssh/authorized_keys /etc/sudoers.d/admin /tmp /etc/ssh/ssh_host_ed25519_key
getent passwd admin | cut -d: -f6,7
getent shadow admin | cut -d: -f2
ls /etc/ssh | grep -c '^ssh_host_.*_key$'
grep -c '^Include /etc/ssh/sshd_config.d/\*.conf' /etc/ssh/sshd_config`)
		want := `/home/admin 700 admin
/home/admin/.ssh 700 admin
/home/admin/.ssh/authorized_keys 600 admin
/etc/sudoers.d/admin 440 root
/tmp 1777 root
/etc/ssh/ssh_host_ed25519_key 600 root
/home/admin:/bin/bash
*
1
1
`
		if out != want {
			t.Errorf("host state:\n%s\nwant\n%s", out, want)
		}
		// sudo resolves the host name: no "unable to resolve host".
		if out, err := sshTo(t, l, h, "sudo -n true"); err != nil || out != "" {
			t.Errorf("sudo -n true: err %v, output %q", err, out)
		}
	})

	t.Run("client files", func(t *testing.T) {
		if fi, err := os.Stat(l.AdminKey); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("admin key %s: mode %v, err %v; want 0600", l.AdminKey, fi.Mode(), err)
		}
		key, _ := os.ReadFile(l.AdminKey)
		if !strings.HasPrefix(string(key), "-----BEGIN OPENSSH PRIVATE KEY-----") {
			t.Errorf("admin key is not in OpenSSH format")
		}
		inv, _ := os.ReadFile(l.Inventory)
		kh, _ := os.ReadFile(l.KnownHosts)
		want := "[lab]\n"
		for i, h := range l.Hosts {
			want += fmt.Sprintf("%s ansible_host=%s ansible_user=admin ansible_ssh_private_key_file=%s\n", h.Name, h.Addr, l.AdminKey)
			line := strings.Split(string(kh), "\n")[i]
			if !strings.HasPrefix(line, h.Addr+" ssh-ed25519 ") {
				t.Errorf("known_hosts line %d = %q, want %s's address and ed25519 key", i+1, line, h.Name)
			}
		}
		if string(inv) != want {
			t.Errorf("inventory:\n%s\nwant\n%s", inv, want)
		}
	})

	t.Run("auth.log", func(t *testing.T) {
		for _, h := range l.Hosts {
			if out := execOK(t, h, "cat /var/log/auth.log"); !strings.Contains(out, "Accepted publickey for admin") {
				t.Errorf("%s: /var/log/auth.log has no accepted login:\n%s", h.Name, out)
			}
		}
	})

	t.Run("reload with kill -HUP", func(t *testing.T) {
		h := l.Hosts[2]
		before := execOK(t, h, "cat /run/sshd.pid")
		// VersionAddendum shows in the banner, so the reload is visible
		// without logging in.
		if _, err := h.Exec(context.Background(), "cat > /etc/ssh/sshd_config.d/50-reload.conf && kill -HUP $(cat /run/sshd.pid)", []byte("VersionAddendum reloaded-by-test\n")); err != nil {
			t.Fatal(err)
		}
		waitBannerHas(t, h, "reloaded-by-test")
		if after := execOK(t, h, "cat /run/sshd.pid"); after != before {
			t.Errorf("sshd pid changed on reload: %s -> %s", before, after)
		}
		if _, err := os.Stat("/etc/ssh/sshd_config.d/50-reload.conf"); err == nil {
			t.Errorf("the host's drop-in is on the machine")
		}
		for _, other := range l.Hosts[:2] {
			if b, err := readBanner(context.Background(), other.addrPort()); err != nil || strings.Contains(b, "reloaded") {
				t.Errorf("%s: banner %q (err %v): the drop-in leaked", other.Name, b, err)
			}
		}
		if out, err := sshTo(t, l, h, "true"); err != nil {
			t.Errorf("ssh after reload: %v\n%s", err, out)
		}
	})

	t.Run("KillSSHD and StartSSHD", func(t *testing.T) {
		h := l.Hosts[1]
		if err := h.KillSSHD(); err != nil {
			t.Fatal(err)
		}
		if _, err := readBanner(context.Background(), h.addrPort()); err == nil {
			t.Fatalf("sshd still answers after KillSSHD")
		}
		if out, err := sshTo(t, l, h, "true"); err == nil {
			t.Fatalf("ssh works after KillSSHD:\n%s", out)
		}
		// No zombie: pid 1 reaps the old listener.
		if out := execOK(t, h, "ps -eo stat= | grep -c '^Z' || :"); out != "0\n" {
			t.Errorf("zombies after KillSSHD: %s", out)
		}
		if err := h.StartSSHD(); err != nil {
			t.Fatal(err)
		}
		if out, err := sshTo(t, l, h, "hostname"); err != nil || out != h.Name+"\n" {
			t.Errorf("ssh after StartSSHD: %v\n%s", err, out)
		}
	})

	t.Run("service ssh restart", func(t *testing.T) {
		// The way a playbook restarts sshd on a sysvinit server; the new
		// sshd must log where the first one did.
		h := l.Hosts[0]
		before := execOK(t, h, "cat /run/sshd.pid")
		if out, err := h.Exec(context.Background(), "service ssh restart", nil); err != nil {
			t.Fatalf("service ssh restart: %v\n%s", err, out)
		}
		waitBannerHas(t, h, "SSH-2.0-")
		if after := execOK(t, h, "cat /run/sshd.pid"); after == before {
			t.Errorf("sshd pid %s unchanged: not restarted", strings.TrimSpace(after))
		}
		execOK(t, h, "truncate -s 0 /var/log/auth.log")
		if out, err := sshTo(t, l, h, "true"); err != nil {
			t.Fatalf("ssh after restart: %v\n%s", err, out)
		}
		if out := execOK(t, h, "cat /var/log/auth.log"); !strings.Contains(out, "Accepted publickey for admin") {
			t.Errorf("restarted sshd does not log to /var/log/auth.log:\n%s", out)
		}
	})

	t.Run("Runner", func(t *testing.T) {
		r := l.Hosts[0].Runner()
		out, err := r.Run(context.Background(), "tr a-z A-Z", []byte("stdin goes in\n"))
		if err != nil || string(out) != "STDIN GOES IN\n" {
			t.Errorf("Run(tr) = %q, %v", out, err)
		}
		out, err = r.Run(context.Background(), "echo partial; echo broken >&2; exit 3", nil)
		var ee *ExecError
		if !errors.As(err, &ee) || ee.Status != 3 || strings.TrimSpace(string(ee.Stderr)) != "broken" || string(out) != "partial\n" {
			t.Errorf("Run(exit 3) = %q, %v; want stdout, *ExecError with status 3 and stderr", out, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := r.Run(ctx, "sleep 30", nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run(sleep) with a deadline: err %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancelled Run took %v", d)
		}
		deadline := time.Now().Add(5 * time.Second)
		for execOK(t, l.Hosts[0], "pgrep -c -x sleep || :") != "0\n" {
			if time.Now().After(deadline) {
				t.Fatalf("cancelled command still runs")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func waitBannerHas(t *testing.T, h *Host, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := readBanner(context.Background(), h.addrPort())
		if err == nil && strings.Contains(b, s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: banner %q (err %v) never contained %q", h.Name, b, err, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nsPIDs lists the machine's pids of every process in pid's PID namespace.
func nsPIDs(t *testing.T, pid int) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatalf("read pid namespace of %d: %v", pid, err)
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); err == nil && l == ns {
			pids = append(pids, p)
		}
	}
	return pids
}

// hostTrace is what a host leaves on the machine while it runs.
type hostTrace struct {
	name string
	addr string
	pids []int // unshare and every process in the namespace
}

func traceOf(t *testing.T, l *Lab) []hostTrace {
	t.Helper()
	var tr []hostTrace
	for _, h := range l.Hosts {
		pids := append([]int{h.PID}, nsPIDs(t, h.initPID)...)
		if len(pids) < 3 { // unshare, init, sshd
			t.Fatalf("%s: only pids %v", h.Name, pids)
		}
		tr = append(tr, hostTrace{h.Name, h.addrPort(), pids})
	}
	return tr
}

// assertGone checks that no process of the hosts remains and nothing
// answers on their addresses, waiting up to wait.
func assertGone(t *testing.T, trace []hostTrace, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for _, h := range trace {
		for _, pid := range h.pids {
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if alive(pid) {
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("%s: process %d (%s) still runs", h.name, pid, strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
		if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: something still listens on %s", h.name, h.addr)
		}
	}
}

func TestStopLeavesNothing(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
	l, err := Start(context.Background(), Options{Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	// A command running at Stop time, entered with nsenter from outside.
	execDone := make(chan error, 1)
	go func() {
		_, err := l.Hosts[0].Exec(context.Background(), "sleep 60", nil)
		execDone <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for execOK(t, l.Hosts[0], "pgrep -c -x sleep || :") != "1\n" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	trace := traceOf(t, l)

	start := time.Now()
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped 2 hosts in %v", time.Since(start))
	assertGone(t, trace, 0) // Stop returns only when they are gone
	select {
	case err := <-execDone:
		if err == nil {
			t.Errorf("Exec of sleep 60 succeeded across Stop")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Exec running at Stop did not return")
	}
	if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab dir %s still there: %v", l.Dir, err)
	}
	if err := l.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := l.Hosts[0].Exec(context.Background(), "true", nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Exec after Stop: %v, want ErrStopped", err)
	}
}

// TestHostsDieWithProcess runs this test binary as a child that starts a
// lab with New and then either fails (t.Cleanup must stop the lab) or is
// SIGKILLed (Pdeathsig must), and checks nothing of the lab remains.
func TestHostsDieWithProcess(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
	for _, mode := range []string{"fail", "sigkill"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLabChild$", "-test.v")
			cmd.Env = append(os.Environ(), "BG_LAB_CHILD="+mode)
			stdin, err := cmd.StdinPipe() // the child fails once the parent has traced its lab
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			var dir string
			var trace []hostTrace
			var output strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				output.WriteString(line + "\n")
				f := strings.Fields(line)
				if len(f) == 5 && f[0] == "LAB" {
					dir = f[1]
					unshare, _ := strconv.Atoi(f[2])
					initPID, _ := strconv.Atoi(f[3])
					trace = []hostTrace{{"child's host", f[4], append([]int{unshare}, nsPIDs(t, initPID)...)}}
					if mode == "sigkill" {
						cmd.Process.Signal(syscall.SIGKILL)
					} else {
						stdin.Close()
					}
				}
			}
			err = cmd.Wait()
			if trace == nil {
				t.Fatalf("child started no lab: %v\n%s%s", err, output.String(), stderr.String())
			}
			switch mode {
			case "fail":
				if !strings.Contains(output.String(), "deliberate failure") || err == nil {
					t.Fatalf("child did not fail as planned: %v\n%s", err, output.String())
				}
				assertGone(t, trace, 0)
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed test's lab dir %s remains: %v", dir, err)
				}
			case "sigkill":
				assertGone(t, trace, 5*time.Second)
				// The dir stays behind; the next lab's sweep removes it.
				if _, err := os.Stat(dir); err != nil {
					t.Fatalf("killed child's lab dir: %v", err)
				}
				sweepStale(filepath.Dir(dir))
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("sweep left the killed child's lab dir %s: %v", dir, err)
				}
			}
		})
	}
}

func TestHelperLabChild(t *testing.T) {
	mode := os.Getenv("BG_LAB_CHILD")
	if mode == "" {
		t.Skip("helper for TestHostsDieWithProcess")
	}
	l := New(t, 1)
	h := l.Hosts[0]
	fmt.Printf("LAB %s %d %d %s\n", l.Dir, h.PID, h.initPID, h.addrPort())
	if mode == "fail" {
		io.Copy(io.Discard, os.Stdin) // until the parent has looked
		t.Fatalf("deliberate failure")
	}
	time.Sleep(time.Minute) // until SIGKILLed
}

func TestStartManyHosts(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("SKIP: lab needs root and openssh-server: %v", err)
	}
	const n = 20
	start := time.Now()
	l := New(t, n)
	t.Logf("started %d hosts in %v", n, time.Since(start))
	var addrs []string
	for _, h := range l.Hosts {
		addrs = append(addrs, h.Addr)
	}
	slices.Sort(addrs)
	if len(slices.Compact(addrs)) != n {
		t.Errorf("addresses not distinct: %v", addrs)
	}
	last := l.Hosts[n-1]
	if out, err := sshTo(t, l, last, "hostname"); err != nil || out != last.Name+"\n" {
		t.Errorf("ssh %s: %v\n%s", last.Name, err, out)
	}
	trace := traceOf(t, l)
	start = time.Now()
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped %d hosts in %v", n, time.Since(start))
	assertGone(t, trace, 0)
}

func TestCopyFallback(t *testing.T) {
	forceCopy = true
	defer func() { forceCopy = false }()
	l := New(t, 2)
	h := l.Hosts[1]
	if out := execOK(t, h, "awk '$2 == \"/etc\" {print $3}' /proc/mounts"); out == "overlay\n" || out == "" {
		t.Errorf("/etc is %q, want a bind mount of a copy", out)
	}
	if out, err := sshTo(t, l, h, "sudo -n cat /etc/hostname"); err != nil || out != h.Name+"\n" {
		t.Errorf("ssh %s: %v\n%s", h.Name, err, out)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), Options{Hosts: 0}); err == nil {
		t.Errorf("Start with 0 hosts: no error")
	}
	if _, err := Start(context.Background(), Options{Hosts: 1, Prefix: "Bad_Name"}); err == nil || !strings.Contains(err.Error(), "Bad_Name") {
		t.Errorf("Start with a bad prefix: %v", err)
	}
	if err := Check(); err != nil {
		return
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "precious"), nil, 0o600)
	if _, err := Start(context.Background(), Options{Hosts: 1, Dir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Start in a non-empty dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Errorf("Start removed a file of a dir it refused: %v", err)
	}
	// A cancelled start stops what it started and leaves no dir.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	labDir := filepath.Join(t.TempDir(), "lab")
	if _, err := Start(ctx, Options{Hosts: 3, Dir: labDir}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(labDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled Start left %s: %v", labDir, err)
	}
}
