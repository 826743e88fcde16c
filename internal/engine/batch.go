package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/wire"
)

// MayBatch reports whether p's steps may join a batch with other tasks':
// when it has only shell steps: no guard (a removal's guard proves the
// remaining ways in with fresh logins, so every earlier change must be
// made first), no ops, and no looking Again (which runs at once, so what
// is queued must run before it). The executor queues such
// plans' steps so that the changes of consecutive tasks reach the host in
// one round trip; a task is planned only once the queued steps make none
// of its facts stale (the runner flushes first otherwise, see
// Executor.Stale), so planning always sees the host as it is, never a
// guess of what queued steps will do.
func (p *Plan) MayBatch() bool { return p.Guard == nil && len(p.Ops) == 0 && !p.Again }

// ErrNotRun is the outcome of a queued task whose steps never ran because
// a step of an earlier task in the same round trip failed.
var ErrNotRun = errors.New("not run: a change of an earlier task in the same round trip failed")

// stepBatch holds the queued steps of one host's tasks, in order.
type stepBatch struct {
	entries []batchEntry
	stale   map[string]bool
	// Want, when set, says which stale facts later tasks will read: only
	// those are read again in the flush's round trip (the others are only
	// forgotten). Unset: all of them.
	Want func(key string) bool
}

type batchEntry struct {
	task      int
	steps     []Step
	staleKeys []string
	// known are facts already set to what the steps will leave: kept when
	// the steps complete, forgotten when they do not.
	known []string
	res   *Result
}

// TaskOutcome is what became of one queued task when the batch ran.
type TaskOutcome struct {
	Task   int     // the task id it was queued under (Executor.Execute)
	Result *Result // the changes that completed
	Err    error   // nil when all its steps completed
}

func (b *stepBatch) add(task int, steps []Step, staleKeys []string, res *Result) {
	if b.stale == nil {
		b.stale = map[string]bool{}
	}
	for _, k := range staleKeys {
		b.stale[k] = true
	}
	b.entries = append(b.entries, batchEntry{task: task, steps: steps, staleKeys: staleKeys, res: res})
}

func (b *stepBatch) addKnown(task int, steps []Step, predicted map[string]any, res *Result) {
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

// pending reports whether steps are queued.
func (b *stepBatch) pending() bool { return b != nil && len(b.entries) > 0 }

// stales reports whether queued steps make any fact of qs stale.
func (b *stepBatch) stales(qs []Query) bool {
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

// flush runs every queued step in one round trip, in order, stopping at
// the first that fails, then reads the changed users' facts again in the
// same round trip. It forgets every stale fact (the host may have changed
// even when a step failed), empties the batch and returns one outcome per
// queued task: the tasks before the failing one completed, the failing one
// holds the changes that completed and an error naming the one that did
// not, and the tasks after it get ErrNotRun.
func (b *stepBatch) flush(ctx context.Context, r Runner, env *Env) []TaskOutcome {
	entries := b.entries
	var stale []string
	for _, e := range entries {
		stale = append(stale, e.staleKeys...)
	}
	b.entries, b.stale = nil, nil
	outcomes := make([]TaskOutcome, len(entries))
	for i, e := range entries {
		outcomes[i] = TaskOutcome{Task: e.task, Result: e.res}
	}
	if len(entries) == 0 {
		return outcomes
	}
	fail := func(from int, err error) []TaskOutcome {
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
			if s.OKLine != "" {
				// The step's output is its report; the step completed
				// only when it holds OKLine (bg_reported_step,
				// apply_prelude.sh).
				script.WriteString(fmt.Sprintf("bg_step() {\n%s\n}\nbg_reported_step %s", s.Cmd, shell.Quote(s.OKLine)))
				script.End(i, "$bg_rc")
				script.WriteString(`[ "$bg_rc" = 0 ] || exit 1`)
			} else {
				script.WriteString(s.Cmd)
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
		writeQueries(script, env, refresh)
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
		outcomes[i].Err = fmt.Errorf("%s: %w", e.steps[done].Change.What, runErr)
		if st := e.steps[done]; st.Unfinished != "" {
			outcomes[i].Err = fmt.Errorf("%s: %s: %w", st.Change.What, st.Unfinished, runErr)
		}
		if st := e.steps[done]; st.Report != nil {
			if p := parts[global]; p.Done {
				if err := st.Report(p.Out); err != nil {
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

// queued reports whether task has steps in the batch.
func (b *stepBatch) queued(task int) bool {
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
