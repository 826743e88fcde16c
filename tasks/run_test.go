package tasks

import (
	"context"
	"fmt"
)

// runModule runs one task as the runner would with no other task: a
// module's facts are gathered, its plan made and executed (its steps
// flushed at once), a Program runs itself.
func runModule(ctx context.Context, r Runner, env *Env, m Module) (*Result, error) {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	switch m := m.(type) {
	case planner:
		x := NewExecutor(r, env)
		p, err := x.Plan(ctx, m)
		if err != nil {
			return nil, err
		}
		res, queued, err := x.Execute(ctx, 0, m, p)
		if queued {
			oc := x.Flush(ctx, nil)[0]
			return oc.Result, oc.Err
		}
		return res, err
	case Program:
		return m.Run(ctx, r, env)
	}
	return nil, fmt.Errorf("%T neither plans nor runs", m)
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
