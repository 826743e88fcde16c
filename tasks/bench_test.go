package tasks

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/breakglass/breakglass/internal/yamlx"
)

// The hot pure code of a run, per host: parsing what the facts script
// printed, and planning the example playbook's tasks from it.

func BenchmarkParseUserFacts(b *testing.B) {
	out, err := os.ReadFile(filepath.Join("testdata", "userfacts", "existing.txt"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if _, err := ParseUserFacts("alice", out); err != nil {
			b.Fatal(err)
		}
	}
}

func benchModule(b *testing.B, f Factory, src string) Module {
	b.Helper()
	n, err := yamlx.ParseFile("play.yml", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	m, err := f("play.yml", n)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPlanHost plans a user, a key and the permissions of one user
// whose key file needs a new key: what every host of a fleet costs the
// control machine beyond the network.
func BenchmarkPlanHost(b *testing.B) {
	uf := recordedFacts(b, "existing", "alice")
	missing := recordedFacts(b, "missing", "ghost")
	u := benchModule(b, NewUser, "{name: alice, shell: /bin/bash, comment: alice}").(*User)
	k := benchModule(b, NewAuthorizedKey, fmt.Sprintf("{user: alice, key: %q}", testKey(b, 2, "ops2@safe"))).(*AuthorizedKey)
	create := benchModule(b, NewUser, "{name: ghost, shell: /bin/bash}").(*User)
	shellStat := PathStat{Path: "/bin/bash", Exists: true, Mode: modeRegular | 0o755}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.planSteps(userHost{user: uf, paths: map[string]PathStat{"/bin/bash": shellStat}}, "admin"); err != nil {
			b.Fatal(err)
		}
		if _, err := create.planSteps(userHost{user: missing, paths: map[string]PathStat{"/bin/bash": shellStat}}, "admin"); err != nil {
			b.Fatal(err)
		}
		if _, err := k.planSteps(uf, authKeyRun{}); err != nil {
			b.Fatal(err)
		}
		if _, err := planPermissions([]*UserFacts{uf}, false); err != nil {
			b.Fatal(err)
		}
	}
}
