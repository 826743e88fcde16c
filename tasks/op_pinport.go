package tasks

import (
	"context"
	"fmt"

	"github.com/breakglass/breakglass/internal/engine"
)

// pinPortOp checks that another port of the host presents the host key
// verified on the run's connection, through the run's dialer (PortPinner;
// where the dialer is none, as in unit tests, it does nothing). With
// Record it adds [addr]:port to the run's known_hosts file when missing;
// without, it only looks, and reports the missing entry as a change.
type pinPortOp struct {
	// Task names the task in its errors ("secondary_sshd breakglass").
	Task string
	Addr string // "": the host's own address
	Port int
	// Record adds the entry when missing (never in check mode).
	Record bool
	// Found, when set, turns what the lookup found into findings: the
	// command that uses the port, or that it is not listed. Finds says
	// which, for golden plans.
	Found func(engine.PortPin) []Finding
	Finds string
}

// String describes the lookup.
func (o *pinPortOp) String() string {
	addr := o.Addr
	if addr == "" {
		addr = "the host's address"
	}
	what := "look up"
	if o.Record {
		what = "pin (record when missing)"
	}
	s := fmt.Sprintf("known_hosts: %s %s port %d: the host key verified on the main connection (%s)\n", what, addr, o.Port, o.Task)
	if o.Finds != "" {
		s += "findings: " + o.Finds + "\n"
	}
	return s
}

// ReadOnly: without Record the op only reads the port's host key.
func (o *pinPortOp) ReadOnly() bool { return !o.Record }

// Planned: whether a key is recorded is known only when the port answers.
func (*pinPortOp) Planned() []Change { return nil }

func (o *pinPortOp) Run(ctx context.Context, _ Runner, env *Env, res *Result) error {
	pinner, ok := env.Dial.(engine.PortPinner)
	if !ok {
		return nil
	}
	pin, err := pinner.PinPort(ctx, o.Addr, o.Port, o.Record)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Task, err)
	}
	if pin.Recorded || !o.Record && !pin.Present {
		res.Changed = true
		res.Changes = append(res.Changes, Change{What: fmt.Sprintf("record %s in %s (%s, the host key verified on the main connection)", pin.Host, pin.KnownHosts, pin.Key)})
	}
	if o.Found != nil {
		res.Findings = append(res.Findings, o.Found(pin)...)
	}
	return nil
}
