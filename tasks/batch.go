package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
)

// Batchable is implemented by modules whose changes are shell steps
// planned from gathered facts (user, authorized_key, ssh_permissions, and
// sudoers, whose whole transaction is one step): with
// Env.Batch set they queue their steps instead of running them, so that
// the changes of consecutive tasks reach the host in one round trip.
//
// A task may be queued only when the facts it plans from (its Queries)
// are not made stale by steps already queued: the runner flushes the batch
// first otherwise, and before any task that is not Batchable. Planning
// therefore always sees the host as it is, never a guess of what queued
// steps will do.
type Batchable interface {
	Gatherer
	// mayBatch reports whether this task may be queued. A removal (a user,
	// exclusive or absent keys) may not: its guard proves the remaining
	// ways in with fresh logins, so every earlier change must be made
	// first.
	mayBatch() bool
}

func (u *User) mayBatch() bool          { return u.State != "absent" }
func (a *AuthorizedKey) mayBatch() bool { return !a.exclusive && !a.absent }
func (*SSHPermissions) mayBatch() bool  { return true }
func (*Sudoers) mayBatch() bool         { return true }

// CanBatch reports whether m's changes may be queued: it is Batchable and
// says this task may join a batch.
func CanBatch(m Module) (Batchable, bool) {
	b, ok := m.(Batchable)
	return b, ok && b.mayBatch()
}

// ErrNotRun is the outcome of a queued task whose steps never ran because
// a step of an earlier task in the same round trip failed.
var ErrNotRun = errors.New("not run: a change of an earlier task in the same round trip failed")

// Batch holds the queued steps of one host's tasks, in order.
type Batch struct {
	entries []batchEntry
	stale   map[string]bool
	// Want, when set, says which stale facts later tasks will read: only
	// those are read again in the flush's round trip (the others are only
	// forgotten). Unset: all of them.
	Want func(key string) bool
}

type batchEntry struct {
	task      int
	steps     []hostStep
	staleKeys []string
	// known are facts already set to what the steps will leave: kept when
	// the steps complete, forgotten when they do not.
	known []string
	res   *Result
}

// BatchOutcome is what became of one queued task when the batch ran.
type BatchOutcome struct {
	Task   int     // the Env.BatchTask it was queued under
	Result *Result // the changes that completed
	Err    error   // nil when all its steps completed
}

func (b *Batch) add(task int, steps []hostStep, staleKeys []string, res *Result) {
	if b.stale == nil {
		b.stale = map[string]bool{}
	}
	for _, k := range staleKeys {
		b.stale[k] = true
	}
	b.entries = append(b.entries, batchEntry{task: task, steps: steps, staleKeys: staleKeys, res: res})
}

func (b *Batch) addKnown(task int, steps []hostStep, predicted map[string]any, res *Result) {
	known := make([]string, 0, len(predicted))
	for k := range predicted {
		known = append(known, k)
		// A fact queued steps made stale stays stale until the flush.
		if b.stale[k] {
			delete(predicted, k)
		}
	}
	b.entries = append(b.entries, batchEntry{task: task, steps: steps, known: known, res: res})
}

// Pending reports whether steps are queued.
func (b *Batch) Pending() bool { return b != nil && len(b.entries) > 0 }

// Stales reports whether queued steps make any fact of qs stale.
func (b *Batch) Stales(qs []Query) bool {
	if b == nil {
		return false
	}
	for _, q := range qs {
		if b.stale[q.Key] {
			return true
		}
	}
	return false
}

// Flush runs every queued step in one round trip, in order, stopping at
// the first that fails, then reads the changed users' facts again in the
// same round trip. It forgets every stale fact (the host may have changed
// even when a step failed), empties the batch and returns one outcome per
// queued task: the tasks before the failing one completed, the failing one
// holds the changes that completed and an error naming the one that did
// not, and the tasks after it get ErrNotRun.
func (b *Batch) Flush(ctx context.Context, r Runner, env *Env) []BatchOutcome {
	entries := b.entries
	var stale []string
	for _, e := range entries {
		stale = append(stale, e.staleKeys...)
	}
	b.entries, b.stale = nil, nil
	outcomes := make([]BatchOutcome, len(entries))
	for i, e := range entries {
		outcomes[i] = BatchOutcome{Task: e.task, Result: e.res}
	}
	if len(entries) == 0 {
		return outcomes
	}
	fail := func(from int, err error) []BatchOutcome {
		for i := from; i < len(entries); i++ {
			outcomes[i].Result = &Result{}
			outcomes[i].Err = ErrNotRun
		}
		if err != nil && from < len(entries) {
			outcomes[from].Err = err
		}
		return outcomes
	}
	script, err := wire.New()
	if err != nil {
		return fail(0, err)
	}
	script.WriteString("{\n" + applyPrelude)
	total := 0
	for _, e := range entries {
		for _, s := range e.steps {
			// Each step is a part of the script's own shell: set -e
			// stops the script in the step that fails, which then has
			// begun and not ended.
			i := script.Begin()
			if s.okLine != "" {
				// The step's output is its report; the step completed
				// only when it holds okLine.
				script.WriteString(fmt.Sprintf("bg_step() {\nset +e\n%s\n}\nbg_out=$(bg_step </dev/null) || :\nprintf '%%s' \"$bg_out\"\nbg_rc=1\ncase \"\n$bg_out\n\" in *%s*) bg_rc=0 ;; esac", s.cmd, shell.Quote("\n"+s.okLine+"\n")))
				script.End(i, "$bg_rc")
				script.WriteString(`[ "$bg_rc" = 0 ] || exit 1`)
			} else {
				script.WriteString(s.cmd)
				script.End(i, "0")
			}
			total++
		}
	}
	// Read the changed users' facts again in the same round trip, so the
	// next task need not gather them.
	wanted := dedupe(stale)
	if b.Want != nil {
		wanted = slices.DeleteFunc(wanted, func(k string) bool { return !b.Want(k) })
	}
	refresh := refreshQueries(env, wanted)
	if len(refresh) > 0 {
		script.WriteString("set +e")
		script.WriteString(factsPrelude(ConnOf(env), knownFacts(env), QueryUsers(refresh)...))
		for _, q := range refresh {
			script.Part(q.Script)
		}
	}
	script.WriteString("}")
	out, runErr := r.Run(ctx, "/bin/sh -s", script.Bytes())
	if env.Facts != nil {
		env.Facts.Delete(stale...)
	}
	parts := script.Split(out)
	done := 0
	for done < total && parts[done].OK() {
		done++
	}
	if runErr == nil && done == total {
		storeRefreshed(env, refresh, parts[total:])
		return outcomes
	}
	if env.Facts != nil {
		for _, e := range entries {
			env.Facts.Delete(e.known...)
		}
	}
	if runErr == nil {
		runErr = errors.New("the script ended early")
	}
	// Find the task whose step did not complete.
	global := done
	for i, e := range entries {
		if done >= len(e.steps) {
			done -= len(e.steps)
			continue
		}
		res := &Result{Changes: e.res.Changes[:done], Changed: done > 0}
		outcomes[i].Result = res
		fail(i+1, nil)
		outcomes[i].Err = fmt.Errorf("%s: %w", e.steps[done].change.What, runErr)
		if st := e.steps[done]; st.unfinished != "" {
			outcomes[i].Err = fmt.Errorf("%s: %s: %w", st.change.What, st.unfinished, runErr)
		}
		if st := e.steps[done]; st.report != nil {
			if p := parts[global]; p.Done {
				if err := st.report(p.Out); err != nil {
					outcomes[i].Err = err
					var rb interface{ RolledBackChange() bool }
					res.RolledBack = errors.As(err, &rb) && rb.RolledBackChange()
				}
			}
		}
		return outcomes
	}
	// Every step completed, but the run failed after them (the facts
	// read, or the connection): report it on the last task.
	outcomes[len(entries)-1].Err = runErr
	return outcomes
}

func dedupe(keys []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// Queued reports whether task has steps in the batch.
func (b *Batch) Queued(task int) bool {
	if b == nil {
		return false
	}
	for _, e := range b.entries {
		if e.task == task {
			return true
		}
	}
	return false
}
