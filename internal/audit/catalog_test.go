package audit

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/tasks"
)

var update = flag.Bool("update", false, "rewrite docs/lockouts.md and the README's list of finding ids from Catalog")

// The README's list of ids sits between these markers.
const (
	readmeBegin = "<!-- finding-ids: generated from internal/audit/catalog.go; go test ./internal/audit -run TestCatalog -update -->\n"
	readmeEnd   = "<!-- end finding-ids -->\n"
)

const docHeader = `# Lockout causes audit names

Generated from ` + "`internal/audit/catalog.go`" + ` (` + "`go test ./internal/audit -run TestCatalog -update`" + `); do not edit.
Every finding of ` + "`breakglass audit`" + ` and ` + "`recover`" + ` carries one of these stable ids, a severity
(` + "`lockout`" + `: refused now, on this host; ` + "`risk`" + `: refused later, or by other sshd builds;
` + "`info`" + `), the evidence (file and line, key line, module line and its own rule) and the fix.
"recover runs it" marks the fixes ` + "`recover`" + ` applies as typed actions; the rest are shown.
How the code keeps the product contract is in design.md.

`

// TestCatalog keeps the catalogue, the checks, the README and
// docs/lockouts.md in step: every id a check can emit is catalogued once,
// and both documents hold what Catalog says.
func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Catalog {
		if seen[c.ID] {
			t.Errorf("id %s is catalogued twice", c.ID)
		}
		seen[c.ID] = true
		if c.Family == "" || c.Cause == "" || c.Fix == "" {
			t.Errorf("id %s: incomplete entry %+v", c.ID, c)
		}
	}
	// Every id the checks write (c.add(user, "id", …), keyProblem{id: …},
	// k.ID = …).
	pats := []*regexp.Regexp{
		regexp.MustCompile(`c\.add\([^,()]*, "([a-z0-9-]+)"`),
		regexp.MustCompile(`\bid: +"([a-z0-9-]+)"`),
		regexp.MustCompile(`k\.ID = [^\n]*"([a-z][a-z0-9-]+)"\n`),
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range pats {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				n++
				if _, ok := lookupCheck(m[1]); !ok {
					t.Errorf("%s emits %q, which is not in Catalog", f, m[1])
				}
			}
		}
	}
	if n < 40 {
		t.Errorf("found only %d ids in the checks: the patterns no longer match how checks name them", n)
	}
	// Ids the modules report themselves.
	for _, id := range []string{tasks.FindingSecondNotRunning, tasks.FindingSecondShared, tasks.FindingSecondKeys,
		tasks.FindingSecondKnownHosts, tasks.FindingSecondSudo, tasks.FindingSecondNoBoot, "emergency-access"} {
		if _, ok := lookupCheck(id); !ok {
			t.Errorf("tasks reports %q, which is not in Catalog", id)
		}
	}

	doc := docHeader + CatalogMarkdown()
	docPath := filepath.Join("..", "..", "docs", "lockouts.md")
	readmePath := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	i, j := strings.Index(string(readme), readmeBegin), strings.Index(string(readme), readmeEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no generated list of finding ids (%q … %q)", readmeBegin, readmeEnd)
	}
	var ids []string
	for _, c := range Catalog {
		ids = append(ids, "`"+c.ID+"`")
	}
	list := strings.Join(ids, ", ") + "\n"
	newReadme := string(readme[:i+len(readmeBegin)]) + list + string(readme[j:])
	if *update {
		if err := os.MkdirAll(filepath.Dir(docPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(readmePath, []byte(newReadme), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(docPath); err != nil || string(got) != doc {
		t.Errorf("docs/lockouts.md is not what Catalog says (err %v): run go test ./internal/audit -run TestCatalog -update", err)
	}
	if newReadme != string(readme) {
		t.Errorf("README.md's list of finding ids is not what Catalog says: run go test ./internal/audit -run TestCatalog -update")
	}
}
