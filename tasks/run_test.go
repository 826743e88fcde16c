package tasks

import (
	"context"
	"fmt"

	"github.com/breakglass/breakglass/internal/engine"
)

// runModule runs one task as the runner would with no other task: a
// module's facts are gathered, its plan made and executed (its steps
// flushed at once), a Program runs itself.
func runModule(ctx context.Context, r Runner, env *Env, m Module) (*Result, error) {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	switch m := m.(type) {
	case engine.Planner:
		x := engine.NewExecutor(r, env)
		p, err := x.Plan(ctx, m)
		if err != nil {
			return nil, err
		}
		return executePlan(ctx, x, m, p)
	case Program:
		return m.Run(ctx, r, env)
	}
	return nil, fmt.Errorf("%T neither plans nor runs", m)
}

// executePlan executes p, m's plan, on x and flushes its steps at once.
func executePlan(ctx context.Context, x *engine.Executor, m engine.Planner, p *Plan) (*Result, error) {
	res, queued, err := x.Execute(ctx, 0, m, p)
	if queued {
		oc := x.Flush(ctx, nil)[0]
		return oc.Result, oc.Err
	}
	return res, err
}

// applySteps executes a plan of steps alone, the facts under staleKeys
// forgotten (and those worth it read again) once they ran.
func applySteps(ctx context.Context, r Runner, env *Env, steps []hostStep, staleKeys ...string) (*Result, error) {
	return executePlan(ctx, engine.NewExecutor(r, env), nil, &Plan{Steps: engineSteps(steps), Stale: staleKeys})
}

// factsOnly is a planner that plans nothing: Plan keeps the facts it was
// given, so a test gathers facts exactly as a module's plan would.
type factsOnly struct {
	qs       []Query
	needConn bool
	got      []any
}

func (f *factsOnly) PlanQueries(Conn) []Query { return f.qs }
func (f *factsOnly) ConnFacts() bool          { return f.needConn }
func (f *factsOnly) Plan(_ *Env, facts []any) (*Plan, error) {
	f.got = facts
	return &Plan{}, nil
}

// gatherFacts returns the values of qs as a module's plan gets them: from
// env.Facts when gathered already (for this run's connection, with
// needConn), the rest in one round trip.
func gatherFacts(ctx context.Context, r Runner, env *Env, needConn bool, qs ...Query) ([]any, error) {
	f := &factsOnly{qs: qs, needConn: needConn}
	if _, err := engine.NewExecutor(r, env).Plan(ctx, f); err != nil {
		return nil, err
	}
	return f.got, nil
}

// gatherUserFacts returns the facts of users names, gathered for this run's
// connection when needSSHD.
func gatherUserFacts(ctx context.Context, r Runner, env *Env, needSSHD bool, names ...string) ([]*UserFacts, error) {
	qs := make([]Query, len(names))
	for i, n := range names {
		qs[i] = UserFactsQuery(n, env.Conn())
	}
	vals, err := gatherFacts(ctx, r, env, needSSHD, qs...)
	if err != nil {
		return nil, err
	}
	out := make([]*UserFacts, len(vals))
	for i, v := range vals {
		uf, ok := v.(*UserFacts)
		if !ok {
			return nil, fmt.Errorf("fact %s holds %T, not user facts", qs[i].Key, v)
		}
		out[i] = uf
	}
	return out, nil
}
