package engine

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/breakglass/breakglass/internal/wire"
)

// Gathering facts: the queries of several tasks in one round trip (one
// wire framing, after the preludes queries of one kind share), the cache
// they land in (Env.Facts), and the facts read again after a batch of
// changes in the same round trip.

// Shared is what the queries of one kind share in a round trip (the user
// facts' getent of every user and sshd -T): a Query whose Shared is set
// runs after Prelude, which the round trip writes once for all of them.
type Shared struct {
	// Prelude returns the start of a script that runs qs, the queries of
	// the round trip with this Shared, on connection c; f holds the
	// facts gathered so far (what they tell need not be computed again).
	Prelude func(c Conn, f *Facts, qs []Query) string
}

// SSHDView is a fact that holds sshd's effective configuration as sshd
// -T -C printed it for one connection (a user's facts). The login gate
// reads PerSourcePenalties from it and the prover MaxStartups; a plan
// that needs facts for this run's connection (Planner.ConnFacts) has it
// gathered again when it was for another.
type SSHDView interface {
	// SSHDSetting returns keyword's value (lower case, as sshd -T prints
	// it); known is false when the configuration could not be read for
	// the connection.
	SSHDSetting(keyword string) (value string, known bool)
	// SSHDConn is the connection the configuration was read for.
	SSHDConn() Conn
}

// StartupLimits is a fact that read sshd's MaxStartups and
// PerSourceMaxStartups from the daemon's own configuration (the sshd
// module's facts): the prover bounds its logins at once by it first.
type StartupLimits interface {
	StartupLimits() (maxStartups, perSource string)
}

// Rereader is a fact worth reading again in the round trip of the steps
// that made it stale (a user's facts, which that user's later tasks
// read): Reread returns its query for connection c.
type Rereader interface {
	Reread(c Conn) Query
}

// gatherPrelude starts every round trip of queries (gather_prelude.sh).
//
//go:embed gather_prelude.sh
var gatherPrelude string

// writeQueries adds qs to script, each one a part of the wire framing,
// after the preludes of their kinds (Shared).
func writeQueries(script *wire.Script, env *Env, qs []Query) {
	script.WriteString(gatherPrelude)
	var kinds []*Shared
	groups := map[*Shared][]Query{}
	for _, q := range qs {
		if q.Shared == nil {
			continue
		}
		if _, ok := groups[q.Shared]; !ok {
			kinds = append(kinds, q.Shared)
		}
		groups[q.Shared] = append(groups[q.Shared], q)
	}
	for _, k := range kinds {
		script.WriteString(k.Prelude(env.Conn(), env.Facts, groups[k]))
	}
	for _, q := range qs {
		script.Part(q.Script)
	}
}

// runQueries runs qs in one round trip and returns each one's part of
// the answer.
func runQueries(ctx context.Context, r Runner, env *Env, qs []Query) ([]wire.Part, error) {
	script, err := wire.New()
	if err != nil {
		return nil, err
	}
	writeQueries(script, env, qs)
	out, err := r.Run(ctx, "/bin/sh -s", script.Bytes())
	if err != nil {
		return nil, err
	}
	return script.Split(out), nil
}

// staleFor reports whether v holds sshd's view for another connection
// than c (only a complete c can tell).
func staleFor(v any, c Conn) bool {
	sv, ok := v.(SSHDView)
	return ok && c.Complete() && sv.SSHDConn() != c
}

// gatherFacts returns the values of qs: from env.Facts when gathered already
// (and, with needConn, gathered for this run's connection), the rest in
// one round trip.
func gatherFacts(ctx context.Context, r Runner, env *Env, needConn bool, qs ...Query) ([]any, error) {
	if env.Facts == nil {
		env.Facts = &Facts{}
	}
	conn := env.Conn()
	vals := make([]any, len(qs))
	var miss []int
	seen := map[string]int{}
	for i, q := range qs {
		if j, dup := seen[q.Key]; dup {
			vals[i] = j // resolved below
			continue
		}
		seen[q.Key] = i
		if v, ok := env.Facts.Get(q.Key); ok && !(needConn && staleFor(v, conn)) {
			vals[i] = v
			continue
		}
		miss = append(miss, i)
	}
	if len(miss) > 0 {
		var missing []Query
		for _, i := range miss {
			missing = append(missing, qs[i])
		}
		parts, err := runQueries(ctx, r, env, missing)
		if err != nil {
			return nil, fmt.Errorf("gather %s: %w", qs[miss[0]].Key, err)
		}
		for j, i := range miss {
			p := parts[j]
			switch {
			case !p.Begun:
				return nil, fmt.Errorf("gather %s: no output", qs[i].Key)
			case !p.Done:
				return nil, fmt.Errorf("gather %s: truncated output", qs[i].Key)
			case p.Status != 0:
				return nil, fmt.Errorf("gather %s: exit status %d", qs[i].Key, p.Status)
			}
			v, err := qs[i].Parse(p.Out)
			if err != nil {
				return nil, fmt.Errorf("gather %s: %w", qs[i].Key, err)
			}
			env.Facts.Set(qs[i].Key, v)
			vals[i] = v
		}
	}
	for i, q := range qs {
		if j := seen[q.Key]; j != i {
			vals[i] = vals[j]
		}
	}
	return vals, nil
}

// refreshQueries are the queries that read again the facts under the
// stale keys that are worth it (Rereader); other stale facts are only
// forgotten.
func refreshQueries(env *Env, staleKeys []string) []Query {
	if env.Facts == nil {
		return nil
	}
	var qs []Query
	for _, k := range staleKeys {
		v, _ := env.Facts.Get(k)
		if rr, ok := v.(Rereader); ok {
			if q := rr.Reread(env.Conn()); q.Key == k {
				qs = append(qs, q)
			}
		}
	}
	return qs
}

// storeRefreshed parses the facts printed after the apply steps and keeps
// those that parse; the others stay forgotten and are gathered again when
// needed.
func storeRefreshed(env *Env, qs []Query, parts []wire.Part) {
	for i, q := range qs {
		if !parts[i].OK() {
			continue
		}
		if v, err := q.Parse(parts[i].Out); err == nil {
			env.Facts.Set(q.Key, v)
		}
	}
}
