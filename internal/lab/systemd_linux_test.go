package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sshdVersions is the OpenSSH each systemd kind's root ships, as its
// banner says it.
var sshdVersions = map[Kind]string{
	Bookworm: "SSH-2.0-OpenSSH_9.2",
	Trixie:   "SSH-2.0-OpenSSH_10.",
}

// TestSystemdHosts boots two hosts of each systemd kind and checks what a
// real server has: systemd as PID 1, the expected sshd on the host's own
// address only, admin's key login (host key checked strictly) and sudo,
// its own identity, sshd logging to the journal, and a reboot that comes
// back with the host's files intact.
func TestSystemdHosts(t *testing.T) {
	for _, k := range SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			l := NewKind(t, k, 2)
			t.Logf("booted 2 %s hosts in %v (root build included if any)", k, time.Since(start).Round(time.Millisecond))

			ids := map[string]bool{}
			for _, h := range l.Hosts {
				banner, err := readBanner(context.Background(), h.addrPort())
				if err != nil || !strings.HasPrefix(banner, sshdVersions[k]) {
					t.Errorf("%s: banner %q (err %v), want %s…", h.Name, banner, err, sshdVersions[k])
				}
				// --wait: until boot is over. running, not degraded: no
				// unit of a lab host may fail.
				out, err := sshTo(t, l, h, "id -un; sudo -n true && echo sudo; hostname; "+
					"systemctl is-system-running --wait; sudo -n systemctl --failed --no-legend --plain; "+
					"sudo -n sshd -T | grep -i '^listenaddress'; systemctl show -p Listen ssh.socket; "+
					"cat /proc/1/comm; cat /etc/machine-id")
				if err != nil {
					t.Fatalf("ssh %s: %v\n%s", h.Name, err, out)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				want := []string{
					"admin", "sudo", h.Name, "running",
					"listenaddress " + h.Addr + ":22",
					"Listen=" + h.Addr + ":22 (Stream)",
					"systemd",
				}
				if len(lines) != len(want)+1 {
					t.Fatalf("%s: got\n%s\nwant %q and a machine-id", h.Name, out, want)
				}
				for i, w := range want {
					if lines[i] != w {
						t.Errorf("%s: line %d: got %q, want %q\n%s", h.Name, i+1, lines[i], w, out)
					}
				}
				ids[lines[len(lines)-1]] = true
				// Logging goes to the journal (no syslog in the root).
				logs := execOK(t, h, "journalctl --no-pager -u ssh.service")
				if !strings.Contains(logs, "Accepted publickey for admin") {
					t.Errorf("%s: journal of ssh.service has no login:\n%s", h.Name, logs)
				}
			}
			if len(ids) != len(l.Hosts) {
				t.Errorf("machine-ids not distinct: %v", ids)
			}

			t.Run("KillSSHD and StartSSHD", func(t *testing.T) {
				h := l.Hosts[1]
				if err := h.KillSSHD(); err != nil {
					t.Fatal(err)
				}
				if out, err := sshTo(t, l, h, "true"); err == nil {
					t.Fatalf("ssh works with sshd stopped: %s", out)
				}
				if err := h.StartSSHD(); err != nil {
					t.Fatal(err)
				}
				if out, err := sshTo(t, l, h, "systemctl is-active ssh.service"); err != nil || out != "active\n" {
					t.Fatalf("after StartSSHD: %v %s", err, out)
				}
			})

			t.Run("reboot", func(t *testing.T) {
				h := l.Hosts[0]
				execOK(t, h, "echo kept > /root/marker")
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				old, err := h.BootID()
				if err != nil {
					t.Fatal(err)
				}
				// As a user would: over ssh, as admin with sudo. The
				// session may end before ssh reports success.
				start := time.Now()
				out, err := sshTo(t, l, h, "sudo -n systemctl reboot")
				t.Logf("ssh: sudo systemctl reboot: %v %s", err, out)
				if err := h.WaitRebooted(ctx, old); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s rebooted in %v", h.Name, time.Since(start).Round(time.Millisecond))
				out, err = sshTo(t, l, h, "systemctl is-system-running --wait; sudo -n cat /root/marker")
				if err != nil || out != "running\nkept\n" {
					t.Fatalf("after reboot: %v\n%s", err, out)
				}
				// And through the API.
				if err := h.Reboot(ctx); err != nil {
					t.Fatal(err)
				}
				if out, err := sshTo(t, l, h, "sudo -n true && echo ok"); err != nil || out != "ok\n" {
					t.Fatalf("after second reboot: %v\n%s", err, out)
				}
			})

			// OpenSSH ≥ 9.8 penalises a source address after failed
			// logins (PerSourcePenalties): the lab must reproduce it on
			// Debian 13 and not on Debian 12, for the tests that need it.
			t.Run("PerSourcePenalties", func(t *testing.T) {
				h := l.Hosts[1]
				stranger, _, err := newKey("stranger")
				if err != nil {
					t.Fatal(err)
				}
				keyFile := filepath.Join(t.TempDir(), "stranger")
				if err := os.WriteFile(keyFile, stranger, 0o600); err != nil {
					t.Fatal(err)
				}
				other := &Lab{KnownHosts: l.KnownHosts, AdminKey: keyFile}
				// sshd records a penalty when the session process reports
				// back, a moment after the client sees the refusal.
				for range 6 {
					if out, err := sshTo(t, other, h, "true"); err == nil {
						t.Fatalf("a stranger's key logs in: %s", out)
					}
					time.Sleep(200 * time.Millisecond)
				}
				out, err := sshTo(t, l, h, "echo in")
				penalised := strings.Contains(execOK(t, h, "journalctl --no-pager -u ssh.service"), "penalty: failed authentication")
				switch k {
				case Trixie:
					if err == nil || !penalised {
						t.Errorf("admin after 6 refused logins from the same address: %v %q; penalty logged: %v, want refused and logged", err, out, penalised)
					}
				case Bookworm:
					if err != nil || penalised {
						t.Errorf("admin after 6 refused logins: %v %q; penalty logged: %v, want in and none", err, out, penalised)
					}
				}
			})
		})

	}
}

// systemdTrace is what a lab of systemd hosts leaves on the machine while
// it runs: its dir, its cgroups and every process in them.
type systemdTrace struct {
	dir     string
	cgroups []string
	pids    []int
	addrs   []string
}

func systemdTraceOf(t *testing.T, l *Lab) systemdTrace {
	t.Helper()
	tr := systemdTrace{dir: l.Dir, cgroups: l.labCgroups()}
	for _, h := range l.Hosts {
		tr.pids = append(tr.pids, h.PID)
		tr.addrs = append(tr.addrs, h.addrPort())
	}
	for _, cg := range tr.cgroups {
		tr.pids = append(tr.pids, cgroupPIDs(cg)...)
	}
	if len(tr.pids) < 4*len(l.Hosts) { // unshare, sh, nspawn, systemd, sshd…
		t.Fatalf("lab %s: only pids %v", l.Dir, tr.pids)
	}
	return tr
}

// mountsUnder lists the mounts of every process on the machine whose
// mount point or source is under dir.
func mountsUnder(dir string) []string {
	var found []string
	infos, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	for _, f := range infos {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if strings.Contains(sc.Text(), dir) {
				found = append(found, f+": "+sc.Text())
			}
		}
	}
	return found
}

// assertSystemdGone waits up to wait until nothing of the lab is left: no
// process, no mount, no cgroup, no dir, nothing answering.
func assertSystemdGone(t *testing.T, tr systemdTrace, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var left []string
		for _, pid := range tr.pids {
			if alive(pid) {
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				left = append(left, fmt.Sprintf("process %d (%s)", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
			}
		}
		left = append(left, mountsUnder(tr.dir)...)
		for _, p := range append([]string{tr.dir}, tr.cgroups...) {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				left = append(left, fmt.Sprintf("%s (%v)", p, err))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after %v:\n%s", wait, strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range tr.addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on %s", a)
		}
	}
}

func TestSystemdStopLeavesNothing(t *testing.T) {
	l := NewKind(t, Trixie, 2)
	tr := systemdTraceOf(t, l)
	start := time.Now()
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped 2 hosts in %v", time.Since(start))
	assertSystemdGone(t, tr, 0) // Stop returns only when they are gone
	if _, err := l.Hosts[0].Exec(context.Background(), "true", nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Exec after Stop: %v, want ErrStopped", err)
	}
}

// TestSystemdHostsDieWithProcess SIGKILLs a child test process that has
// started systemd hosts: the hosts die with it (Pdeathsig) and the lab's
// reaper removes the rest.
func TestSystemdHostsDieWithProcess(t *testing.T) {
	Require(t, Trixie)
	// Not a default lab dir: no other lab's sweep may remove it.
	dir, err := os.MkdirTemp("", "bg-systemd-reaper-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSystemdLabChild$", "-test.v")
	cmd.Env = append(os.Environ(), "BG_LAB_CHILD=systemd", "BG_LAB_CHILD_DIR="+dir)
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
	var tr systemdTrace
	var output strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		output.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "LAB" {
			tr.dir, tr.addrs = f[1], []string{f[2]}
			for _, cg := range f[3:] {
				if strings.HasPrefix(cg, "pid=") {
					p, _ := strconv.Atoi(strings.TrimPrefix(cg, "pid="))
					tr.pids = append(tr.pids, p)
				} else {
					tr.cgroups = append(tr.cgroups, cg)
				}
			}
			for _, cg := range tr.cgroups {
				tr.pids = append(tr.pids, cgroupPIDs(cg)...)
			}
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	cmd.Wait()
	if tr.dir == "" {
		t.Fatalf("child started no lab:\n%s%s", output.String(), stderr.String())
	}
	if len(tr.pids) < 4 {
		t.Fatalf("child's lab: only pids %v", tr.pids)
	}
	assertSystemdGone(t, tr, 20*time.Second)
}

func TestHelperSystemdLabChild(t *testing.T) {
	if os.Getenv("BG_LAB_CHILD") != "systemd" {
		t.Skip("helper for TestSystemdHostsDieWithProcess")
	}
	Require(t, Trixie)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	l, err := Start(ctx, Options{Hosts: 1, Kind: Trixie, Dir: os.Getenv("BG_LAB_CHILD_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	h := l.Hosts[0]
	fmt.Printf("LAB %s %s pid=%d %s\n", l.Dir, h.addrPort(), h.PID, strings.Join(l.labCgroups(), " "))
	time.Sleep(time.Minute) // until SIGKILLed
}

// A lab cgroup left empty (its lab's reaper killed too) is removed by a
// later lab once it is old enough; a young one, or one with processes,
// stays. The hierarchy is a plain dir: an empty cgroup is one without
// cgroup.procs entries, and both are removed with rmdir.
func TestSweepStaleCgroups(t *testing.T) {
	h := t.TempDir()
	stale := filepath.Join(h, "breakglass-lab", "breakglass-lab-1", "host01", "payload")
	busy := filepath.Join(h, "breakglass-lab", "breakglass-lab-2", "host01")
	for _, d := range []string{stale, busy} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(busy, "cgroup.procs"), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sweepStaleCgroups([]string{h}, time.Hour)
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("young cgroup swept: %v", err)
	}
	sweepStaleCgroups([]string{h}, 0)
	if _, err := os.Stat(filepath.Dir(filepath.Dir(stale))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cgroup remains: %v", err)
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("cgroup with a process swept: %v", err)
	}
}
