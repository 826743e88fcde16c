package tasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// The sshd transaction on systemd hosts: the revert is armed as a
// transient systemd unit (systemd-run) and sshd is reloaded through
// systemctl, the paths a real server takes.

// newSystemdSSHDLab is newSSHDLab on a host of kind k.
func newSystemdSSHDLab(t *testing.T, k lab.Kind) *sshdLab {
	t.Helper()
	return newSSHDLabOf(t, lab.NewKind(t, k, 1))
}

// revertUnits lists the host's breakglass revert units and timers, loaded
// or not, as systemd lists them.
func (x *sshdLab) revertUnits(t *testing.T) string {
	t.Helper()
	return x.sh(t, "systemctl list-units --all --no-legend --plain 'breakglass-revert-*'; systemctl list-timers --all --no-legend --plain 'breakglass-revert-*'", nil)
}

// revertJournal is what the journal says about breakglass revert units:
// proof the revert ran as a unit, not as a detached process.
func (x *sshdLab) revertJournal(t *testing.T) string {
	t.Helper()
	return x.sh(t, "journalctl --no-pager -o cat -u 'breakglass-revert-*'", nil)
}

func TestSSHDOnSystemdHostRollsBackLockout(t *testing.T) {
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			x := newSystemdSSHDLab(t, k)
			x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
			before := x.sh(t, "cat /etc/ssh/sshd_config; ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*", nil)
			mainPID := x.sh(t, "systemctl show -p MainPID --value ssh.service", nil)

			res, err := runSSHD(t, x, `{settings: {AllowUsers: nobody}}`)
			var rb *engine.RollbackError
			if err == nil || res == nil || !res.RolledBack || !errors.As(err, &rb) || rb.Pending || rb.Failed || !errors.Is(err, engine.ErrAccessNotProven) {
				t.Fatalf("res %+v err %v: want a completed rollback for lost access", res, err)
			}
			t.Logf("error: %v", err)
			if after := x.sh(t, "cat /etc/ssh/sshd_config; ls -A /etc/ssh/sshd_config.d; cat /etc/ssh/sshd_config.d/*", nil); after != before {
				t.Errorf("config not restored:\n%s\nwas:\n%s", after, before)
			}
			if got := x.sh(t, "sshd -T | grep -ci '^allowusers' || :", nil); strings.TrimSpace(got) != "0" {
				t.Errorf("AllowUsers still effective: %q", got)
			}
			x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
			// Reloaded, not restarted, by systemd: the same main process,
			// and the unit is healthy.
			if got := x.sh(t, "systemctl show -p MainPID --value ssh.service; systemctl is-active ssh.service", nil); got != mainPID+"active\n" {
				t.Errorf("ssh.service after the rollback: %q, main pid was %q", got, mainPID)
			}
			if got := x.sh(t, "cat /run/breakglass/txn/*/result", nil); !strings.Contains(got, "restored ok") || !strings.Contains(got, "after ok") {
				t.Errorf("transaction result: %q", got)
			}
			if j := x.revertJournal(t); !strings.Contains(j, "breakglass revert") {
				t.Errorf("the revert did not run as a systemd unit; journal:\n%s", j)
			}
			if u := x.revertUnits(t); strings.TrimSpace(u) != "" {
				t.Errorf("revert units left after the rollback:\n%s", u)
			}
			x.noLeftovers(t)
		})
	}
}

func TestSSHDOnSystemdHostCommitLeavesNoUnit(t *testing.T) {
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			sshdCommitLeavesNoUnit(t, k)
		})
	}
}

func sshdCommitLeavesNoUnit(t *testing.T, k lab.Kind) {
	x := newSystemdSSHDLab(t, k)
	start := time.Now()
	res, err := runSSHD(t, x, `{settings: {LogLevel: VERBOSE}, revert_after: 10}`)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.RolledBack {
		t.Fatalf("result %+v", res)
	}
	if u := x.revertUnits(t); strings.TrimSpace(u) != "" {
		t.Errorf("revert units left after the commit:\n%s", u)
	}
	if j := x.revertJournal(t); !strings.Contains(j, "breakglass revert") {
		t.Errorf("the revert was not armed as a systemd unit; journal:\n%s", j)
	}
	// Past the deadline the committed change stays and nothing fires.
	time.Sleep(time.Until(start.Add(12 * time.Second)))
	if got := x.sh(t, "sshd -T | grep -i '^loglevel'", nil); strings.TrimSpace(got) != "loglevel VERBOSE" {
		t.Errorf("committed change reverted: sshd -T says %q", got)
	}
	if u := x.revertUnits(t); strings.TrimSpace(u) != "" {
		t.Errorf("revert units after the deadline:\n%s", u)
	}
	x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
	x.noLeftovers(t)
}

// slowDialer delays every fresh login, as a slow network would: it holds
// the run between the reload and its verdict long enough to kill it there.
type slowDialer struct {
	inner LoginDialer
	delay time.Duration
}

func (d slowDialer) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	select {
	case <-time.After(d.delay):
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return d.inner.Login(ctx, user, keyFile, p)
}

// TestSSHDOnSystemdHostSurvivesKilledRun runs the sshd module with a
// locking change in a child process that reaches the host only over ssh,
// as breakglass does, and SIGKILLs it once the change is live (the revert
// is armed before that). The host must restore itself, through its
// systemd revert unit, within the deadline.
func TestSSHDOnSystemdHostSurvivesKilledRun(t *testing.T) {
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			sshdSurvivesKilledRun(t, k)
		})
	}
}

func sshdSurvivesKilledRun(t *testing.T, k lab.Kind) {
	x := newSystemdSSHDLab(t, k)
	const revertAfter = 10 * time.Second
	const dropin = SSHDDropInDir + "/00-breakglass.conf"

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSSHDSystemdRun$", "-test.v")
	cmd.Env = append(os.Environ(), "BG_SSHD_CHILD=1",
		"BG_SSHD_ADDR="+x.h.Addr, "BG_SSHD_KNOWN_HOSTS="+x.l.KnownHosts,
		"BG_SSHD_KEY_ADMIN="+x.keys["admin"], "BG_SSHD_KEY_OPS1="+x.keys["bg-ops1"], "BG_SSHD_KEY_OPS2="+x.keys["bg-ops2"],
		"BG_SSHD_REVERT_AFTER="+strconv.Itoa(int(revertAfter/time.Second)))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()

	// The change is live once the drop-in says so and sshd was reloaded.
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(x.sh(t, "cat "+dropin+" 2>/dev/null || :", nil), "AllowUsers nobody") {
		select {
		case <-waited:
			t.Fatalf("the run ended before the change was live:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change never went live:\n%s", out.String())
		}
	}
	unit := strings.TrimSpace(x.sh(t, "systemctl list-units --no-legend --plain 'breakglass-revert-*' | awk '{print $1}'", nil))
	time.Sleep(1500 * time.Millisecond) // the reload settles (bg_sshd_reload waits 1s)
	cmd.Process.Signal(syscall.SIGKILL)
	<-waited
	killed := time.Now()
	t.Logf("run killed; revert unit %q", unit)

	if !strings.HasPrefix(unit, "breakglass-revert-") || !strings.HasSuffix(unit, ".service") {
		t.Fatalf("no revert unit while the change was live: %q\n%s", unit, out.String())
	}
	if strings.Contains(out.String(), "rolled back") {
		t.Fatalf("the run finished its rollback before it was killed: the test proves nothing\n%s", out.String())
	}
	if err := x.login("admin", 0); err == nil {
		t.Fatal("admin can log in right after the kill: the change did not take effect, the test proves nothing")
	}
	if got := x.sh(t, "systemctl is-active "+unit+" || :", nil); got != "active\n" {
		t.Errorf("revert unit %s after the kill: %q", unit, got)
	}
	sshdWaitLogin(t, x, "admin", revertAfter+15*time.Second)
	t.Logf("admin back %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	x.mustLogin(t, 0, "bg-ops1", "bg-ops2")
	// The result is written once the restore, reload included, is over:
	// logins may work a moment before.
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if x.sh(t, "cat /run/breakglass/txn/*/result 2>/dev/null || :", nil) != "" {
			break
		}
	}
	if got := x.sh(t, "ls "+SSHDDropInDir+"; cat /run/breakglass/txn/*/result; readlink /run/breakglass/txn/*/claim", nil); !strings.HasPrefix(got, "lab.conf\n") || !strings.Contains(got, "restored ok") || !strings.Contains(got, "fired") {
		t.Errorf("host after the deadline:\n%s", got)
	}
	if j := x.revertJournal(t); !strings.Contains(j, "deadline passed: restoring") && !strings.Contains(j, "breakglass revert") {
		t.Errorf("journal of the revert unit:\n%s", j)
	}
	// The unit is gone once it has done its work (--collect).
	gone := time.Now().Add(10 * time.Second)
	for strings.TrimSpace(x.revertUnits(t)) != "" && time.Now().Before(gone) {
		time.Sleep(200 * time.Millisecond)
	}
	if u := x.revertUnits(t); strings.TrimSpace(u) != "" {
		t.Errorf("revert units left after the revert fired:\n%s", u)
	}
	x.noLeftovers(t)
}

// TestHelperSSHDSystemdRun is the run TestSSHDOnSystemdHostSurvivesKilledRun
// kills: the sshd module with AllowUsers nobody over ssh as admin with sudo,
// its fresh logins delayed.
func TestHelperSSHDSystemdRun(t *testing.T) {
	if os.Getenv("BG_SSHD_CHILD") != "1" {
		t.Skip("helper for TestSSHDOnSystemdHostSurvivesKilledRun")
	}
	h := &lab.Host{Name: "child", Addr: os.Getenv("BG_SSHD_ADDR"), Port: 22}
	x := &sshdLab{l: &lab.Lab{KnownHosts: os.Getenv("BG_SSHD_KNOWN_HOSTS")}, h: h, keys: map[string]string{
		"admin":   os.Getenv("BG_SSHD_KEY_ADMIN"),
		"bg-ops1": os.Getenv("BG_SSHD_KEY_OPS1"),
		"bg-ops2": os.Getenv("BG_SSHD_KEY_OPS2"),
	}}
	control := &sshdSSHRunner{x: x, user: "admin", sudo: true}
	env := x.env()
	env.Dial = slowDialer{inner: x.dialer(), delay: 30 * time.Second}
	res, err := runModule(context.Background(), control, env, mustSSHD(t, fmt.Sprintf(`{settings: {AllowUsers: nobody}, revert_after: %s}`, os.Getenv("BG_SSHD_REVERT_AFTER"))))
	t.Fatalf("not killed: res %+v err %v", res, err)
}

// waitLoginPort waits until user logs in on port, for at most limit.
func waitLoginPort(t *testing.T, x *sshdLab, user string, port int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := x.login(user, port)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot log in on port %d after %v: %v\n%s", user, port, limit, err,
				x.sh(t, "{ systemctl status --no-pager breakglass-sshd.service; ls -ld /run/sshd; } 2>&1 || :", nil))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestSecondarySSHDOnSystemdHost: on a systemd host the emergency sshd is
// an enabled unit, and it keeps answering whatever happens to ssh.service,
// to systemd's configuration, to its own process and to the host.
func TestSecondarySSHDOnSystemdHost(t *testing.T) {
	for _, k := range lab.SystemdKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			x := newSystemdSSHDLab(t, k)
			const unit = defaultSecondaryName + "-sshd.service"
			task := fmt.Sprintf(`{port: 2222, allow_users: [bg-ops1, bg-ops2], listen: %s}`, x.h.Addr)
			res := runSecondary(t, x, task)
			if !res.Changed {
				t.Fatalf("first run changed nothing: %s", changesOf(res))
			}
			t.Logf("first run: %s", changesOf(res))
			if got := x.sh(t, "systemctl is-enabled "+unit+"; systemctl is-active "+unit+"; test -f "+secondaryPrivsepDropIn+" && echo drop-in", nil); got != "enabled\nactive\ndrop-in\n" {
				t.Errorf("%s: %q", unit, got)
			}
			x.mustLogin(t, 2222, "bg-ops1", "bg-ops2")
			if err := x.login("admin", 2222); err == nil {
				t.Error("admin logs in on the emergency port, which allows only the break-glass users")
			}
			if res := runSecondary(t, x, task); res.Changed {
				t.Errorf("second run changed: %s", changesOf(res))
			}
			// Healthy: audit reports nothing but that root needs sudo here
			// (no root_login).
			if fd := auditSecondary(t, x, task); len(fd) != 1 || fd[FindingSecondSudo] == "" {
				t.Errorf("audit of a healthy second path: %q", fd)
			}
			// Disabled, its unit edited: audit says it does not start at
			// boot, check mode with diff shows the unit's change, apply
			// puts both back.
			x.sh(t, "systemctl disable --quiet "+unit+" && echo '# edited by hand' >> /etc/systemd/system/"+unit, nil)
			if fd := auditSecondary(t, x, task); !strings.Contains(fd[FindingSecondNoBoot], "systemctl enable "+unit) {
				t.Errorf("audit with the unit disabled: %q", fd)
			}
			cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
			res, err := runModule(cctx, x.h.Runner(), &Env{Host: x.h.Name, Facts: &Facts{}, Check: true, Diff: true}, x.secondary(t, task))
			ccancel()
			if err != nil {
				t.Fatal(err)
			}
			var unitDiff *Change
			for i, c := range res.Changes {
				if c.Path == "/etc/systemd/system/"+unit {
					unitDiff = &res.Changes[i]
				}
			}
			if unitDiff == nil || !strings.Contains(unitDiff.Before, "# edited by hand") || strings.Contains(unitDiff.After, "# edited by hand") || !strings.Contains(unitDiff.After, "Restart=always") ||
				!strings.Contains(changesOf(res), "enable "+unit) {
				t.Errorf("check --diff: %s, unit change %+v", changesOf(res), unitDiff)
			}
			if got := x.sh(t, "systemctl is-enabled "+unit+" || :; grep -c 'edited by hand' /etc/systemd/system/"+unit+" || :", nil); got != "disabled\n1\n" {
				t.Errorf("check mode changed the host: %q", got)
			}
			if got := changesOf(runSecondary(t, x, task)); !strings.Contains(got, "update /etc/systemd/system/"+unit) || !strings.Contains(got, "enable "+unit) {
				t.Errorf("repair run: %s", got)
			}

			steps := []struct {
				name, script string
				mainUp       bool // whether the main sshd answers afterwards
			}{
				{"systemctl stop ssh", "systemctl stop ssh.service", false},
				{"systemctl restart ssh", "systemctl start ssh.service && systemctl restart ssh.service", true},
				{"systemctl daemon-reload", "systemctl daemon-reload", true},
				{"kill -KILL of its process", `pid=$(systemctl show -p MainPID --value ` + unit + `) && [ "$pid" -gt 0 ] && kill -KILL "$pid"`, true},
			}
			mainPID := func() string { return x.sh(t, "systemctl show -p MainPID --value "+unit, nil) }
			for _, s := range steps {
				before := mainPID()
				x.sh(t, s.script, nil)
				// Restart=always, RestartSec=5s: back within seconds.
				waitLoginPort(t, x, "bg-ops1", 2222, 20*time.Second)
				if err := x.login("admin", 0); (err == nil) != s.mainUp {
					t.Errorf("after %s: main sshd login for admin: %v, want up=%v", s.name, err, s.mainUp)
				}
				if after := mainPID(); strings.HasPrefix(s.name, "kill") && after == before {
					t.Errorf("after %s: main pid still %s: the kill did nothing", s.name, before)
				}
				if got := x.sh(t, "test -d /run/sshd && echo ok", nil); got != "ok\n" {
					t.Errorf("after %s: /run/sshd is gone", s.name)
				}
				t.Logf("after %s: the emergency sshd answers", s.name)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := x.h.Reboot(ctx); err != nil {
				t.Fatal(err)
			}
			waitLoginPort(t, x, "bg-ops1", 2222, 30*time.Second)
			x.mustLogin(t, 2222, "bg-ops2")
			x.mustLogin(t, 0, "admin")
			if res := runSecondary(t, x, task); res.Changed {
				t.Errorf("run after the reboot changed: %s", changesOf(res))
			}
		})
	}
}
