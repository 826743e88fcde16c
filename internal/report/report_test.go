package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() *Report {
	yes, no := true, false
	t0 := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	r := &Report{Version: Version, Command: "apply", Started: t0, Finished: t0.Add(2500 * time.Millisecond), Hosts: []*Host{
		{Name: "web01", Address: "192.0.2.11:22", MS: 812, Tasks: []Task{
			{Name: "emergency users", Module: "user", Status: StatusChanged, Changes: []Change{{What: "create user bg-ops1"}}, MS: 40},
			{Name: "", Module: "sudoers", Status: StatusOK, Changes: []Change{}, MS: 12},
		}, Access: []Access{{User: "bg-ops1", Path: "direct", OK: true, Sudo: &yes, MS: 80}}},
		{Name: "web02", Address: "192.0.2.12:22", MS: 900, Tasks: []Task{
			{Name: "keys", Module: "authorized_key", Status: StatusFailed, Error: "write /home/bg-ops1/.ssh/authorized_keys: exit status 1: No space left on device", Changes: []Change{}},
			{Name: "perm", Module: "ssh_permissions", Status: StatusSkipped, Changes: []Change{}},
		}, Findings: []Finding{{ID: "unsafe-path", Severity: SeverityLockout, User: "admin", Path: "/home/admin", Detail: "mode 0777 is group/world-writable", Fix: "chmod go-w /home/admin"}},
			Access: []Access{{User: "bg-ops2", Path: "port 2222", OK: true, Sudo: &no, MS: 70, Error: "sudo: a password is required"}}},
		{Name: "db01", Address: "192.0.2.21:2200", Status: StatusUnreachable, Error: "dial tcp 192.0.2.21:2200: connect: connection refused", Tasks: []Task{}},
	}}
	r.Settle()
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestStatusAndExitCode(t *testing.T) {
	r := sample()
	want := []string{StatusChanged, StatusFailed, StatusUnreachable}
	for i, h := range r.Hosts {
		if h.Status != want[i] {
			t.Errorf("%s: status %s, want %s", h.Name, h.Status, want[i])
		}
	}
	if got := r.ExitCode(); got != 6 {
		t.Errorf("exit code %d, want 6", got)
	}
	r.Hosts = r.Hosts[:1]
	r.Settle()
	if got := r.ExitCode(); got != 0 {
		t.Errorf("exit code %d, want 0 for a changed host", got)
	}
	r.Hosts[0].Tasks[1].Status = StatusFailed
	r.Settle()
	if got := r.ExitCode(); got != 2 {
		t.Errorf("exit code %d, want 2 when a task fails", got)
	}
}

func TestGolden(t *testing.T) {
	r := sample()
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{Verbose: true}); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", b.Bytes())

	b.Reset()
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["version"].(float64) != 1 {
		t.Fatalf("json does not round-trip: %v", err)
	}

	b.Reset()
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.junit.xml", b.Bytes())
	var suites junitSuites
	if err := xml.Unmarshal(b.Bytes(), &suites); err != nil {
		t.Fatalf("junit is not XML: %v", err)
	}
	if suites.Failures != 3 || suites.Errors != 1 {
		t.Errorf("junit failures=%d errors=%d, want 3 and 1", suites.Failures, suites.Errors)
	}

	b.Reset()
	if err := WriteMetrics(&b, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.prom", b.Bytes())
	if !strings.HasSuffix(b.String(), "# EOF\n") || !strings.Contains(b.String(), `breakglass_access_ok{host="web01",user="bg-ops1",path="direct"} 1`) {
		t.Errorf("metrics lack EOF or access line:\n%s", b.String())
	}
}

func TestWriteFileAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	if err := WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary file left behind: %v", entries)
	}
}
