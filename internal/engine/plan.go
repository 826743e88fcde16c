package engine

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
	Steps []Step
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
	// Again, when set, means the facts could not tell enough to plan the
	// task yet: once the ops ran, the Stale facts are forgotten, gathered
	// again and the task planned once more (the emergency sshd's /run/sshd,
	// without which sshd -T cannot say what the main sshd serves). The
	// second plan may not ask again.
	Again bool
}

// Op is one typed operation of a plan beyond its shell steps. Each kind
// is data (what to run, what to prove, how to read the answer); Run is
// how the executor carries it out on one host, adding what it did to res.
type Op interface {
	// String describes the op, for golden plans (never a secret).
	String() string
	// ReadOnly reports whether the op changes nothing on any host, so it
	// runs in check mode too (fresh logins, a known_hosts lookup).
	ReadOnly() bool
	// Planned returns what the op will change, as far as the plan knows
	// (a transaction's files, the command it runs): check mode, which does
	// not run an op that changes the host, reports these. Run reports what
	// it changed itself, once it is made.
	Planned() []Change
	// Run carries the op out on the host r runs commands on, adding
	// what it did to res.
	Run(ctx context.Context, r Runner, env *Env, res *Result) error
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
	// Doubt names the users whose facts showed a lockout cause when the
	// plan was made, with the cause: their logins go last (see Doubt).
	Doubt Doubt
}

// Prove runs the guard's fresh logins; its error says why the change was
// refused.
func (g *Guard) Prove(ctx context.Context, env *Env) error {
	if env.MinWorking <= 0 {
		return nil
	}
	if env.Dial == nil {
		return fmt.Errorf("%s: no way to open fresh logins here, so the ways in left afterwards could not be proven", g.Refusal)
	}
	if err := proveWithout(ctx, env, g.Doubt, func(l Login) bool { return slices.Contains(g.LeftOut, l) }); err != nil {
		return fmt.Errorf("%s: without it %w", g.Refusal, err)
	}
	return nil
}

// Planner is a task that plans from facts with no I/O (every playbook
// module, package tasks): the executor gathers the facts it names and
// carries out the plan it returns.
type Planner interface {
	// PlanQueries returns the facts the plan reads, for connection c.
	PlanQueries(c Conn) []Query
	// Plan returns the plan from facts, the values of PlanQueries in
	// order. It does no I/O: facts in, plan out.
	Plan(env *Env, facts []any) (*Plan, error)
	// ConnFacts reports whether the plan needs facts as sshd sees them
	// from this run's connection (SSHDView), gathered again when they are
	// for another.
	ConnFacts() bool
}

// join returns res after r: their changes, findings and logins in order.
func (r *Result) join(res *Result) *Result {
	if res == nil {
		return r
	}
	return &Result{
		Changed:    r.Changed || res.Changed,
		Changes:    append(slices.Clip(r.Changes), res.Changes...),
		Findings:   append(slices.Clip(r.Findings), res.Findings...),
		Access:     append(slices.Clip(r.Access), res.Access...),
		RolledBack: r.RolledBack || res.RolledBack,
	}
}

// execute reports p's changes and, unless in check mode, runs its guard
// and its steps (see applySteps).
func execute(ctx context.Context, r Runner, env *Env, p *Plan) (*Result, error) {
	if p.Guard != nil && len(p.Steps)+len(p.Ops) > 0 && !env.Check {
		if err := p.Guard.Prove(ctx, env); err != nil {
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
			if ch := op.Planned(); len(ch) > 0 {
				res.Changed = true
				res.Changes = append(res.Changes, ch...)
			}
			continue
		}
		if err := op.Run(ctx, r, env, res); err != nil {
			return res, err
		}
	}
	return res, nil
}
