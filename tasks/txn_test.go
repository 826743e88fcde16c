package tasks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/shell"
)

func TestTxnBeginRejects(t *testing.T) {
	r := &sshdRecorder{}
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
			_, err := Begin(context.Background(), r, tt.spec)
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
	_, err := Begin(context.Background(), r, TxnSpec{What: "x", Files: []string{"/etc/x"}, Deadline: time.Minute})
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
	tx := &Txn{ID: "20250101T000000Z-01234567", root: TxnDir, spec: TxnSpec{What: "sshd /etc/ssh/x", Files: []string{"/etc/ssh/a", "/etc/ssh/b"}, Deadline: time.Minute, AfterRestore: sshdAfterRestore(nil)}, existed: []bool{true, false}}
	for name, sc := range map[string][]byte{
		"begin":           tx.beginScript(),
		"arm":             tx.armScript(),
		"revert":          []byte(tx.revertScript()),
		"unarmed restore": txnScript(tx.installRevert() + "\n/bin/sh x abort\n"),
	} {
		sshdShellSyntax(t, name, sc)
	}
	rs := tx.revertScript()
	for _, want := range []string{`cp -a -- "$T/files/0" /etc/ssh/.a.breakglass-restore`, `mv -f -- /etc/ssh/.a.breakglass-restore /etc/ssh/a`, `rm -f -- /etc/ssh/b`, "deadline=60", "bg_sshd_reload start"} {
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
	host := func(rollback string, err error) *sshdRecorder {
		return (&sshdRecorder{}).
			on(": begin (", "file 0 present\nstatus begun\n", nil).
			on(": arm the revert", "status armed\n", nil).
			on("revert.sh rollback", rollback, err)
	}
	tests := []struct {
		name            string
		out             string
		err             error
		pending, failed bool
	}{
		{"restored", "claim rollback\nrestored ok\nafter ok\n", nil, false, false},
		{"fired first", "claim fired\nrestored ok\nafter ok\n", nil, false, false},
		{"restore failed on the host", "claim rollback\nrestored failed\n| restore /etc/x failed\n", nil, false, true},
		{"after failed on the host", "claim rollback\nrestored ok\nafter failed\n| sshd -t\n", nil, false, true},
		{"connection dead", "", errors.New("ssh: broken pipe"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := host(tt.out, tt.err)
			tx, err := Begin(context.Background(), r, spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Arm(context.Background()); err != nil {
				t.Fatal(err)
			}
			rb := tx.RollbackOrPending(context.Background(), errors.New("why"))
			if rb.Pending != tt.pending || rb.Failed != tt.failed {
				t.Errorf("pending %v failed %v: %v", rb.Pending, rb.Failed, rb)
			}
			if !strings.HasPrefix(rb.Error(), "w: rolled back: why") {
				t.Errorf("error %q", rb)
			}
		})
	}
}

func TestTxnRollbackAfterContextEnded(t *testing.T) {
	r := (&sshdRecorder{}).
		on(": begin (", "file 0 absent\nstatus begun\n", nil).
		on(": arm the revert", "status armed\n", nil).
		on("revert.sh rollback", "claim rollback\nrestored ok\nafter ok\n", nil)
	tx, err := Begin(context.Background(), r, TxnSpec{What: "w", Files: []string{"/etc/x"}, Deadline: time.Minute})
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

func txnWithHost(t *testing.T, x *sshdLab, r Runner, files []string, deadline time.Duration, after string) *Txn {
	t.Helper()
	tx, err := Begin(context.Background(), r, TxnSpec{What: "test", Files: files, Deadline: deadline, AfterRestore: after})
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
	if got := x.sh(t, "cat /etc/a; stat -c '%U %a' /etc/a; ls /etc/b 2>&1; cat /tmp/after; cat /etc/.a.breakglass-bak", nil); got != "old\nadmin 640\nls: cannot access '/etc/b': No such file or directory\nran\nold\n" {
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
	if err := tx.Commit(context.Background()); !errors.Is(err, ErrTxnFired) {
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
	if _, err := Begin(context.Background(), r, TxnSpec{What: "second", Files: []string{"/etc/b"}, Deadline: time.Minute}); !errors.Is(err, ErrTxnBusy) {
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
