package tasks

import (
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
)

// TestProofDoubtFromFacts: what a change's proof tries last is decided
// when the change is planned, from the facts the run gathered: a
// break-glass user whose facts show a lockout cause (here: no such user)
// is in the plan's Doubt, for the sshd transaction's proof and for a
// removal's guard alike, and a user whose facts show none is not.
func TestProofDoubtFromFacts(t *testing.T) {
	env := &Env{ControlUser: "admin", MinWorking: 1, Facts: &Facts{},
		Logins: []Login{{User: "gone", KeyFile: "/k"}, {User: "alice", KeyFile: "/k"}, {User: "bg-ops2", KeyFile: "/k"}}}
	env.Facts.Set(UserFactsKey("gone"), &UserFacts{Name: "gone"})
	env.Facts.Set(UserFactsKey("alice"), recordedFacts(t, "existing", "alice"))
	want := engine.Doubt{"gone": "no such user"}

	f := parseSSHDFactsT(t, sshdFactsOut(debianMain, nil, ""))
	p, err := mustSSHD(t, `{settings: {LogLevel: VERBOSE}}`).Plan(env, []any{f})
	if err != nil || len(p.Ops) != 1 {
		t.Fatalf("sshd plan: %v %+v", err, p)
	}
	if tc, ok := p.Ops[0].(*engine.TxnChange); !ok || tc.Doubt.String() != want.String() {
		t.Errorf("sshd transaction: doubt %v, want %v", p.Ops[0], want)
	}
	if g := mustUser(t, `{name: bg-ops2, state: absent}`).removalGuard(env); g.Doubt.String() != want.String() {
		t.Errorf("removal guard: doubt %v, want %v", g.Doubt, want)
	}
}
