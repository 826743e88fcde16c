package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSSHDRollbackKilledOnLab runs the real binary on an sshd change that
// locks everyone out (its proof fails, so it is rolled back) and signals
// it as soon as the rollback runs on the host: SIGKILL, a dropped
// terminal's SIGHUP, Ctrl-C, SIGTERM. Each time the host must let admin in
// again with a fresh login, and have its drop-in directory as it was, by
// the revert's deadline; and what breakglass said, if anything, must hold.
func TestSSHDRollbackKilledOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	bin := buildBinary(t)
	const deadline = 6 * time.Second
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			// A rollback can end between two looks of the watcher; then
			// nothing was tested, and the scenario runs again on a fresh
			// host (at most three times).
			for attempt := 1; ; attempt++ {
				if killDuringRollback(t, bin, sig, deadline, attempt == 3) {
					return
				}
				t.Logf("attempt %d: the run ended before its rollback could be caught; again on a fresh host", attempt)
			}
		})
	}
}

// killDuringRollback is one attempt of TestSSHDRollbackKilledOnLab; it
// returns false when the run ended before its rollback could be caught
// and last is not set (then nothing was tested).
func killDuringRollback(t *testing.T, bin string, sig syscall.Signal, deadline time.Duration, last bool) bool {
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	pb := write(t, f.dir, "pb.yml", fmt.Sprintf("- hosts: labhosts\n  become: true\n  tasks:\n    - sshd: {settings: {AllowUsers: nobody}, revert_after: %d}\n", int(deadline/time.Second)))
	cmd := exec.Command(bin, f.args("apply", pb)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Watch from inside the host, so that the signal follows the
	// rollback's start by milliseconds.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	go func() {
		select {
		case <-exited:
		case <-ctx.Done():
		}
		cancel()
	}()
	// The rollback is held (SIGSTOP) as soon as it starts, so the
	// signal reaches a run that is still waiting for it: a
	// rollback is quick, and a run that ended first tests nothing.
	// (Its short-lived subshells match too: until every process
	// found is stopped, it looks again.)
	_, err := h.Exec(ctx, "until p=$(pgrep -f 'revert[.]sh (rollback|abort)') && kill -STOP $p 2>/dev/null; do :; done", nil)
	cancel()
	if err != nil {
		select {
		case <-exited:
			if !last {
				return false
			}
			// Nothing was tested: never a pass in CI.
			if os.Getenv("CI") == "true" {
				t.Fatalf("the run ended before its rollback could be caught (%v)\nstdout:\n%s", err, out.String())
			}
			t.Skipf("SKIP: the run ended before its rollback could be caught, nothing to test (%v)\nstdout:\n%s", err, out.String())
		default:
		}
		t.Fatalf("the rollback never ran: %v", err)
	}
	sigErr := cmd.Process.Signal(sig)
	if _, err := h.Exec(context.Background(), "pkill -CONT -f 'revert[.]sh (rollback|abort)' || true", nil); err != nil {
		t.Fatal(err)
	}
	if sigErr != nil {
		t.Fatalf("signal %v: %v (the run ended while its rollback was held)\nstdout:\n%s", sig, sigErr, out.String())
	}
	// The revert was armed before the rollback began.
	by := time.Now().Add(deadline)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after %v", sig)
	}
	// What breakglass promised, it must keep.
	if m := regexp.MustCompile(`restores it by itself by ([0-9:]{8})`).FindStringSubmatch(out.String()); m != nil {
		said, err := time.ParseInLocation("15:04:05", m[1], time.Local)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		said = time.Date(now.Year(), now.Month(), now.Day(), said.Hour(), said.Minute(), said.Second(), 0, time.Local)
		if said.Before(by) {
			by = said.Add(time.Second) // the clock says whole seconds
		}
	}
	ssh := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
			"-o", "UserKnownHostsFile="+f.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
			"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-p", fmt.Sprint(h.Port), "-i", f.lab.AdminKey, "admin@"+h.Addr, "id -un")
		o, err := c.CombinedOutput()
		if err == nil && strings.TrimSpace(string(o)) != "admin" {
			err = fmt.Errorf("logged in as %q", o)
		}
		return err
	}
	// The restore itself (sshd -t, reload) may end just after the deadline.
	for err := ssh(); err != nil; err = ssh() {
		if time.Now().After(by.Add(3 * time.Second)) {
			log, _ := h.Exec(context.Background(), "ls -la /etc/ssh/sshd_config.d /run/breakglass/txn/*; cat /run/breakglass/txn/*/revert.log", nil)
			t.Fatalf("admin still cannot log in, %v after the deadline: %v\nstderr:\n%s\nhost:\n%s", time.Since(by), err, errb.String(), log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, err := h.Exec(context.Background(), "ls /etc/ssh/sshd_config.d", nil); err != nil || string(got) != "lab.conf\n" {
		t.Errorf("drop-ins after the rollback: %q %v", got, err)
	}
	t.Logf("%v: stdout:\n%s\nstderr:\n%s", sig, out.String(), errb.String())
	return true
}
