package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TxnChange is the op of a change that could cut access (sshd's
// configuration): it changes files under a self-reverting transaction
// (see Txn) and keeps the change only once fresh logins prove the ways in.
// Its run: Begin (back the files up) → Arm (the host restores them by
// itself at the deadline) → Install → Report judges Install's output →
// fresh logins (proveAccess) → Commit. Any failure after Arm has the host
// restore the files: at once when the control connection still works,
// else by itself when the deadline passes.
type TxnChange struct {
	// Task names the module; the op's own errors start with it ("sshd").
	Task string
	// Spec is what the transaction protects: the change's name, the files,
	// the revert deadline and what the host runs after restoring them.
	Spec TxnSpec
	// DeadlineArg is the task argument that sets Spec.Deadline, named in
	// the advice when the revert fires before the commit ("revert_after").
	DeadlineArg string
	// Changes are what the change does, as the plan decided them:
	// reported in check mode, and once proven with what was proven.
	Changes []Change
	// Also are what the install does on the way, as far as the facts
	// tell ("create /run/sshd"): check mode reports them; a run reports
	// what the script says it did (TxnReport.Note).
	Also []Change
	// Install is the script (run by /bin/sh -s once the revert is armed)
	// that changes the files and puts the change in effect; decided at
	// plan time, it holds nothing of the run (no transaction id).
	Install []byte
	// Report judges Install's output.
	Report func(out []byte) TxnReport
	// Settings are sshd settings the change puts in force; the proof
	// respects the bounds they set on logins at once (see proveParallel).
	Settings []Setting
	// Stale are the facts the change makes stale, forgotten once it ran
	// or failed; a key ending in ":" stands for every key it starts.
	Stale []string
	// Doubt orders the proof's logins (see Doubt).
	Doubt Doubt
}

// Setting is one sshd setting a change puts in force.
type Setting struct {
	Keyword string // canonical case
	Value   string
}

// TxnReport is what a TxnChange's install script reported.
type TxnReport struct {
	// Err, when set, is why the change failed; the files are restored.
	Err error
	// InEffect is set with Err when the failed change may have taken
	// effect (sshd was reloaded): restoring then also runs the
	// transaction's AfterRestore (a rollback rather than an abort).
	InEffect bool
	// Done says what the script did besides writing the files, added to
	// each change once proven ("sshd -t ok, reloaded").
	Done string
	// Note, when set, is one more change to report: what the script had
	// to do on the way ("created /run/sshd").
	Note string
}

var _ Op = (*TxnChange)(nil)

// ReadOnly implements Op: a transaction changes the host.
func (*TxnChange) ReadOnly() bool { return false }

// Planned implements Op: check mode reports the changes.
func (c *TxnChange) Planned() []Change { return append(slices.Clip(c.Changes), c.Also...) }

// String implements Op.
func (c *TxnChange) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "transaction %q (task %s)\n", c.Spec.What, c.Task)
	fmt.Fprintf(&b, "files: %s\n", strings.Join(c.Spec.Files, " "))
	fmt.Fprintf(&b, "revert after: %s (%s)\n", c.Spec.Deadline, c.DeadlineArg)
	for _, ch := range c.Changes {
		fmt.Fprintf(&b, "change: %s\n", ch.What)
		if ch.Before != "" || ch.After != "" {
			fmt.Fprintf(&b, "  before: %q\n  after:  %q\n", ch.Before, ch.After)
		}
	}
	for _, ch := range c.Also {
		fmt.Fprintf(&b, "also: %s\n", ch.What)
	}
	settings := make([]string, len(c.Settings))
	for i, st := range c.Settings {
		settings[i] = st.Keyword + " " + st.Value
	}
	fmt.Fprintf(&b, "prove: fresh logins on the direct path, with sshd settings %q\n", settings)
	if len(c.Doubt) > 0 {
		fmt.Fprintf(&b, "prove last: %s\n", c.Doubt)
	}
	stale := make([]string, len(c.Stale))
	for i, k := range c.Stale {
		if strings.HasSuffix(k, ":") {
			k += "*"
		}
		stale[i] = k
	}
	fmt.Fprintf(&b, "stale: %s\n", strings.Join(stale, " "))
	fmt.Fprintf(&b, "install:\n%s", indentLines(string(c.Install)))
	fmt.Fprintf(&b, "after restore:\n%s", indentLines(c.Spec.AfterRestore))
	return b.String()
}

// indentLines indents every line of s by four spaces.
func indentLines(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

// Run implements Op: the transaction, from Begin to Commit. On success it
// adds the changes, each with what was proven; on failure it adds none
// and sets res.RolledBack when the host is back as it was.
func (c *TxnChange) Run(ctx context.Context, r Runner, env *Env, res *Result) error {
	files := strings.Join(c.Spec.Files, ", ")
	if env.Dial == nil {
		return fmt.Errorf("%s: %s: no way to open fresh logins here, so the change could not be proven: nothing changed", c.Task, files)
	}
	if env.ControlUser == "" {
		return fmt.Errorf("%s: %s: the control user is unknown, so the change could not be proven: nothing changed", c.Task, files)
	}
	defer env.Facts.forget(c.Stale...)

	txn, err := BeginTxn(ctx, r, c.Spec)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Task, err)
	}
	if err := txn.Arm(ctx); err != nil {
		return fmt.Errorf("%s: %w: nothing changed", c.Task, err)
	}
	failed := func(rb *RollbackError) error {
		res.RolledBack = !rb.Failed && !rb.Running && !rb.CommitUnknown
		return rb
	}

	out, err := r.Run(ctx, "/bin/sh -s", c.Install)
	if err != nil {
		return failed(txn.RollbackOrPending(ctx, fmt.Errorf("installing the new file did not finish: %w", err)))
	}
	rep := c.Report(out)
	switch {
	case rep.Err != nil && rep.InEffect:
		return failed(txn.RollbackOrPending(ctx, rep.Err))
	case rep.Err != nil:
		return failed(txn.AbortOrPending(ctx, rep.Err))
	}

	proof, err := proveAccess(ctx, env, Path{Name: "direct"}, txn.Deadline(), c.Settings, c.Doubt)
	if err != nil {
		return failed(txn.RollbackOrPending(ctx, err))
	}
	if err := txn.Commit(ctx); err != nil {
		rb := &RollbackError{What: c.Spec.What, Why: err, Backup: txn.Dir(), Deadline: txn.Deadline()}
		var fired *txnFiredError
		if errors.As(err, &fired) {
			rb.Why = fmt.Errorf("%w, before the change was committed: raise %s (now %ds)", err, c.DeadlineArg, int(c.Spec.Deadline/time.Second))
			rb.Failed = fired.RestoreFailed != ""
		} else {
			// The commit may have reached the host (then the proven
			// change stays) or not (then the armed revert restores it).
			rb.Why, rb.CommitUnknown = err, true
		}
		return failed(rb)
	}
	done := proof
	if rep.Done != "" {
		done = rep.Done + ", " + proof
	}
	for _, ch := range c.Changes {
		ch.What += "; " + done
		res.Changes = append(res.Changes, ch)
	}
	if rep.Note != "" {
		res.Changes = append(res.Changes, Change{What: rep.Note})
	}
	res.Changed = true
	return nil
}

// forget drops the facts under keys; a key ending in ":" stands for every
// key it starts. A nil f holds nothing.
func (f *Facts) forget(keys ...string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.data {
		for _, p := range keys {
			if k == p || strings.HasSuffix(p, ":") && strings.HasPrefix(k, p) {
				delete(f.data, k)
				break
			}
		}
	}
}
