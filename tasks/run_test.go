package tasks

import (
	"context"
	"fmt"
)

// runModule runs one task as the runner would with no other task: a
// module's plan is gathered, made and executed (no batch), a Program runs
// itself.
func runModule(ctx context.Context, r Runner, env *Env, m Module) (*Result, error) {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	switch m := m.(type) {
	case planner:
		p, err := planFor(ctx, r, env, m)
		if err != nil {
			return nil, err
		}
		return execute(ctx, r, env, p)
	case Program:
		return m.Run(ctx, r, env)
	}
	return nil, fmt.Errorf("%T neither plans nor runs", m)
}
