package tasks

import (
	"context"
	"fmt"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
)

// scriptOp runs one script on the host in one round trip and judges what
// it printed: a module's apply that is one transaction of its own on the
// host (the emergency sshd's), or a command the plan needs before it can
// look again (/run/sshd).
type scriptOp struct {
	// Task names the task in its errors ("secondary_sshd breakglass").
	Task string
	// What the script does, for golden plans ("apply", "create /run/sshd").
	What   string
	Script []byte
	// Unfinished starts the error when the script did not run to its end
	// (connection lost, killed): what it may have left, what to check.
	Unfinished string
	// Report, when set, reads the script's output: nil when it did what
	// it should; else its error, and whether the host changed even so.
	Report func(out []byte) (changed bool, err error)
	// Stale are the facts the script makes stale, forgotten once it ran
	// or failed.
	Stale []string
	// Changes are what the script changes, reported once it succeeded
	// (and, by check mode, without running it); Notes follow them.
	Changes []Change
	Notes   []Change
}

// String shows the script, its embedded function libraries (the same in
// every plan) left out by name.
func (o *scriptOp) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "script (%s: %s):\n%s", o.Task, o.What, opIndent(elideLibraries(string(o.Script))))
	for _, c := range o.Changes {
		fmt.Fprintf(&b, "changes: %s\n", c.What)
		if c.Before != "" || c.After != "" {
			fmt.Fprintf(&b, "  before: %q\n  after:  %q\n", c.Before, c.After)
		}
	}
	if len(o.Stale) > 0 {
		fmt.Fprintf(&b, "then forget: %s\n", strings.Join(o.Stale, " "))
	}
	for _, n := range o.Notes {
		fmt.Fprintf(&b, "then report: %s\n", n.What)
	}
	return b.String()
}

// ReadOnly: the script changes the host.
func (*scriptOp) ReadOnly() bool { return false }

func (o *scriptOp) Planned() []Change { return o.Changes }

// Run runs the script and reports its changes. On failure it reports
// none of them (they were not made), only whether the host changed all the
// same.
func (o *scriptOp) Run(ctx context.Context, r Runner, env *Env, res *Result) error {
	out, err := r.Run(ctx, "/bin/sh -s", o.Script)
	if env.Facts != nil {
		env.Facts.Delete(o.Stale...)
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w", o.Task, o.Unfinished, err)
	}
	if o.Report != nil {
		if changed, err := o.Report(out); err != nil {
			res.Changed = res.Changed || changed
			return fmt.Errorf("%s: %w", o.Task, err)
		}
	}
	res.Changed = res.Changed || len(o.Changes) > 0
	res.Changes = append(res.Changes, o.Changes...)
	res.Changes = append(res.Changes, o.Notes...)
	return nil
}

// scriptLibraries are the fixed function libraries scripts embed, by the
// file they come from: String names them instead of repeating them.
func scriptLibraries() [][2]string {
	return [][2]string{
		{"nofollow.sh", engine.Nofollow},
		{"resolve.sh", resolveScript},
		{"secondary.sh", secondaryFuncs},
		{"secondary_apply.sh", secondaryApplyScript},
		{"txn_prelude.sh", engine.TxnPrelude},
	}
}

// elideLibraries replaces each embedded library in script by one line
// naming it.
func elideLibraries(script string) string {
	for _, l := range scriptLibraries() {
		if l[1] == "" {
			continue
		}
		script = strings.ReplaceAll(script, l[1], "# … "+l[0]+" (embedded)\n")
	}
	return script
}

// opIndent indents each line of s by four spaces, for String.
func opIndent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}
