package engine

import (
	"context"
	"errors"
)

// Executor carries out plans on one host for the runner, which owns the
// order of a play: for each task, gather → plan → batch → guard → execute
// → report. The executor holds what that order needs between tasks: the
// host's facts (Env.Facts) and the steps queued for one round trip.
//
// A task that plans (a Planner: every playbook module) is run through
// Plan and Execute; any other task runs itself, after Flush.
type Executor struct {
	r     Runner
	env   *Env
	batch stepBatch
}

// NewExecutor returns the executor of plans on the host r runs commands
// on (as root) and env describes.
func NewExecutor(r Runner, env *Env) *Executor {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	return &Executor{r: r, env: env}
}

// Gather runs qs (the queries of every task of a play) in one round trip
// and keeps what it learns; a query named twice runs once. A query that
// fails is left for Plan, which runs it again and reports its error on
// the task.
func (x *Executor) Gather(ctx context.Context, qs []Query) {
	var uniq []Query
	seen := map[string]bool{}
	for _, q := range qs {
		if !seen[q.Key] {
			seen[q.Key] = true
			uniq = append(uniq, q)
		}
	}
	if len(uniq) == 0 {
		return
	}
	parts, err := runQueries(ctx, x.r, x.env, uniq)
	if err != nil {
		return
	}
	for i, part := range parts {
		if !part.OK() {
			continue
		}
		if v, err := uniq[i].Parse(part.Out); err == nil {
			x.env.Facts.Set(uniq[i].Key, v)
		}
	}
}

// Stale reports whether steps queued for the batch make a fact of qs (the
// queries a task plans from) stale: the runner flushes them before it
// plans that task.
func (x *Executor) Stale(qs []Query) bool {
	return x.batch.stales(qs)
}

// Plan returns m's plan from the host's facts: those already known, the
// others gathered in one round trip. Planning itself does no I/O.
func (x *Executor) Plan(ctx context.Context, m Planner) (*Plan, error) {
	facts, err := gatherFacts(ctx, x.r, x.env, m.ConnFacts(), m.PlanQueries(x.env.Conn())...)
	if err != nil {
		return nil, err
	}
	return m.Plan(x.env, facts)
}

// Execute carries out p, the plan of m, as task: its changes are
// reported; outside check mode its guard is proven, then its steps run —
// or, when p may join a batch, are queued (queued is then true: the
// task's outcome comes from Flush) — then its ops. The runner flushes what
// is queued before a plan that may not join the batch (MayBatch).
//
// When p asks to look Again (its ops changed what it was planned from),
// Execute forgets the facts p made stale, plans m once more and carries
// out that plan as well, never batched; the result holds both, the first
// plan's first. A second plan that asks again is an error, never a loop.
func (x *Executor) Execute(ctx context.Context, task int, m Planner, p *Plan) (res *Result, queued bool, err error) {
	env := x.env
	if !env.Check && p.MayBatch() {
		env.batch, env.batchTask = &x.batch, task
		defer func() { env.batch = nil }()
	}
	res, err = execute(ctx, x.r, env, p)
	if err != nil || !p.Again {
		return res, err == nil && x.batch.queued(task), err
	}
	env.Facts.Delete(p.Stale...)
	again, err := x.Plan(ctx, m)
	if err != nil {
		return res, false, err
	}
	if again.Again {
		return res, false, errors.New("internal error: the plan made after looking again asks to look again")
	}
	more, err := execute(ctx, x.r, env, again)
	return res.join(more), false, err
}

// Pending reports whether steps are queued.
func (x *Executor) Pending() bool { return x.batch.pending() }

// Flush runs the queued steps in one round trip and returns one outcome per
// queued task (see stepBatch.flush). Of the facts the steps make stale it
// reads again, in the same round trip, those later tasks will plan from:
// want says which (every one when want is nil).
func (x *Executor) Flush(ctx context.Context, want func(key string) bool) []TaskOutcome {
	if !x.batch.pending() {
		return nil
	}
	x.batch.Want = want
	return x.batch.flush(ctx, x.r, x.env)
}
