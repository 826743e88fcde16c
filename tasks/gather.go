package tasks

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/shell"
	"github.com/breakglass/breakglass/internal/sshdconf"
)

// The user facts' shared prelude: what every user's query in one round
// trip shares (getent of every user, the host's day, and sshd -T when it
// cannot differ between users), written once by the engine before them
// (engine.Shared).

// userShared is the Shared of every UserFactsQuery.
var userShared = &engine.Shared{
	Prelude: func(c Conn, f *Facts, qs []Query) string {
		return factsPrelude(c, knownFacts(c, f), queryUsers(qs)...)
	},
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

// knownFacts returns what the facts f gathered earlier in this run tell: sshd
// -T's output for this run's connection when it is the same for every
// user, and the host's day.
func knownFacts(conn Conn, f *Facts) known {
	var k known
	if f == nil {
		return k
	}
	prefix := UserFactsKey("")
	f.Range(func(key string, v any) bool {
		uf, ok := v.(*UserFacts)
		if !ok || !strings.HasPrefix(key, prefix) {
			return true
		}
		if uf.sshdShared != "" && uf.Conn == conn {
			k.sshd = uf.sshdShared
		}
		k.today = max(k.today, uf.Today)
		return true
	})
	return k
}

// queryUsers names the users whose facts qs gather.
func queryUsers(qs []Query) []string {
	var users []string
	for _, q := range qs {
		if name, ok := strings.CutPrefix(q.Key, UserFactsKey("")); ok {
			users = append(users, name)
		}
	}
	return users
}
