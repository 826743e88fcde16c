package lab

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseKind(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Kind
		ok   bool
	}{
		{"", Namespace, true},
		{"namespace", Namespace, true},
		{"bookworm", Bookworm, true},
		{"trixie", Trixie, true},
		{"Trixie", "", false},
		{"sid", "", false},
	} {
		got, err := ParseKind(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseKind(%q) = %q, %v", tt.in, got, err)
		}
	}
	for _, k := range Kinds() {
		if k.Systemd() != (k != Namespace) {
			t.Errorf("%s.Systemd() = %v", k, k.Systemd())
		}
	}
}

// A root counts only with its marker, of this version: a half-built or
// outdated one is rebuilt.
func TestRootMarker(t *testing.T) {
	t.Setenv("BG_LAB_CACHE", t.TempDir())
	dir := filepath.Join(CacheDir(), "roots", string(Trixie))
	if rootCached(Trixie) {
		t.Fatal("missing root counts as cached")
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rootCached(Trixie) {
		t.Error("root without marker counts as cached")
	}
	marker := filepath.Join(dir, rootMarker)
	if err := os.WriteFile(marker, []byte("breakglass lab root trixie version 0 packages systemd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rootCached(Trixie) {
		t.Error("root of an older version counts as cached")
	}
	if err := os.WriteFile(marker, []byte(markerText(Trixie)), 0o644); err != nil {
		t.Fatal(err)
	}
	if !rootCached(Trixie) {
		t.Error("finished root does not count as cached")
	}
	if rootCached(Bookworm) {
		t.Error("bookworm root counts as cached")
	}
}
