package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/wire"
)

// againPlanner plans to look again as many times as again says, counting
// its gathers by the fact's value.
type againPlanner struct{ again int }

func (*againPlanner) PlanQueries(Conn) []Query {
	return []Query{{Key: "n", Script: "echo gathered\n", Parse: func(out []byte) (any, error) { return string(out), nil }}}
}
func (*againPlanner) ConnFacts() bool { return false }
func (a *againPlanner) Plan(_ *Env, facts []any) (*Plan, error) {
	p := &Plan{Ops: []Op{seenOp("seen " + strings.TrimSpace(facts[0].(string)))}, Stale: []string{"n"}}
	if a.again > 0 {
		a.again--
		p.Again = true
	}
	return p, nil
}

// seenOp reports one change and runs nothing on the host.
type seenOp string

func (o seenOp) String() string    { return string(o) }
func (seenOp) ReadOnly() bool      { return false }
func (o seenOp) Planned() []Change { return []Change{{What: string(o)}} }
func (o seenOp) Run(_ context.Context, _ Runner, _ *Env, res *Result) error {
	res.Changed, res.Changes = true, append(res.Changes, Change{What: string(o)})
	return nil
}

// gatherCounter answers each fact batch with "gather N".
type gatherCounter struct{ n int }

func (g *gatherCounter) Run(_ context.Context, _ string, stdin []byte) ([]byte, error) {
	nonce, bodies, _ := wire.Parse(stdin)
	g.n++
	var out strings.Builder
	for i := range bodies {
		out.WriteString(wire.Reply(nonce, i, strings.Repeat("I", g.n), 0))
	}
	return []byte(out.String()), nil
}

// A plan that asks to look again is planned once more from facts
// gathered again, its result after the first's; a second ask is an error,
// never a loop.
func TestExecuteLooksAgainOnce(t *testing.T) {
	g := &gatherCounter{}
	res, err := runPlanner(context.Background(), g, &Env{Facts: &Facts{}}, &againPlanner{again: 1})
	if err != nil || changesOf(res) != "seen I; seen II" || !res.Changed {
		t.Errorf("looked again once: res %+v err %v", res, err)
	}
	g = &gatherCounter{}
	res, err = runPlanner(context.Background(), g, &Env{Facts: &Facts{}}, &againPlanner{again: 5})
	if err == nil || !strings.Contains(err.Error(), "asks to look again") || g.n != 2 || changesOf(res) != "seen I" {
		t.Errorf("asked twice: %d gathers, res %+v err %v", g.n, res, err)
	}
}

// runPlanner runs one task as the runner would with no other task: its
// facts gathered, its plan made and executed, its steps flushed at once.
func runPlanner(ctx context.Context, r Runner, env *Env, m Planner) (*Result, error) {
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
}

// changesOf lists a result's changes, "; " between them.
func changesOf(res *Result) string {
	if res == nil {
		return ""
	}
	var s []string
	for _, c := range res.Changes {
		s = append(s, c.What)
	}
	return strings.Join(s, "; ")
}

// TestGuardBeforeOps: a plan's guard is proven before its ops run, also
// when it has no steps: a guard that fails stops the ops.
func TestGuardBeforeOps(t *testing.T) {
	op := &runOp{}
	env := &Env{ControlUser: "admin", MinWorking: 1, Facts: &Facts{}} // no dialer: the proof fails
	p := &Plan{Guard: &Guard{Refusal: "op not run"}, Ops: []Op{op}}
	_, _, err := NewExecutor(&fakeHost{}, env).Execute(context.Background(), 0, nil, p)
	if err == nil || !strings.HasPrefix(err.Error(), "op not run: ") || op.ran {
		t.Errorf("err %v, op ran %v: want the guard's refusal and the op not run", err, op.ran)
	}
}

// runOp records that it ran.
type runOp struct{ ran bool }

func (*runOp) String() string    { return "run" }
func (*runOp) ReadOnly() bool    { return false }
func (*runOp) Planned() []Change { return nil }
func (o *runOp) Run(context.Context, Runner, *Env, *Result) error {
	o.ran = true
	return nil
}
