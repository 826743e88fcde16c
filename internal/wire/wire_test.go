package wire

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// run runs s with /bin/sh -s, as a host does, and returns its stdout.
func run(t *testing.T, s *Script) []byte {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-s")
	cmd.Stdin = strings.NewReader(s.String())
	out, _ := cmd.Output() // a script may stop with a status of its own
	return out
}

func TestSplit(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s.WriteString("echo prelude output, in no part")
	s.Part("echo one")
	s.Part("printf 'no newline'; exit 3")
	s.Part("") // prints nothing
	s.Part("cat; echo read nothing")
	parts := s.Split(run(t, s))
	want := []struct {
		out    string
		status int
	}{{"one\n", 0}, {"no newline", 3}, {"", 0}, {"read nothing\n", 0}}
	for i, w := range want {
		p := parts[i]
		if !p.Begun || !p.Done || string(p.Out) != w.out || p.Status != w.status {
			t.Errorf("part %d: %+v (out %q), want out %q status %d", i, p, p.Out, w.out, w.status)
		}
	}
}

// TestSplitHostile: a part prints marker lines with a guessed nonce (an
// old script's, or all zeros) and the old framings' markers; they are
// its output, and the parts after it are cut where the real markers are.
func TestSplitHostile(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New()
	fake := strings.Join([]string{
		"",
		tag + " " + other.nonce + " end 0 0",
		tag + " " + other.nonce + " begin 1",
		tag + " 00000000000000000000000000000000 end 0 0",
		tag + " " + strings.ToUpper(s.nonce) + " end 0 0",
		"@@breakglass-end " + s.nonce[:16] + " 0 0",
		"@@breakglass-done " + s.nonce[:16] + " 0",
		"forged",
	}, "\n")
	s.Part("printf '%s\\n' " + shellQuote(fake) + "; exit 9")
	s.Part("echo after")
	parts := s.Split(run(t, s))
	if p := parts[0]; !p.Done || p.Status != 9 || string(p.Out) != fake+"\n" {
		t.Errorf("part 0: done %v status %d out %q, want the forged lines as output, status 9", p.Done, p.Status, p.Out)
	}
	if p := parts[1]; !p.OK() || string(p.Out) != "after\n" {
		t.Errorf("part 1: %+v %q", p, p.Out)
	}

	// With the nonce (never the case: it is not on the host before the
	// script runs), a marker naming no part, or a part twice, ends the
	// split rather than mixing outputs.
	for _, forged := range []string{"begin 5", "begin 0", "begin -1", "begin x", "begin 01"} {
		out := []byte("\n" + tag + " " + s.nonce + " begin 0\nzero\n" + tag + " " + s.nonce + " end 0 0\n" +
			"\n" + tag + " " + s.nonce + " " + forged + "\nmore\n" + tag + " " + s.nonce + " end 1 0\n")
		parts := s.Split(out)
		if !parts[0].OK() || parts[1].Begun {
			t.Errorf("%s: %+v", forged, parts)
		}
	}
}

func TestSplitHuge(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	s.Part("head -c 8388608 /dev/zero | tr '\\0' x")
	s.Part("echo after")
	parts := s.Split(run(t, s))
	if p := parts[0]; !p.OK() || len(p.Out) != size || bytes.Count(p.Out, []byte("x")) != size {
		t.Errorf("huge part: ok %v, %d bytes", p.OK(), len(p.Out))
	}
	if !parts[1].OK() || string(parts[1].Out) != "after\n" {
		t.Errorf("part after the huge one: %+v", parts[1])
	}
}

// TestSplitMissingEnd: the script stops inside a part (set -e, exit, a
// broken connection): that part is begun and not done, with what it
// printed; the later ones never began.
func TestSplitMissingEnd(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s.WriteString("set -e")
	s.Part("echo first")
	i := s.Begin()
	s.WriteString("echo partial\nfalse\necho never")
	s.End(i, "0")
	s.Part("echo third")
	out := run(t, s)
	parts := s.Split(out)
	if !parts[0].OK() {
		t.Errorf("part 0: %+v", parts[0])
	}
	if p := parts[1]; !p.Begun || p.Done || string(p.Out) != "partial\n" {
		t.Errorf("part 1: begun %v done %v out %q", p.Begun, p.Done, p.Out)
	}
	if parts[2].Begun {
		t.Errorf("part 2 began: %+v", parts[2])
	}
	// Output cut anywhere in an end marker line, its newline included,
	// leaves that part not done: a status of 12 never reads as 1.
	s2, _ := New()
	s2.Part("exit 12")
	full := run(t, s2)
	if p := s2.Split(full)[0]; !p.Done || p.Status != 12 {
		t.Fatalf("exit 12: %+v", p)
	}
	start := bytes.LastIndex(full, []byte("\n"+tag))
	for cut := start; cut < len(full); cut++ {
		if p := s2.Split(full[:cut])[0]; p.Done {
			t.Errorf("cut at %d of %d (%q): done, status %d", cut, len(full), full[:cut], p.Status)
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestParseReply: what fake hosts use reads a script back and answers it
// as /bin/sh does.
func TestParseReply(t *testing.T) {
	s, _ := New()
	s.WriteString("prelude")
	s.Part("echo a")
	i := s.Begin()
	s.WriteString("inline step")
	s.End(i, "0")
	nonce, bodies, ok := Parse(s.Bytes())
	if !ok || nonce != s.nonce || len(bodies) != 2 || bodies[0] != "echo a" || bodies[1] != "inline step\n" {
		t.Fatalf("Parse: %q %q %v", nonce, bodies, ok)
	}
	parts := s.Split([]byte(Reply(nonce, 0, "a\n", 0) + Begun(nonce, 1, "half")))
	if !parts[0].OK() || string(parts[0].Out) != "a\n" || !parts[1].Begun || parts[1].Done || string(parts[1].Out) != "half" {
		t.Errorf("Split of the reply: %+v", parts)
	}
	if want := run(t, s); string(s.Split(want)[0].Out) != "a\n" {
		t.Errorf("real run: %q", want)
	}
}
