package audit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

// TestRecordHostKinds saves what the host query reads on a trixie host
// (systemd, journald, logind, OpenSSH 10) as the lab makes it and after
// the kind's prelude, to testdata/lab/trixie-untouched.txt and
// trixie-clean.txt: go test ./internal/audit -run TestRecordHostKinds -record
func TestRecordHostKinds(t *testing.T) {
	if !*record {
		t.Skip("only with -record")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skipf("SKIP: no ssh client: %v", err)
	}
	h := lab.NewKind(t, lab.Trixie, 1).Hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	save := func(name string) {
		rec := &recorder{r: h.Runner()}
		if _, err := New(Options{}).Run(ctx, rec, labEnv(h)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "lab", name+".txt"), rec.out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	save("trixie-untouched")
	if out, err := h.Exec(ctx, setupPrelude+kindPrelude[lab.Trixie], nil); err != nil {
		t.Fatalf("prelude: %v\n%s", err, out)
	}
	save("trixie-clean")
}
