package tasks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
)

// TestSSHDCommitCutOff: the change was proven, and the commit's answer is
// lost: the host may keep the proven change or restore the old one, and
// the error says exactly that, not that it was rolled back.
func TestSSHDCommitCutOff(t *testing.T) {
	r := sshdFakeHost(debianMain, "status reloaded\n")
	r.rules[4].err = errors.New("ssh: connection reset")
	res, err := runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{}), mustSSHD(t, `{settings: {LogLevel: VERBOSE}, revert_after: 5}`))
	var rb *engine.RollbackError
	if !errors.As(err, &rb) || !rb.CommitUnknown || rb.Pending || res.RolledBack {
		t.Fatalf("res %+v err %v: want not known whether committed", res, err)
	}
	if s := err.Error(); !strings.Contains(s, "proven, but not known whether committed") || !strings.Contains(s, "connection reset") || strings.Contains(s, "rolled back") {
		t.Errorf("error %q", s)
	}
}

// --- on real hosts ---

func txnWithHost(t *testing.T, x *sshdLab, r Runner, files []string, deadline time.Duration, after string) *engine.Txn {
	t.Helper()
	tx, err := engine.BeginTxn(context.Background(), r, engine.TxnSpec{What: "test", Files: files, Deadline: deadline, AfterRestore: after})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Arm(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tx
}

func TestTxnOnHostCommitAndRollback(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	r := x.h.Runner()
	x.sh(t, "printf 'old\\n' > /etc/a; chmod 0640 /etc/a; chown admin /etc/a; rm -f /etc/b /tmp/after", nil)
	files := []string{"/etc/a", "/etc/b"}
	change := "printf 'new\\n' > /etc/a; chmod 0600 /etc/a; chown root /etc/a; echo made > /etc/b"

	// Rollback: both files as they were (content, owner, mode; b gone),
	// the after-restore step ran, the revert stopped.
	tx := txnWithHost(t, x, r, files, time.Minute, "echo ran > /tmp/after")
	x.sh(t, change, nil)
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := x.sh(t, "cat /etc/a; stat -c '%U %a' /etc/a; ls /etc/b 2>&1; cat /tmp/after; cat /etc/.a.breakglass.bak", nil); got != "old\nadmin 640\nls: cannot access '/etc/b': No such file or directory\nran\nold\n" {
		t.Errorf("after rollback: %q", got)
	}
	x.noLeftovers(t)
	if err := tx.Commit(context.Background()); !errors.Is(err, engine.ErrTxnEnded) {
		t.Errorf("commit after rollback: %v", err)
	}

	// Commit: the change stays, also after the deadline.
	tx = txnWithHost(t, x, r, files, 5*time.Second, "")
	x.sh(t, change, nil)
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	x.noLeftovers(t)
	time.Sleep(6 * time.Second)
	if got := x.sh(t, "cat /etc/a /etc/b", nil); got != "new\nmade\n" {
		t.Errorf("a committed change was reverted: %q", got)
	}
	if got := x.sh(t, "stat -c '%a' /run/breakglass /run/breakglass/txn "+tx.Dir()+" "+tx.Script(), nil); got != "700\n700\n700\n700\n" {
		t.Errorf("modes of the transaction state: %q", got)
	}

	// Too late: the revert fired first, Commit says so.
	tx = txnWithHost(t, x, r, files, 5*time.Second, "")
	x.sh(t, "echo newer > /etc/a", nil)
	time.Sleep(7 * time.Second)
	if err := tx.Commit(context.Background()); !errors.Is(err, engine.ErrTxnFired) {
		t.Errorf("commit after the deadline: %v", err)
	}
	if got := x.sh(t, "cat /etc/a", nil); got != "new\n" {
		t.Errorf("fired revert restored %q", got)
	}
}

func TestTxnOnHostBusy(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	r := x.h.Runner()
	tx := txnWithHost(t, x, r, []string{"/etc/a"}, time.Minute, "")
	if _, err := engine.BeginTxn(context.Background(), r, engine.TxnSpec{What: "second", Files: []string{"/etc/b"}, Deadline: time.Minute}); !errors.Is(err, engine.ErrTxnBusy) {
		t.Errorf("second transaction: %v", err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	tx2 := txnWithHost(t, x, r, []string{"/etc/b"}, time.Minute, "")
	if err := tx2.Abort(context.Background()); err != nil {
		t.Fatal(err)
	}
	x.noLeftovers(t)
}

// txnHeldRunner runs each command over its own ssh session as admin with
// sudo, and keeps the session open afterwards (the client waits in a
// remote sleep), so the test can kill the client mid-session.
type txnHeldRunner struct {
	x     *sshdLab
	mu    sync.Mutex
	procs []*exec.Cmd
}

func (r *txnHeldRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	remote := "sudo -n /bin/sh -c " + shell.Quote(cmd) + "; echo \"@@held $?\"; exec sleep 600"
	c := exec.Command("ssh", append(r.x.sshArgs("admin", 0), remote)...)
	c.Stdin = strings.NewReader(string(stdin))
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.procs = append(r.procs, c)
	r.mu.Unlock()
	var b strings.Builder
	br := bufio.NewReader(out)
	for {
		line, err := br.ReadString('\n')
		if st, ok := strings.CutPrefix(line, "@@held "); ok {
			if strings.TrimSpace(st) != "0" {
				return []byte(b.String()), fmt.Errorf("remote status %s", strings.TrimSpace(st))
			}
			return []byte(b.String()), nil
		}
		b.WriteString(line)
		if err != nil {
			return []byte(b.String()), fmt.Errorf("session ended: %w", err)
		}
	}
}

// kill SIGKILLs every ssh client still holding a session.
func (r *txnHeldRunner) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.procs {
		c.Process.Kill()
		c.Wait()
	}
	r.procs = nil
}

// TestTxnOnHostSurvivesKilledClient arms a revert through a real ssh
// session, SIGKILLs the client while the session is still open, then makes
// a change that locks everyone out, as a tool that died right after the
// reload leaves a host. The revert must restore it by itself.
func TestTxnOnHostSurvivesKilledClient(t *testing.T) {
	t.Parallel()
	x := newSSHDLab(t)
	held := &txnHeldRunner{x: x}
	t.Cleanup(held.kill)
	const dropin = SSHDDropInDir + "/00-breakglass.conf"
	tx := txnWithHost(t, x, held, []string{dropin}, 5*time.Second, sshdAfterRestore(nil))
	armed := time.Now()

	// The revert runs in its own session, not the ssh session's.
	ps := x.sh(t, `pid=$(cat `+tx.Dir()+`/pid); ps -o sid=,pgid= -p "$pid"; echo "$pid"`, nil)
	f := strings.Fields(ps)
	if len(f) != 3 || f[0] != f[2] || f[1] != f[2] {
		t.Errorf("revert is not its own session leader and group: %q", ps)
	}
	held.kill()

	x.sh(t, "echo 'AllowUsers nobody' > "+dropin+" && sshd -t && kill -HUP $(cat /run/sshd.pid)", nil)
	time.Sleep(500 * time.Millisecond)
	if err := x.login("admin", 0); err == nil {
		t.Fatal("admin can still log in: the lockout did not take effect")
	}
	if alive := x.sh(t, `kill -0 "$(cat `+tx.Dir()+`/pid)" && echo alive`, nil); alive != "alive\n" {
		t.Fatal("the armed revert died with the ssh session")
	}
	sshdWaitLogin(t, x, "admin", 15*time.Second)
	if took := time.Since(armed); took < 5*time.Second {
		t.Errorf("restored after %v, before the deadline", took)
	}
	x.mustLogin(t, 0, "bg-ops1", "bg-ops2")
	if got := x.sh(t, "ls "+SSHDDropInDir+"; cat "+tx.Dir()+"/result", nil); got != "lab.conf\nrestored ok\nafter ok\n" {
		t.Errorf("after the revert: %q", got)
	}
	x.noLeftovers(t)
}

// --- the protocol, killed at any instant ---

// txnKillRunner passes commands to r, except that the one whose script
// contains marker is killed (its whole session) after delay, as when
// breakglass dies in the middle of it.
type txnKillRunner struct {
	r      Runner
	marker string
	delay  time.Duration
	killed atomic.Bool
}

func (k *txnKillRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	if !strings.Contains(cmd+"\n"+string(stdin), k.marker) {
		return k.r.Run(ctx, cmd, stdin)
	}
	kctx, cancel := context.WithTimeout(ctx, k.delay)
	defer cancel()
	out, err := k.r.Run(kctx, cmd, stdin)
	if kctx.Err() != nil {
		k.killed.Store(true)
		return out, fmt.Errorf("killed after %v: %w", k.delay, err)
	}
	return out, err
}

// TestSSHDOnHostKilledInRollbackOrCommit kills the control side (the
// command's whole session on the host, as when breakglass dies) at a range
// of instants inside the rollback of an sshd change that locks everyone
// out, and inside the commit of one that is proven. Each time, by the
// deadline, admin gets in again with a fresh login and the drop-in is the
// original (or, after a commit, the proven new one).
func TestSSHDOnHostKilledInRollbackOrCommit(t *testing.T) {
	t.Parallel()
	const (
		dropin   = SSHDDropInDir + "/" + SSHDDefaultDropIn
		original = "# before breakglass\nLogLevel INFO\n"
	)
	// Each host takes its rounds in turn; a rollback killed before it
	// asked for anything waits for the deadline.
	rounds := [][]time.Duration{
		{0, 40 * time.Millisecond, 150 * time.Millisecond},
		{10 * time.Millisecond, 80 * time.Millisecond, 300 * time.Millisecond},
		{20 * time.Millisecond, 120 * time.Millisecond, 500 * time.Millisecond},
	}
	for i, delays := range append(rounds, []time.Duration{15 * time.Millisecond, 50 * time.Millisecond}) {
		commit := i == len(rounds)
		name := fmt.Sprintf("rollback%d", i)
		if commit {
			name = "commit"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			x := newSSHDLab(t)
			task, marker := `{settings: {AllowUsers: nobody}, revert_after: 6}`, "revert.sh rollback"
			if commit {
				task, marker = `{settings: {LogLevel: VERBOSE}, revert_after: 8}`, "revert.sh commit"
			}
			for _, d := range delays {
				x.sh(t, "printf '%s' "+shell.Quote(original)+" >"+dropin+" && kill -HUP $(cat /run/sshd.pid)", nil)
				k := &txnKillRunner{r: x.h.Runner(), marker: marker, delay: d}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				res, err := runModule(ctx, k, x.env(), mustSSHD(t, task))
				cancel()
				var rb *engine.RollbackError
				switch {
				case commit && err == nil:
				case !errors.As(err, &rb):
					t.Fatalf("killed after %v: res %+v err %v: want a engine.RollbackError", d, res, err)
				case k.killed.Load() && !commit && !rb.Pending:
					t.Errorf("killed after %v: %v: want the armed revert pending", d, err)
				case k.killed.Load() && commit && !rb.CommitUnknown:
					t.Errorf("killed after %v: %v: want not known whether committed", d, err)
				}
				deadline := time.Now().Add(8 * time.Second)
				if rb != nil {
					deadline = rb.Deadline
				}
				// The restore itself (sshd -t, reload) may end just after
				// the deadline.
				sshdWaitLogin(t, x, "admin", time.Until(deadline)+4*time.Second)
				if commit {
					// A committed change must outlive the deadline.
					time.Sleep(time.Until(deadline.Add(time.Second)))
				}
				txnWaitIdle(t, x, deadline.Add(4*time.Second))
				got := x.sh(t, "cat "+dropin, nil)
				if got != original && !(commit && strings.Contains(got, "LogLevel VERBOSE")) {
					t.Errorf("killed after %v (%v): %s is now %q", d, err, dropin, got)
				}
				x.mustLogin(t, 0, "admin", "bg-ops1", "bg-ops2")
				t.Logf("killed after %v: %v: %v", d, k.killed.Load(), err)
			}
		})
	}
}

// txnWaitIdle waits until no revert process runs in the host, and fails
// the test if one still does at limit.
func txnWaitIdle(t *testing.T, x *sshdLab, limit time.Time) {
	t.Helper()
	for time.Now().Before(limit) {
		if strings.TrimSpace(x.sh(t, `ps -eo pid,args | grep '[r]evert.sh' || :`, nil)) == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	x.noLeftovers(t)
}
