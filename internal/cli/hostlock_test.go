package cli

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/report"
)

// hostOut runs script on h and returns its output.
func hostOut(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, script, nil)
	if err != nil {
		t.Fatalf("%s: %s: %v %s", h.Name, script, err, out)
	}
	return string(out)
}

type cliResult struct {
	code     int
	out, err string
}

// both runs two applies at once and returns their results.
func both(t *testing.T, f *fleet, a, b []string) [2]cliResult {
	t.Helper()
	var res [2]cliResult
	var wg sync.WaitGroup
	for i, args := range [][]string{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, stderr := runCLI(t, args...)
			res[i] = cliResult{code, out, stderr}
		}()
	}
	wg.Wait()
	return res
}

// TestConcurrentAppliesOnLab runs two applies against one host at once,
// a few rounds, and checks the host's real state: an apply that exits 0
// has its edit on the host, and one that lost the race for the host says
// which run holds it. Without the host lock both planned from the same
// state (gathered before a slow task) and the later write dropped the
// other's key, both exiting 0.
func TestConcurrentAppliesOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	_, pubA := sshKeygen(t, t.TempDir(), "key-a")
	_, pubB := sshKeygen(t, t.TempDir(), "key-b")
	// The user exists, so both runs gather its keys at the start of the
	// play, then take a moment (any slow task) before writing them.
	hostOut(t, h, "useradd -m -s /bin/bash bg-ops1")
	keyPlay := func(name, pub string) string {
		return write(t, f.dir, name, `- hosts: all
  become: true
  tasks:
    - command: {cmd: "sleep 2"}
    - authorized_key: {user: bg-ops1, key: "`+pub+`"}
`)
	}
	sudoPlay := func(name, user string) string {
		return write(t, f.dir, name, `- hosts: all
  become: true
  tasks:
    - user: {name: `+user+`, shell: /bin/bash}
    - command: {cmd: "sleep 2"}
    - sudoers: {name: breakglass, users: [`+user+`], nopasswd: true}
`)
	}
	pbs := [2]string{keyPlay("a.yml", pubA), keyPlay("b.yml", pubB)}
	sudo := [2]string{sudoPlay("sa.yml", "bg-a"), sudoPlay("sb.yml", "bg-b")}
	pubs := [2]string{pubA, pubB}
	rule := [2]string{"bg-a ALL=(ALL) NOPASSWD: ALL", "bg-b ALL=(ALL) NOPASSWD: ALL"}

	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprintf("keys round %d", round), func(t *testing.T) {
			hostOut(t, h, "install -d -m 0700 -o bg-ops1 -g bg-ops1 /home/bg-ops1/.ssh && rm -f /home/bg-ops1/.ssh/authorized_keys* && install -m 0600 -o bg-ops1 -g bg-ops1 /dev/null /home/bg-ops1/.ssh/authorized_keys")
			res := both(t, f, f.args("apply", pbs[0], "--format", "json"), f.args("apply", pbs[1], "--format", "json"))
			keys := hostOut(t, h, "cat /home/bg-ops1/.ssh/authorized_keys 2>/dev/null || true")
			for i, r := range res {
				present := strings.Contains(keys, pubs[i])
				switch {
				case r.code == 0 && !present:
					t.Errorf("run %d exited 0 but its key is not on the host (lost edit):\n%s", i, keys)
				case r.code != 0 && !lockLost(r):
					t.Errorf("run %d: exit %d, and not for the host lock: %s", i, r.code, r.out)
				case r.code != 0 && present:
					t.Errorf("run %d failed on the lock, yet its key is on the host", i)
				}
			}
			if res[0].code != 0 && res[1].code != 0 {
				t.Error("both runs failed: one must get the host")
			}
		})
	}
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprintf("sudoers round %d", round), func(t *testing.T) {
			hostOut(t, h, "rm -f /etc/sudoers.d/breakglass /etc/sudoers.d/.breakglass.breakglass.bak")
			res := both(t, f, f.args("apply", sudo[0], "--format", "json"), f.args("apply", sudo[1], "--format", "json"))
			file := hostOut(t, h, "cat /etc/sudoers.d/breakglass 2>/dev/null || echo MISSING; visudo -c >/dev/null 2>&1 || echo INVALID; ls -a /etc/sudoers.d | grep breakglass- || true")
			if strings.Contains(file, "INVALID") || strings.Contains(file, "breakglass-") {
				t.Errorf("sudoers tree after the runs:\n%s", file)
			}
			// Each run that exited 0 created or updated the drop-in; the
			// runs' own reports must tell one story: the one that wrote
			// last must have seen the other's file (update, not create),
			// and its rule is the one on the host.
			var creates, ok int
			for i, r := range res {
				if r.code != 0 {
					if !lockLost(r) {
						t.Errorf("run %d: exit %d, and not for the host lock: %s", i, r.code, r.out)
					}
					if strings.Contains(file, rule[i]) {
						t.Errorf("run %d failed on the lock, yet its rule is on the host", i)
					}
					continue
				}
				ok++
				if strings.Contains(r.out, "create /etc/sudoers.d/breakglass") {
					creates++
				}
			}
			if ok == 0 {
				t.Fatal("both runs failed: one must get the host")
			}
			if creates != 1 {
				t.Errorf("%d successful runs say they created the drop-in, want exactly 1 (the other edit was lost):\n%s", creates, file)
			}
			if strings.Contains(file, "MISSING") {
				t.Errorf("no drop-in after %d successful run(s)", ok)
			}
		})
	}
}

// lockLost: the run failed its host because another run held it, and
// says so.
func lockLost(r cliResult) bool {
	return r.code == report.ExitFailed && strings.Contains(r.out, "another breakglass run holds this host")
}

// TestKilledRunReleasesLockOnLab: a run holds the host for a slow task;
// a second run fails on that host naming the first (its pid); the first
// is killed with SIGKILL, and the next run gets the host.
func TestKilledRunReleasesLockOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	bin := buildBinary(t)
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	_, pubA := sshKeygen(t, t.TempDir(), "key-a")
	_, pubB := sshKeygen(t, t.TempDir(), "key-b")
	hostOut(t, h, "useradd -m -s /bin/bash bg-ops1")
	slow := write(t, f.dir, "slow.yml", `- hosts: all
  become: true
  tasks:
    - command: {cmd: "sleep 60"}
    - authorized_key: {user: bg-ops1, key: "`+pubA+`"}
`)
	quick := write(t, f.dir, "quick.yml", `- hosts: all
  become: true
  tasks:
    - authorized_key: {user: bg-ops1, key: "`+pubB+`"}
`)
	cmd := exec.Command(bin, f.args("apply", slow)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	if !waitRemote(h, "pgrep -x sleep >/dev/null", 45*time.Second) {
		t.Fatal("the slow run never started its task")
	}

	code, out, _ := runCLI(t, f.args("apply", quick, "--format", "json")...)
	r := cliResult{code, out, ""}
	if !lockLost(r) {
		t.Fatalf("second run: exit %d, want 2 with the host lock's message", code)
	}
	if want := fmt.Sprintf("pid %d", cmd.Process.Pid); !strings.Contains(out, want) || !strings.Contains(out, "slow.yml") {
		t.Errorf("the message does not name the holding run (%s, slow.yml): %s", want, out)
	}
	if keys := hostOut(t, h, "cat /home/bg-ops1/.ssh/authorized_keys 2>/dev/null || true"); strings.Contains(keys, pubB) {
		t.Error("the run that did not get the host changed it")
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	start := time.Now()
	code, out, _ = runCLI(t, f.args("apply", quick, "--format", "json")...)
	if code != 0 {
		t.Fatalf("after the holder was killed: exit %d, want 0: %s", code, out)
	}
	t.Logf("got the host %s after the holder was killed", time.Since(start))
	keys := hostOut(t, h, "cat /home/bg-ops1/.ssh/authorized_keys")
	if !strings.Contains(keys, pubB) || strings.Contains(keys, pubA) {
		t.Errorf("keys after the second run:\n%s", keys)
	}
}
