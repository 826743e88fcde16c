package tasks

import (
	"context"
	"fmt"
	"slices"
)

// Plan is what a module will do on one host, decided from gathered facts
// alone: the module does no I/O to make it. Executing it (execute) is the
// same for every planning module: the guard, then the steps in one round
// trip or queued in the runner's batch, then the facts the steps changed.
type Plan struct {
	// Steps are the changes, in order; none when the host is as wanted.
	Steps []hostStep
	// Stale names the facts the steps make stale: forgotten once they ran
	// (or failed: the host may have changed).
	Stale []string
	// Known, when set, holds facts whose values after the steps the
	// module knows exactly: kept (not read again) once the steps
	// complete, forgotten when they do not. It replaces Stale.
	Known map[string]any
	// Guard, when set, is proven before the steps outside check mode and
	// stops them when it fails: the lockout guard of a removal.
	Guard *Guard
	// Ops are the plan's operations that are not shell steps, run after
	// the steps in order: a transaction, fresh logins, one script whose
	// output is judged. A plan with ops never joins a batch.
	Ops []Op
	// Findings are what the plan found from the facts alone (audit mode,
	// accounts the task relies on).
	Findings []Finding
}

// Op is one typed operation of a plan beyond its shell steps. Each kind
// is data (what to run, what to prove, how to read the answer); run is
// how the executor carries it out on one host, adding what it did to res.
type Op interface {
	// String describes the op, for golden plans (never a secret).
	String() string
	// ReadOnly reports whether the op changes nothing on any host, so it
	// runs in check mode too (fresh logins, a known_hosts lookup).
	ReadOnly() bool
	run(ctx context.Context, r Runner, env *Env, res *Result) error
}

// planned is an op that knows from the plan alone what it changes (a
// transaction's files): check mode, which does not run it, reports those
// changes. Its run reports them itself, once they are made.
type planned interface {
	Op
	planned() []Change
}

// Guard is the lockout guard of a change that takes ways in away (a
// user's removal, a break-glass key's): before it is made, fresh logins on
// the direct path must prove that the control user and env.MinWorking of
// the playbook's break-glass logins, LeftOut left out, still get in. With
// no min_working there is nothing to prove.
type Guard struct {
	// LeftOut are the break-glass logins the change takes away.
	LeftOut []Login
	// Refusal starts the error when the proof fails: what is not done
	// and why it matters ("user bg-old: not removed").
	Refusal string
}

// prove runs the guard's fresh logins; its error says why the change was
// refused.
func (g *Guard) prove(ctx context.Context, env *Env) error {
	if env.MinWorking <= 0 {
		return nil
	}
	if env.Dial == nil {
		return fmt.Errorf("%s: no way to open fresh logins here, so the ways in left afterwards could not be proven", g.Refusal)
	}
	if err := proveWithout(ctx, env, func(l Login) bool { return slices.Contains(g.LeftOut, l) }); err != nil {
		return fmt.Errorf("%s: without it %w", g.Refusal, err)
	}
	return nil
}

// planner is a playbook module: it plans from facts with no I/O. Every
// module of this package is one; the runner executes their plans through
// Executor.
type planner interface {
	Module
	// queries returns the facts the plan reads, for connection c (Queries
	// is queries(Conn{}), where the script learns the connection itself).
	queries(c Conn) []Query
	// plan returns the plan from facts, the values of queries in order.
	plan(env *Env, facts []any) (*Plan, error)
	// sshdFacts reports whether the plan needs the user facts' sshd
	// settings for this connection (gathered again when they are for
	// another).
	sshdFacts() bool
}

// execute reports p's changes and, unless in check mode, runs its guard
// and its steps (see applySteps).
func execute(ctx context.Context, r Runner, env *Env, p *Plan) (*Result, error) {
	if p.Guard != nil && len(p.Steps) > 0 && !env.Check {
		if err := p.Guard.prove(ctx, env); err != nil {
			return nil, err
		}
	}
	var res *Result
	var err error
	if p.Known != nil {
		res, err = applyStepsKnowing(ctx, r, env, p.Steps, p.Known)
	} else {
		res, err = applySteps(ctx, r, env, p.Steps, p.Stale...)
	}
	if err != nil || len(p.Ops) == 0 && len(p.Findings) == 0 {
		return res, err
	}
	res.Findings = append(res.Findings, p.Findings...)
	for _, op := range p.Ops {
		if env.Check && !op.ReadOnly() {
			if c, ok := op.(planned); ok && len(c.planned()) > 0 {
				res.Changed = true
				res.Changes = append(res.Changes, c.planned()...)
			}
			continue
		}
		if err := op.run(ctx, r, env, res); err != nil {
			return res, err
		}
	}
	return res, nil
}
