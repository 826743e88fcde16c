package engine

import (
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
	r := &fakeHost{}
	tests := []struct {
		name string
		spec TxnSpec
		want string
	}{
		{"short deadline", TxnSpec{What: "x", Files: []string{"/etc/x"}, Deadline: time.Second}, "shorter than 5s"},
		{"no files", TxnSpec{What: "x", Deadline: time.Minute}, "no files"},
		{"relative", TxnSpec{What: "x", Files: []string{"etc/x"}, Deadline: time.Minute}, "must be absolute"},
		{"dot-dot", TxnSpec{What: "x", Files: []string{"/etc/../x"}, Deadline: time.Minute}, `".." component`},
		{"shell", TxnSpec{What: "x", Files: []string{"/etc/$(reboot)"}, Deadline: time.Minute}, "only letters"},
		{"space", TxnSpec{What: "x", Files: []string{"/etc/a b"}, Deadline: time.Minute}, "only letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BeginTxn(context.Background(), r, tt.spec)
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
	r := (&fakeHost{}).on(": begin (", "status busy\n| 20250101T000000Z-0badcafe (pid 77)\n", nil)
	_, err := BeginTxn(context.Background(), r, TxnSpec{What: "x", Files: []string{"/etc/x"}, Deadline: time.Minute})
	if !errors.Is(err, ErrTxnBusy) || !strings.Contains(err.Error(), "0badcafe") {
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
	tx := &Txn{ID: "20250101T000000Z-01234567", root: txnDir, spec: TxnSpec{What: "sshd /etc/ssh/x", Files: []string{"/etc/ssh/a", "/etc/ssh/b"}, Deadline: time.Minute, AfterRestore: "echo restored-by-test"}, existed: []bool{true, false}}
	for name, sc := range map[string][]byte{
		"begin":           tx.beginScript(),
		"arm":             tx.armScript(),
		"revert":          []byte(tx.revertScript()),
		"unarmed restore": Script(tx.installRevert() + "\n/bin/sh x abort\n"),
	} {
		shellSyntax(t, name, sc)
	}
	rs := tx.revertScript()
	for _, want := range []string{"files='0 1 /etc/ssh/a /etc/ssh/.a.breakglass-restore\n1 0 /etc/ssh/b /etc/ssh/.b.breakglass-restore\n'\n", `cp -a -- "$T/files/$n" "$tmp.$$"`, `mv -f -- "$tmp.$$" "$f"`, `rm -f -- "$f"`, "deadline=60", "echo restored-by-test"} {
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
	spec := TxnSpec{What: "w", Files: []string{"/etc/x"}, Deadline: time.Minute}
	host := func(rollback string, err error) *fakeHost {
		return (&fakeHost{}).
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
			tx, err := BeginTxn(context.Background(), r, spec)
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

func TestTxnRollbackAfterContextEnded(t *testing.T) {
	r := (&fakeHost{}).
		on(": begin (", "file 0 absent\nstatus begun\n", nil).
		on(": arm the revert", "status armed\n", nil).
		on("revert.sh rollback", "claim rollback\nrestored ok\nafter ok\n", nil)
	tx, err := BeginTxn(context.Background(), r, TxnSpec{What: "w", Files: []string{"/etc/x"}, Deadline: time.Minute})
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
	tx    *Txn
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
	tx, err := begin(context.Background(), r, TxnSpec{What: "local", Files: []string{x.a, x.b}, Deadline: deadline, AfterRestore: afterRestore}, dir+"/txn")
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
		x, err := newTxnLocal(dir, k, MinTxnDeadline, "")
		if err != nil {
			return err
		}
		var rb *RollbackError
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
		x, err := newTxnLocal(dir, k, MinTxnDeadline, "")
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
	done := make(chan *RollbackError, 1)
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

// txnKillRunner passes commands to r, except that the one whose script
// contains marker is killed (its whole session) after delay, as when
// breakglass dies in the middle of it.
type txnKillRunner struct {
	r      Runner
	marker string
	delay  time.Duration
	killed atomic.Bool
}

var txnIDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
