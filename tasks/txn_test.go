package tasks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

func TestTxnBeginRejects(t *testing.T) {
	r := &sshdRecorder{}
	tests := []struct {
		name string
		spec txnSpec
		want string
	}{
		{"short deadline", txnSpec{What: "x", Files: []string{"/etc/x"}, Deadline: time.Second}, "shorter than 5s"},
		{"no files", txnSpec{What: "x", Deadline: time.Minute}, "no files"},
		{"relative", txnSpec{What: "x", Files: []string{"etc/x"}, Deadline: time.Minute}, "must be absolute"},
		{"dot-dot", txnSpec{What: "x", Files: []string{"/etc/../x"}, Deadline: time.Minute}, `".." component`},
		{"shell", txnSpec{What: "x", Files: []string{"/etc/$(reboot)"}, Deadline: time.Minute}, "only letters"},
		{"space", txnSpec{What: "x", Files: []string{"/etc/a b"}, Deadline: time.Minute}, "only letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := beginTxn(context.Background(), r, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
	if len(r.calls) != 0 {
		t.Errorf("a rejected transaction ran %d commands", len(r.calls))
	}
}

func TestTxnBeginBusy(t *testing.T) {
	r := (&sshdRecorder{}).on(": begin (", "status busy\n| 20250101T000000Z-0badcafe (pid 77)\n", nil)
	_, err := beginTxn(context.Background(), r, txnSpec{What: "x", Files: []string{"/etc/x"}, Deadline: time.Minute})
	if !errors.Is(err, errTxnBusy) || !strings.Contains(err.Error(), "0badcafe") {
		t.Errorf("err %v", err)
	}
}

func TestTxnID(t *testing.T) {
	id, err := newTxnID(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	if err != nil || !txnIDPattern.MatchString(id) || !strings.HasPrefix(id, "20250304T050607Z-") {
		t.Errorf("id %q err %v", id, err)
	}
}

func TestTxnScriptsParse(t *testing.T) {
	tx := &hostTxn{ID: "20250101T000000Z-01234567", root: txnDir, spec: txnSpec{What: "sshd /etc/ssh/x", Files: []string{"/etc/ssh/a", "/etc/ssh/b"}, Deadline: time.Minute, AfterRestore: sshdAfterRestore(nil)}, existed: []bool{true, false}}
	for name, sc := range map[string][]byte{
		"begin":           tx.beginScript(),
		"arm":             tx.armScript(),
		"revert":          []byte(tx.revertScript()),
		"unarmed restore": txnScript(tx.installRevert() + "\n/bin/sh x abort\n"),
	} {
		sshdShellSyntax(t, name, sc)
	}
	rs := tx.revertScript()
	for _, want := range []string{"files='0 1 /etc/ssh/a /etc/ssh/.a.breakglass-restore\n1 0 /etc/ssh/b /etc/ssh/.b.breakglass-restore\n'\n", `cp -a -- "$T/files/$n" "$tmp.$$"`, `mv -f -- "$tmp.$$" "$f"`, `rm -f -- "$f"`, "deadline=60", "bg_sshd_reload start"} {
		if !strings.Contains(rs, want) {
			t.Errorf("revert script lacks %q", want)
		}
	}
}

func TestParseTxnOutput(t *testing.T) {
	st := parseTxnOutput([]byte("file 0 present\nfile 1 absent\nclaim fired\nrestored ok\nafter failed\n| sshd -t: bad\n| line 2\nstatus x\n"))
	if st.claim != "fired" || st.restored != "ok" || st.after != "failed" || st.status != "x" || !st.files[0] || st.files[1] || st.msg != "sshd -t: bad\nline 2" {
		t.Errorf("%+v", st)
	}
	if d := parseTxnOutput([]byte("Permission denied\n")).describe(); !strings.Contains(d, "Permission denied") {
		t.Errorf("describe %q", d)
	}
}

func TestTxnRollbackOutcomes(t *testing.T) {
	spec := txnSpec{What: "w", Files: []string{"/etc/x"}, Deadline: time.Minute}
	host := func(rollback string, err error) *sshdRecorder {
		return (&sshdRecorder{}).
			on(": begin (", "file 0 present\nstatus begun\n", nil).
			on(": arm the revert", "status armed\n", nil).
			on("revert.sh rollback", rollback, err)
	}
	tests := []struct {
		name                     string
		out                      string
		err                      error
		pending, running, failed bool
		says                     string
	}{
		{"restored", "claim rollback\nrestored ok\nafter ok\n", nil, false, false, false, ""},
		{"fired first", "claim fired\nrestored ok\nafter ok\n", nil, false, false, false, ""},
		{"restore failed on the host", "claim rollback\nrestored failed\n| restore /etc/x failed\n", nil, false, false, true, "RESTORING FAILED"},
		{"after failed on the host", "claim rollback\nrestored ok\nafter failed\n| sshd -t\n", nil, false, false, true, "RESTORING FAILED"},
		{"connection dead", "", errors.New("ssh: broken pipe"), true, false, false, "the revert armed on the host restores it by itself by"},
		{"not claimed yet", "status pending\n| the restore has not finished after 40 s: see T/revert.log\n", nil, false, true, false, "restoring has not finished"},
		{"claimed, not restored yet", "claim rollback\nstatus pending\n| the restore has not finished after 40 s: see T/revert.log\n", nil, false, true, false, "restoring has not finished"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := host(tt.out, tt.err)
			tx, err := beginTxn(context.Background(), r, spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Arm(context.Background()); err != nil {
				t.Fatal(err)
			}
			rb := tx.RollbackOrPending(context.Background(), errors.New("why"))
			if rb.Pending != tt.pending || rb.Running != tt.running || rb.Failed != tt.failed {
				t.Errorf("pending %v running %v failed %v: %v", rb.Pending, rb.Running, rb.Failed, rb)
			}
			if !strings.HasPrefix(rb.Error(), "w: rolled back: why") || !strings.Contains(rb.Error(), tt.says) {
				t.Errorf("error %q", rb)
			}
		})
	}
}

// TestSSHDCommitCutOff: the change was proven, and the commit's answer is
// lost: the host may keep the proven change or restore the old one, and
// the error says exactly that, not that it was rolled back.
func TestSSHDCommitCutOff(t *testing.T) {
	r := sshdFakeHost(debianMain, "status reloaded\n")
	r.rules[4].err = errors.New("ssh: connection reset")
	res, err := runModule(context.Background(), r, sshdEnv(&sshdFakeDialer{}), mustSSHD(t, `{settings: {LogLevel: VERBOSE}, revert_after: 5}`))
	var rb *rollbackError
	if !errors.As(err, &rb) || !rb.CommitUnknown || rb.Pending || res.RolledBack {
		t.Fatalf("res %+v err %v: want not known whether committed", res, err)
	}
	if s := err.Error(); !strings.Contains(s, "proven, but not known whether committed") || !strings.Contains(s, "connection reset") || strings.Contains(s, "rolled back") {
		t.Errorf("error %q", s)
	}
}

func TestTxnRollbackAfterContextEnded(t *testing.T) {
	r := (&sshdRecorder{}).
		on(": begin (", "file 0 absent\nstatus begun\n", nil).
		on(": arm the revert", "status armed\n", nil).
		on("revert.sh rollback", "claim rollback\nrestored ok\nafter ok\n", nil)
	tx, err := beginTxn(context.Background(), r, txnSpec{What: "w", Files: []string{"/etc/x"}, Deadline: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Arm(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The fake runner ignores ctx; what matters is that Rollback does not
	// refuse to run because the task's context ended.
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("rollback after the task's context ended: %v", err)
	}
}

// --- on real hosts ---

func txnWithHost(t *testing.T, x *sshdLab, r Runner, files []string, deadline time.Duration, after string) *hostTxn {
	t.Helper()
	tx, err := beginTxn(context.Background(), r, txnSpec{What: "test", Files: files, Deadline: deadline, AfterRestore: after})
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
	if err := tx.Commit(context.Background()); !errors.Is(err, ErrTxnEnded) {
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
	if err := tx.Commit(context.Background()); !errors.Is(err, errTxnFired) {
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
	if _, err := beginTxn(context.Background(), r, txnSpec{What: "second", Files: []string{"/etc/b"}, Deadline: time.Minute}); !errors.Is(err, errTxnBusy) {
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

// txnLocalRunner runs each command with /bin/sh -c on this machine, in a
// process group of its own that a cancelled context SIGKILLs whole: a
// session that dies with everything still running in it.
type txnLocalRunner struct{}

func (txnLocalRunner) Run(ctx context.Context, cmd string, stdin []byte) ([]byte, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin = strings.NewReader(string(stdin))
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	// Generous: a loaded machine under -race can be slow to drain the pipes.
	c.WaitDelay = 10 * time.Second
	return c.Output()
}

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

// txnKillDelays are the instants at which the tests kill a rollback or a
// commit: before it starts, at each step of the script, and after it ends.
var txnKillDelays = []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 35 * time.Millisecond, 50 * time.Millisecond, 80 * time.Millisecond,
	120 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

func txnLocalOnly(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		lab.Skip(t, "systemd runs here: the armed revert would be a systemd unit of this machine; the lab tests cover the protocol")
	}
	for _, c := range []string{"setsid", "nohup"} {
		if _, err := exec.LookPath(c); err != nil {
			lab.Skip(t, "no %s here", c)
		}
	}
}

// txnLocal is a transaction over two files in a temp directory, one
// present ("old") and one absent, armed for deadline and then changed.
type txnLocal struct {
	tx    *hostTxn
	a, b  string
	after string
}

func newTxnLocal(dir string, r Runner, deadline time.Duration, afterRestore string) (*txnLocal, error) {
	x := &txnLocal{a: dir + "/a", b: dir + "/b", after: dir + "/after"}
	if err := os.WriteFile(x.a, []byte("old\n"), 0o640); err != nil {
		return nil, err
	}
	if afterRestore == "" {
		afterRestore = "echo ran >>" + shell.Quote(x.after)
	}
	tx, err := begin(context.Background(), r, txnSpec{What: "local", Files: []string{x.a, x.b}, Deadline: deadline, AfterRestore: afterRestore}, dir+"/txn")
	if err != nil {
		return nil, err
	}
	if err := tx.Arm(context.Background()); err != nil {
		return nil, err
	}
	x.tx = tx
	if err := os.WriteFile(x.a, []byte("new\n"), 0o640); err != nil {
		return nil, err
	}
	return x, os.WriteFile(x.b, []byte("new\n"), 0o640)
}

// state is the protected files as they are: "old" (restored), "new"
// (changed) or something else.
func (x *txnLocal) state() string {
	a, _ := os.ReadFile(x.a)
	b, err := os.ReadFile(x.b)
	switch {
	case string(a) == "old\n" && errors.Is(err, os.ErrNotExist):
		return "old"
	case string(a) == "new\n" && string(b) == "new\n":
		return "new"
	}
	return fmt.Sprintf("a %q, b %q (%v)", a, b, err)
}

// running lists the transaction's processes still running.
func (x *txnLocal) running() string {
	out, _ := exec.Command("sh", "-c", "ps -eo args | grep -F -- "+shell.Quote(x.tx.Script())+" | grep -v grep || :").Output()
	return string(out)
}

// settle waits until no process of the transaction runs any more and
// returns its log; it fails when one still runs at limit.
func (x *txnLocal) settle(limit time.Time) (string, error) {
	var err error
	for {
		out := x.running()
		if out == "" {
			break
		}
		if time.Now().After(limit) {
			err = fmt.Errorf("still running at the deadline:\n%s", out)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(x.tx.Dir() + "/revert.log")
	return string(log), err
}

// txnRounds runs round for each kill delay at once (the rounds mostly
// wait for deadlines) and reports their errors.
func txnRounds(t *testing.T, names []string, round func(name string, d time.Duration, dir string) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(names)*len(txnKillDelays))
	for i, name := range names {
		for j, d := range txnKillDelays {
			dir := t.TempDir()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := round(name, d, dir); err != nil {
					errs[i*len(txnKillDelays)+j] = fmt.Errorf("%s, killed after %v: %w", name, d, err)
				}
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestTxnRollbackKilledAnywhere kills the rollback's session at a range
// of instants, as breakglass dying in its own rollback leaves it: by the
// deadline the files are back, put in effect once, and nothing runs.
func TestTxnRollbackKilledAnywhere(t *testing.T) {
	txnLocalOnly(t)
	t.Parallel()
	txnRounds(t, []string{"rollback", "abort"}, func(mode string, d time.Duration, dir string) error {
		k := &txnKillRunner{r: txnLocalRunner{}, marker: "revert.sh " + mode, delay: d}
		x, err := newTxnLocal(dir, k, minTxnDeadline, "")
		if err != nil {
			return err
		}
		var rb *rollbackError
		if mode == "rollback" {
			rb = x.tx.RollbackOrPending(context.Background(), errors.New("proof failed"))
		} else {
			rb = x.tx.AbortOrPending(context.Background(), errors.New("sshd -t failed"))
		}
		if ps := x.running(); !k.killed.Load() && ps != "" {
			return fmt.Errorf("still running after the rollback returned:\n%s", ps)
		}
		log, err := x.settle(x.tx.Deadline().Add(3 * time.Second))
		if got := x.state(); got != "old" || err != nil {
			return fmt.Errorf("killed %v; files after the deadline: %s (%v; %v)\n%s", k.killed.Load(), got, err, rb, log)
		}
		after, _ := os.ReadFile(x.after)
		switch {
		case rb.Failed || rb.Running || (!k.killed.Load() && rb.Pending) || (k.killed.Load() && !rb.Pending):
			return fmt.Errorf("killed %v: %v", k.killed.Load(), rb)
		case mode == "rollback" && string(after) != "ran\n":
			return fmt.Errorf("after-restore step ran %q, want once\n%s", after, log)
		}
		return nil
	})
}

// TestTxnCommitKilledAnywhere kills the commit's session at a range of
// instants: after the deadline the change either stays (committed) or is
// restored, and nothing runs any more.
func TestTxnCommitKilledAnywhere(t *testing.T) {
	txnLocalOnly(t)
	t.Parallel()
	txnRounds(t, []string{"commit"}, func(_ string, d time.Duration, dir string) error {
		k := &txnKillRunner{r: txnLocalRunner{}, marker: "revert.sh commit", delay: d}
		x, err := newTxnLocal(dir, k, minTxnDeadline, "")
		if err != nil {
			return err
		}
		cerr := x.tx.Commit(context.Background())
		by := x.tx.Deadline().Add(3 * time.Second)
		time.Sleep(time.Until(by.Add(-time.Second)))
		log, err := x.settle(by)
		// Past the deadline: "new" stays, so it was committed.
		if got := x.state(); (got != "new" && got != "old") || err != nil {
			return fmt.Errorf("killed %v (%v): files %s (%v)\n%s", k.killed.Load(), cerr, got, err, log)
		}
		if !k.killed.Load() && cerr != nil {
			return fmt.Errorf("commit: %v", cerr)
		}
		return nil
	})
}

// TestTxnRestorerKilledIsRedone: a restorer that dies half-way (here the
// armed revert, SIGKILLed while it puts the restored files in effect) is
// noticed by the rollback waiting for it, which has the restore redone.
func TestTxnRestorerKilledIsRedone(t *testing.T) {
	txnLocalOnly(t)
	t.Parallel()
	dir := t.TempDir()
	mark := shell.Quote(dir + "/after")
	x, err := newTxnLocal(dir, txnLocalRunner{}, time.Minute, "echo start >>"+mark+"; sleep 2; echo ran >>"+mark)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *rollbackError, 1)
	go func() { done <- x.tx.RollbackOrPending(context.Background(), errors.New("why")) }()
	var pid int
	for limit := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatal("the armed revert never started restoring")
		}
		claim, _ := os.Readlink(x.tx.Dir() + "/claim")
		if after, _ := os.ReadFile(x.after); string(after) == "start\n" && claim != "" {
			if _, p, ok := strings.Cut(claim, ":"); ok {
				pid, _ = strconv.Atoi(p)
			}
		}
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rb := <-done
	if rb.Pending || rb.Running || rb.Failed {
		t.Errorf("rollback: %v", rb)
	}
	log, err := x.settle(time.Now().Add(5 * time.Second))
	if err != nil {
		t.Error(err)
	}
	after, _ := os.ReadFile(x.after)
	if got := x.state(); got != "old" || string(after) != "start\nstart\nran\n" {
		t.Errorf("files %s, after-restore steps %q\n%s", got, after, log)
	}
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
				var rb *rollbackError
				switch {
				case commit && err == nil:
				case !errors.As(err, &rb):
					t.Fatalf("killed after %v: res %+v err %v: want a RollbackError", d, res, err)
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

var txnIDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
