package engine

// Transactions for changes that could cut access (DESIGN §5): back up the
// files a change touches, arm a revert on the host that restores them by
// itself after a deadline, make the change, prove access with fresh logins,
// then commit (disarm) or roll back.
//
// Everything the host needs to restore itself lives on the host, in one
// root-only directory per transaction, on /run (tmpfs: the armed revert
// does not outlive a reboot either, and a lab host's /run is its own):
//
//	/run/breakglass/txn/ID/     0700
//	    files/N                 copy of the Nth file as it was (cp -a)
//	    revert.sh               0700: the whole protocol, see below
//	    revert.log              what the revert's processes did
//	    pid                     the armed revert's pid (= its process group)
//	    request                 the restore a rollback or abort asked for
//	    claim                   symlink to WHO:PID: who ended it (commit, cancel, fired, rollback, abort)
//	    redo.PID                symlink to the pid that redid PID's interrupted restore
//	    result                  how the restore went, once one ran
//	    done                    the transaction ended
//
// Besides, Begin keeps the previous version of each file that exists next
// to it, as .NAME.breakglass.bak (BackupPath, the one backup name of every
// writer: hidden and not ending in .conf, so no Include glob reads it),
// which survives a reboot.
//
// revert.sh arm runs detached from the SSH session (setsid + nohup, stdio
// on /dev/null, or a transient systemd unit where systemd runs, so that
// logind's KillUserProcesses cannot take it along): it sleeps for the
// deadline, then claims the transaction and restores. revert.sh commit
// (and cancel), run through the control connection, claims it first and
// stops the sleeper. revert.sh rollback (and abort) claims nothing and
// stops nothing: it records the restore it wants in $T/request and wakes
// the armed revert, which claims and restores at once (or, when the armed
// revert is gone, starts a detached restorer that does), then waits for
// $T/result. The claim is an atomic symlink, so exactly one party acts;
// only detached processes claim to restore, so breakglass dying at any
// instant (and its session with it) never interrupts a restore, and the
// host is never left without its armed revert before a restore is done:
// it ends in the old state or in the committed (proven) new one, by the
// deadline. See revertScript.

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/shell"
)

// txnDir is where transactions keep their state on a host.
const txnDir = "/run/breakglass/txn"

// MinTxnDeadline is the shortest deadline Begin accepts: the armed revert
// must not fire while the change is still being applied.
const MinTxnDeadline = 5 * time.Second

// txnKeep is how many ended transactions a host keeps (with their backups).
const txnKeep = 20

// txnCleanupTimeout bounds a rollback or commit that runs after the run's
// own context ended: restoring a host must not be cancelled with the task.
const txnCleanupTimeout = 60 * time.Second

// TxnSpec says what a transaction protects.
type TxnSpec struct {
	// What names the change in logs and errors, e.g. "sshd /etc/ssh/sshd_config.d/00-breakglass.conf".
	What string
	// Files are the absolute paths the change may write or remove. Begin
	// backs up those that exist; restoring removes those that did not.
	Files []string
	// Deadline is how long after Arm the host restores itself unless the
	// transaction was committed.
	Deadline time.Duration
	// AfterRestore is a shell fragment run as root by /bin/sh after the
	// files are back (e.g. validate and reload sshd); a non-zero status
	// means the restored state could not be put in effect. May be empty.
	AfterRestore string
}

// Txn is one transaction on one host.
type Txn struct {
	ID   string
	spec TxnSpec
	r    Runner
	root string // TxnDir; a temp directory in tests that run the scripts locally

	existed []bool // per spec.Files: present when Begin backed it up
	armedAt time.Time
	armed   bool
	ended   bool
}

// Errors a transaction reports; decide with errors.Is.
var (
	// ErrTxnBusy: another transaction is armed on the host.
	ErrTxnBusy = errors.New("another breakglass transaction is armed on this host")
	// ErrTxnFired: the armed revert restored the host before the
	// transaction was committed (the deadline was too short, or the
	// control connection too slow).
	ErrTxnFired = errors.New("the deadline passed and the revert armed on the host restored it")
	// ErrTxnEnded: the transaction was already committed or rolled back.
	ErrTxnEnded = errors.New("transaction already ended")
)

// txnFiredError is Commit's error when the armed revert fired first. It
// matches ErrTxnFired.
type txnFiredError struct {
	RestoreFailed string // what went wrong restoring, "" when it went well
}

func (e *txnFiredError) Error() string {
	if e.RestoreFailed != "" {
		return ErrTxnFired.Error() + ", but restoring failed: " + e.RestoreFailed
	}
	return ErrTxnFired.Error()
}

// Is makes errors.Is(err, ErrTxnFired) true.
func (e *txnFiredError) Is(target error) bool { return target == ErrTxnFired }

// RollbackError is a change that was taken back. Why is the reason
// (a failed validation or login); the rest says how the host was restored.
type RollbackError struct {
	What string // the change, as in TxnSpec.What
	Why  error
	// Pending is set when restoring through the control connection failed
	// (the connection died, or breakglass was interrupted) while a revert
	// was armed on the host. Nothing breakglass does stops that revert
	// before a restore is done and recorded, so it restores the host by
	// itself, at once when the request reached it, else by Deadline.
	Pending  bool
	Deadline time.Time
	// Running is set when the host took the request but its restore had
	// not finished when breakglass stopped waiting for it.
	Running bool
	// CommitUnknown is set when the change was proven but committing it
	// failed on the way: if the commit reached the host the proven change
	// stays, otherwise the armed revert restores the host by Deadline.
	CommitUnknown bool
	RestoreErr    error // why restoring (or committing) failed
	// Failed is set when the host itself could not restore the backup:
	// look at the host (Backup names the transaction directory; each file
	// also has its .NAME.breakglass.bak beside it).
	Failed bool
	Backup string
}

func (e *RollbackError) Error() string {
	if e.CommitUnknown {
		return fmt.Sprintf("%s: proven, but not known whether committed: %v: if the commit reached the host, the proven change stays; otherwise the revert armed on the host restores the previous state by itself by %s", e.What, e.Why, e.Deadline.Format("15:04:05"))
	}
	msg := fmt.Sprintf("%s: rolled back: %v", e.What, e.Why)
	switch {
	case e.Failed:
		msg += "; RESTORING FAILED"
		if e.RestoreErr != nil {
			msg += fmt.Sprintf(" (%v)", e.RestoreErr)
		}
		msg += ": restore by hand from " + e.Backup + " (each file's previous version is also beside it as .NAME.breakglass.bak)"
	case e.Running:
		msg += fmt.Sprintf("; restoring has not finished (%v): look at the host (%s/revert.log)", e.RestoreErr, e.Backup)
	case e.Pending:
		msg += fmt.Sprintf("; restoring through the control connection failed (%v): the revert armed on the host restores it by itself by %s", e.RestoreErr, e.Deadline.Format("15:04:05"))
	}
	return msg
}

func (e *RollbackError) Unwrap() error { return e.Why }

func newTxnID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transaction id: %w", err)
	}
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
}

// Dir is the transaction's directory on the host.
func (t *Txn) Dir() string { return t.root + "/" + t.ID }

// Script is the path of the revert script on the host.
func (t *Txn) Script() string { return t.Dir() + "/revert.sh" }

// Deadline is when the armed revert fires (by this machine's clock).
func (t *Txn) Deadline() time.Time { return t.armedAt.Add(t.spec.Deadline) }

// BeginTxn starts a transaction: it refuses when another one is armed on the
// host, then backs up spec.Files into a new transaction directory, in one
// round trip. Nothing is armed yet.
func BeginTxn(ctx context.Context, r Runner, spec TxnSpec) (*Txn, error) {
	return begin(ctx, r, spec, txnDir)
}

// begin is Begin with the transactions kept under root.
func begin(ctx context.Context, r Runner, spec TxnSpec, root string) (*Txn, error) {
	if spec.Deadline < MinTxnDeadline {
		return nil, fmt.Errorf("transaction %s: deadline %v is shorter than %v", spec.What, spec.Deadline, MinTxnDeadline)
	}
	if len(spec.Files) == 0 {
		return nil, fmt.Errorf("transaction %s: no files to protect", spec.What)
	}
	for _, f := range spec.Files {
		if err := txnValidPath(f); err != nil {
			return nil, fmt.Errorf("transaction %s: %w", spec.What, err)
		}
	}
	id, err := newTxnID(time.Now())
	if err != nil {
		return nil, err
	}
	t := &Txn{ID: id, spec: spec, r: r, root: root}
	out, err := r.Run(ctx, "/bin/sh -s", t.beginScript())
	if err != nil {
		return nil, fmt.Errorf("transaction %s: back up: %w", spec.What, err)
	}
	st := parseTxnOutput(out)
	switch st.status {
	case "begun":
	case "busy":
		return nil, fmt.Errorf("transaction %s: %w (%s): it ends by itself within its deadline; try again then", spec.What, ErrTxnBusy, st.msg)
	default:
		return nil, fmt.Errorf("transaction %s: back up: %s", spec.What, st.describe())
	}
	t.existed = make([]bool, len(spec.Files))
	for i := range spec.Files {
		v, ok := st.files[i]
		if !ok {
			return nil, fmt.Errorf("transaction %s: back up: no report for %s", spec.What, spec.Files[i])
		}
		t.existed[i] = v
	}
	return t, nil
}

// Existed reports whether spec.Files[i] existed when Begin backed it up.
func (t *Txn) Existed(i int) bool { return t.existed[i] }

// Arm installs the revert script and starts it detached from the session,
// so that it restores the host by itself after the deadline even when the
// control connection dies. It returns once the revert runs.
func (t *Txn) Arm(ctx context.Context) error {
	if t.armed || t.ended {
		return fmt.Errorf("transaction %s: arm: %w", t.spec.What, ErrTxnEnded)
	}
	t.armedAt = time.Now()
	out, err := t.r.Run(ctx, "/bin/sh -s", t.armScript())
	if err == nil {
		if st := parseTxnOutput(out); st.status != "armed" {
			err = errors.New(st.describe())
		}
	}
	if err != nil {
		// It may have started (the connection died after the launch, or
		// it was slow to report): cancel it if it did, so that it cannot
		// fire later over whatever comes next.
		t.armed = true
		if cerr := t.cancel(ctx); cerr != nil && t.revertInstalled(ctx) {
			return fmt.Errorf("transaction %s: arm: %w (and cancelling it failed: %v; if it runs, it restores the unchanged files at %s)", t.spec.What, err, cerr, t.Deadline().Format("15:04:05"))
		}
		t.armed, t.ended = false, true
		return fmt.Errorf("transaction %s: arm: %w", t.spec.What, err)
	}
	t.armed = true
	return nil
}

// revertInstalled reports whether revert.sh may be on the host (true
// when that cannot be told).
func (t *Txn) revertInstalled(ctx context.Context) bool {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	out, err := t.r.Run(ctx, "/bin/sh -s", txnScript("[ -e "+shell.Quote(t.Script())+" ] && echo yes || echo no"))
	return err != nil || strings.TrimSpace(string(out)) != "no"
}

// Commit disarms the revert: the change stays. It fails with ErrTxnFired
// when the revert fired first (the host is restored then). The host
// commits at the instant it claims the transaction: a Commit cut off
// before that leaves the revert armed, after it the change committed.
func (t *Txn) Commit(ctx context.Context) error {
	st, err := t.end(ctx, "commit")
	if err != nil {
		return err
	}
	switch st.claim {
	case "commit":
		return nil
	case "fired":
		return &txnFiredError{RestoreFailed: st.restoreFailure()}
	default:
		return fmt.Errorf("transaction %s: commit: %w (%s)", t.spec.What, ErrTxnEnded, st.claim)
	}
}

// Rollback has the host restore the backups now and run AfterRestore, and
// reports how that went (also when the armed revert fired first). The
// restore runs detached on the host (the armed revert does it): a
// Rollback cut off at any point leaves it running, or armed.
func (t *Txn) Rollback(ctx context.Context) error { return t.restore(ctx, "rollback") }

// Abort is Rollback without AfterRestore, for a change that never took
// effect (e.g. a config rejected before any reload).
func (t *Txn) Abort(ctx context.Context) error { return t.restore(ctx, "abort") }

func (t *Txn) restore(ctx context.Context, mode string) error {
	st, err := t.end(ctx, mode)
	if err != nil {
		return err
	}
	switch st.claim {
	case mode, "fired", "": // "" only while pending
	default:
		return fmt.Errorf("transaction %s: %s: %w (%s)", t.spec.What, mode, ErrTxnEnded, st.claim)
	}
	if st.restored == "" {
		return &txnRestoreError{msg: "the host has not finished restoring: " + st.describe(), running: true}
	}
	if st.restored != "ok" {
		return &txnRestoreError{msg: "restore the backup: " + st.describe(), host: true}
	}
	if mode == "rollback" && st.after != "" && st.after != "ok" {
		return &txnRestoreError{msg: "files restored, but putting them in effect failed: " + st.describe(), host: true}
	}
	return nil
}

// txnRestoreError is a restore that ran on the host and failed there (host
// true) or had not finished when the host stopped waiting for it (running),
// as opposed to one that could not be asked for.
type txnRestoreError struct {
	msg     string
	host    bool
	running bool
}

func (e *txnRestoreError) Error() string { return e.msg }

// cancel stops an armed revert without restoring anything: only for a
// transaction that has not changed the host yet.
func (t *Txn) cancel(ctx context.Context) error {
	_, err := t.end(ctx, "cancel")
	return err
}

// end runs revert.sh MODE through the control connection. A context that
// already ended is replaced, so a task's timeout does not stop waiting for
// a restore (the restore itself runs detached on the host in any case).
func (t *Txn) end(ctx context.Context, mode string) (txnOutput, error) {
	if !t.armed {
		if mode == "commit" || mode == "cancel" {
			return txnOutput{}, fmt.Errorf("transaction %s: %s: not armed", t.spec.What, mode)
		}
		// Not armed: restore from the backups directly.
	}
	if t.ended {
		return txnOutput{}, fmt.Errorf("transaction %s: %s: %w", t.spec.What, mode, ErrTxnEnded)
	}
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	var out []byte
	var err error
	if t.armed {
		out, err = t.r.Run(ctx, shell.Join("/bin/sh", t.Script(), mode), nil)
	} else {
		// Not armed: the script is not on the host yet; send it, run it.
		out, err = t.r.Run(ctx, "/bin/sh -s", txnScript(t.installRevert()+"\n/bin/sh "+shell.Quote(t.Script())+" "+mode+" </dev/null\n"))
	}
	if err != nil {
		return txnOutput{}, fmt.Errorf("transaction %s: %s: %w", t.spec.What, mode, err)
	}
	st := parseTxnOutput(out)
	if st.claim == "" && st.status != "pending" {
		return st, fmt.Errorf("transaction %s: %s: %s", t.spec.What, mode, st.describe())
	}
	t.ended = true
	return st, nil
}

// cleanupContext returns a context for work that must run even when ctx
// ended (restoring a host): ctx's values, no cancellation, its own bound.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return context.WithTimeout(ctx, txnCleanupTimeout)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), txnCleanupTimeout)
}

// RollbackOrPending rolls t back after a failed change and returns the
// *RollbackError to report: restored now, restored by the armed revert
// (fired first), pending (the control connection failed: the armed revert
// will do it), still running on the host, or failed on the host.
func (t *Txn) RollbackOrPending(ctx context.Context, why error) *RollbackError {
	return t.undo(ctx, why, t.Rollback)
}

// AbortOrPending is RollbackOrPending for a change that never took effect.
func (t *Txn) AbortOrPending(ctx context.Context, why error) *RollbackError {
	return t.undo(ctx, why, t.Abort)
}

func (t *Txn) undo(ctx context.Context, why error, f func(context.Context) error) *RollbackError {
	e := &RollbackError{What: t.spec.What, Why: why, Backup: t.Dir(), Deadline: t.Deadline()}
	err := f(ctx)
	if err == nil {
		return e
	}
	e.RestoreErr = err
	var re *txnRestoreError
	switch {
	case errors.As(err, &re) && re.running:
		e.Running = true
	case errors.As(err, &re) && re.host:
		e.Failed = true
	default:
		// The request may or may not have reached the host; either way
		// the armed revert was not stopped (see revertScript).
		e.Pending = t.armed
		e.Failed = !t.armed
	}
	return e
}

// --- the scripts ---

// txnScript wraps a script for `/bin/sh -s`: the shell parses the whole
// brace group before running any of it, so no command can read the rest
// of the script from stdin; commands get /dev/null instead.
func txnScript(body string) []byte {
	return []byte("{\n" + body + "\n} </dev/null\n")
}

// txnHeredoc returns shell that writes data, byte for byte, to the file
// named by the shell word dst (base64 in a here-document, so any content
// travels on stdin and nothing in it is ever shell). rest continues the
// command line (e.g. `|| bg_fail ...`): the document follows that line.
func txnHeredoc(data []byte, dst, rest string) string {
	return "base64 -d >" + dst + " " + base64Doc(data, rest)
}

// base64Doc is a here-document that carries data in base64, its opening
// line continued by rest (may be empty).
func base64Doc(data []byte, rest string) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	b.WriteString("<<'BREAKGLASS_EOF'")
	if rest != "" {
		b.WriteString(" " + rest)
	}
	b.WriteString("\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\nBREAKGLASS_EOF")
	return b.String()
}

// txnTmpPath is the temp file next to p that a write or restore renames
// over p: hidden and not ending in .conf, so no Include glob picks it up.
func txnTmpPath(p, what string) string {
	return path.Dir(p) + "/." + path.Base(p) + ".breakglass-" + what
}

var txnSafePath = regexp.MustCompile(`^(/[A-Za-z0-9._+@,:=-]+)+$`)

func txnValidPath(p string) error {
	if err := shell.ValidPath(p); err != nil {
		return err
	}
	if !txnSafePath.MatchString(p) {
		return fmt.Errorf("invalid path %q: only letters, digits and . _ + @ , : = - in its components", p)
	}
	return nil
}

// txnPrelude is txn_prelude.sh: the settings every transaction script
// (and the other scripts that change sshd's files) starts with.
//
//go:embed txn_prelude.sh
var txnPrelude string

func (t *Txn) beginScript() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass transaction %s: begin (%s)\n", t.ID, t.spec.What)
	b.WriteString(txnPrelude)
	fmt.Fprintf(&b, "S=%s T=%s\n", shell.Quote(t.root), shell.Quote(t.Dir()))
	// The files travel as data, one "INDEX PATH BACKUP" line each: their
	// paths passed txnValidPath, so they are words.
	var files strings.Builder
	for i, f := range t.spec.Files {
		fmt.Fprintf(&files, "%d %s %s\n", i, f, BackupPath(f))
	}
	fmt.Fprintf(&b, "keep=%d files=%s\n", txnKeep, shell.Quote(files.String()))
	b.WriteString(txnBeginScript)
	return txnScript(b.String())
}

// txnBeginScript is txn_begin.sh: the begin script after its header.
//
//go:embed txn_begin.sh
var txnBeginScript string

// installRevert is shell that writes revert.sh into the transaction's directory.
func (t *Txn) installRevert() string {
	tmp := t.Script() + ".tmp"
	return txnHeredoc([]byte(t.revertScript()), shell.Quote(tmp), `|| { echo "status failed"; echo "| write `+tmp+`"; exit 0; }`) +
		fmt.Sprintf(`
chmod 0700 %s && mv -f %s %s || { echo "status failed"; echo "| install %s"; exit 0; }`,
			shell.Quote(tmp), shell.Quote(tmp), shell.Quote(t.Script()), t.Script())
}

func (t *Txn) armScript() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# breakglass transaction %s: arm the revert (%s)\n", t.ID, t.spec.What)
	b.WriteString(txnPrelude)
	fmt.Fprintf(&b, "T=%s unit=%s\n", shell.Quote(t.Dir()), shell.Quote("breakglass-revert-"+t.ID))
	b.WriteString("bg_install_revert() {\n" + t.installRevert() + "\n}\n")
	b.WriteString(txnArmScript)
	return txnScript(b.String())
}

// txnArmScript is txn_arm.sh: the arm script after its header.
//
//go:embed txn_arm.sh
var txnArmScript string

// revertScript is revert.sh: every way a transaction ends, on the host.
func (t *Txn) revertScript() string {
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
# breakglass transaction %s: %s
# Armed at %s for %d s. Unless committed by then, it restores:
`, t.ID, t.spec.What, time.Now().UTC().Format(time.RFC3339), int(t.spec.Deadline/time.Second))
	for i, f := range t.spec.Files {
		state := "absent: removed"
		if t.existed != nil && t.existed[i] {
			state = "backup in files/" + strconv.Itoa(i)
		}
		fmt.Fprintf(&b, "#   %s (%s)\n", f, state)
	}
	b.WriteString(txnPrelude)
	fmt.Fprintf(&b, "T=%s deadline=%d\n", shell.Quote(t.Dir()), int(t.spec.Deadline/time.Second))
	// The files travel as data, one "INDEX EXISTED PATH RESTORE-TEMP"
	// line each (EXISTED 1: restore the backup, 0: remove the file); their
	// paths passed txnValidPath, so they are words.
	var files strings.Builder
	for i, f := range t.spec.Files {
		had := 0
		if t.existed != nil && t.existed[i] {
			had = 1
		}
		fmt.Fprintf(&files, "%d %d %s %s\n", i, had, f, txnTmpPath(f, "restore"))
	}
	fmt.Fprintf(&b, "files=%s\n", shell.Quote(files.String()))
	b.WriteString(`bg_after_restore() {
	:
`)
	if s := strings.TrimSpace(t.spec.AfterRestore); s != "" {
		b.WriteString(s + "\n")
	}
	b.WriteString("}\n")
	b.WriteString(txnRevertScript)
	return b.String()
}

// txnRevertScript is txn_revert.sh: revert.sh after its header.
//
//go:embed txn_revert.sh
var txnRevertScript string

// txnOutput is what a transaction script printed: "status X", "claim X",
// "restored ok|failed", "after ok|failed", "file N present|absent", and
// "| message" lines.
type txnOutput struct {
	status, claim, restored, after string
	files                          map[int]bool
	msg                            string
	raw                            string
}

func parseTxnOutput(out []byte) txnOutput {
	st := txnOutput{files: map[int]bool{}, raw: string(out)}
	var msg []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "|":
			msg = append(msg, v)
		case "status":
			st.status = v
		case "claim":
			st.claim = v
		case "restored":
			st.restored = v
		case "after":
			st.after = v
		case "file":
			n, state, _ := strings.Cut(v, " ")
			if i, err := strconv.Atoi(n); err == nil {
				st.files[i] = state == "present"
			}
		}
	}
	st.msg = strings.Join(msg, "\n")
	return st
}

// describe is the script's own account of a failure, for errors.
func (st txnOutput) describe() string {
	if st.msg != "" {
		return st.msg
	}
	raw := strings.TrimSpace(st.raw)
	if raw == "" {
		return "no output from the host"
	}
	return "unexpected output: " + probeFirstLine(raw)
}

// restoreFailure says what went wrong when the armed revert restored
// the host, "" when it went well.
func (st txnOutput) restoreFailure() string {
	switch {
	case st.restored == "ok" && (st.after == "ok" || st.after == ""):
		return ""
	case st.restored == "":
		return "its result is not known yet"
	default:
		return st.describe()
	}
}
