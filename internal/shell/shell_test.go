package shell

import (
	"os/exec"
	"testing"
)

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "it's", `"; rm -rf / #`, "$(id)", "`id`", "a\nb", "\\", "*", "~root", "-n"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != s {
			t.Errorf("Quote(%q) came back as %q", s, out)
		}
	}
}

func TestValidUser(t *testing.T) {
	for name, ok := range map[string]bool{"bg-ops1": true, "_x": true, "root": true, "Admin": false, "1x": false, "a;b": false, "a b": false, "": false, "a$(id)": false} {
		if got := ValidUser(name) == nil; got != ok {
			t.Errorf("ValidUser(%q) ok=%v, want %v", name, got, ok)
		}
	}
}

func TestValidPath(t *testing.T) {
	for p, ok := range map[string]bool{"/etc/ssh/authorized_keys/%u": true, "rel": false, "/a/../b": false, "/a\nb": false, "/a b": true} {
		if got := ValidPath(p) == nil; got != ok {
			t.Errorf("ValidPath(%q) ok=%v, want %v", p, got, ok)
		}
	}
}
