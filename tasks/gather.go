package tasks

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
	"github.com/breakglass/breakglass/internal/wire"
)

// Gathering facts: the queries of several tasks in one round trip (one
// wire framing, after the shared prelude of user-facts queries), the
// cache they land in (Env.Facts), and the facts read again after a batch
// of changes in the same round trip.

// runQueries runs qs in one round trip, each one a part of the wire
// framing after the prelude user-facts queries share, and returns each
// one's part of the answer.
func runQueries(ctx context.Context, r Runner, env *Env, qs []Query) ([]wire.Part, error) {
	script, err := wire.New()
	if err != nil {
		return nil, err
	}
	script.WriteString(factsPrelude(env.Conn(), knownFacts(env), queryUsers(qs)...))
	for _, q := range qs {
		script.Part(q.Script)
	}
	out, err := r.Run(ctx, "/bin/sh -s", script.Bytes())
	if err != nil {
		return nil, err
	}
	return script.Split(out), nil
}

// gatherFacts returns the values of qs: from env.Facts when gathered already
// (and, with needSSHD, gathered for this run's connection), the rest in
// one round trip.
func gatherFacts(ctx context.Context, r Runner, env *Env, needSSHD bool, qs ...Query) ([]any, error) {
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
		if v, ok := env.Facts.Get(q.Key); ok {
			if uf, isUser := v.(*UserFacts); !isUser || !needSSHD || !uf.staleFor(conn) {
				vals[i] = v
				continue
			}
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

// refreshQueries are the user-facts queries of the stale keys that name a
// user; other stale facts are only forgotten.
func refreshQueries(env *Env, staleKeys []string) []Query {
	if env.Facts == nil {
		return nil
	}
	var qs []Query
	for _, k := range staleKeys {
		if name, ok := strings.CutPrefix(k, "user:"); ok && shell.ValidUser(name) == nil {
			qs = append(qs, UserFactsQuery(name, env.Conn()))
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

// UserFactsPrelude is the start of every script that gathers user facts: it
// sets what all of them share, so that each user's query need not compute
// it again. c is this run's connection as sshd sees it (the queries learn
// it from the session when it is incomplete). sshdOut is sshd -T's output
// already known to be the same for every user (see sharedSSHD), or "".
//
// When c is complete and no configuration file sshd reads has a Match
// block, sshd's effective configuration is the same for every user and
// connection, so sshd -T runs once here instead of once per user. Anything
// the check (sshdconf.Shell's bg_sshd_nomatch) cannot be sure of (a quoted
// Include, an unreadable file, includes deeper than sshd allows) counts as
// a Match block: the queries then run sshd -T themselves.
func UserFactsPrelude(c Conn, users ...string) string {
	return factsPrelude(c, known{}, users...)
}

// known is what earlier facts of the host tell a later prelude.
type known struct {
	sshd  string // sshd -T's output, the same for every user
	today int64
}

func factsPrelude(c Conn, k known, users ...string) string {
	var b strings.Builder
	if c.Complete() {
		fmt.Fprintf(&b, "bg_client=%s bg_server=%s bg_port=%d\n", shell.Quote(c.Client), shell.Quote(c.Server), c.Port)
	} else {
		b.WriteString("bg_client= bg_server= bg_port=\n")
	}
	// Every user's passwd and shadow entry in one getent each, when
	// there are several.
	var names []string
	for _, u := range users {
		if shell.ValidUser(u) == nil && !slices.Contains(names, u) {
			names = append(names, u)
		}
	}
	if len(names) > 1 {
		fmt.Fprintf(&b, "bg_pw_list=%s\n", shell.Quote(strings.Join(names, " ")))
	} else {
		b.WriteString("bg_pw_list=\n")
	}
	if k.today > 0 {
		fmt.Fprintf(&b, "bg_today=%d\n", k.today)
	} else {
		b.WriteString("bg_today=\n")
	}
	shared := k.sshd != "" && c.Complete()
	if shared {
		fmt.Fprintf(&b, "bg_sshd_shared=1 bg_sshd_out=%s\n", shell.Quote(k.sshd))
	}
	b.WriteString(factsPreludeScript)
	if !shared {
		b.WriteString(sshdconf.Shell)
		b.WriteString(sshdSharedScript)
	}
	return b.String()
}

// factsPreludeScript is facts_prelude.sh, the fixed part of the facts
// prelude after its header.
//
//go:embed facts_prelude.sh
var factsPreludeScript string

// sshdSharedScript sets bg_sshd_shared=1 and bg_sshd_out to sshd -T's
// output when it cannot depend on the user: no Match block in the files
// sshd reads (sshdconf.Shell's bg_sshd_nomatch).
//
//go:embed sshd_shared.sh
var sshdSharedScript string

// knownFacts returns what facts gathered earlier in this run tell: sshd
// -T's output for this run's connection when it is the same for every
// user, and the host's day.
func knownFacts(env *Env) known {
	var k known
	if env.Facts == nil {
		return k
	}
	conn := env.Conn()
	env.Facts.mu.Lock()
	defer env.Facts.mu.Unlock()
	prefix := UserFactsKey("")
	for key, v := range env.Facts.data {
		uf, ok := v.(*UserFacts)
		if !ok || !strings.HasPrefix(key, prefix) {
			continue
		}
		if uf.sshdShared != "" && uf.Conn == conn {
			k.sshd = uf.sshdShared
		}
		k.today = max(k.today, uf.Today)
	}
	return k
}

// QueryUsers names the users whose facts qs gather.
func queryUsers(qs []Query) []string {
	var users []string
	for _, q := range qs {
		if name, ok := strings.CutPrefix(q.Key, UserFactsKey("")); ok {
			users = append(users, name)
		}
	}
	return users
}
