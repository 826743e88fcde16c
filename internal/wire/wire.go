// Package wire is the one framing of several shell scripts that travel
// to a host in one round trip (/bin/sh -s) and of their output coming
// back: each part's output is cut out between a begin and an end marker
// line, the end marker carrying the part's exit status.
//
// The markers carry a random nonce made for each script, so output a
// part prints (a user's file name, a key comment, anything a user on the
// host controls) cannot forge a marker: without the nonce a marker-like
// line is only output. Splitting is one pass over the output, which the
// transport bounds (transport.MaxOutput); a part whose end marker never
// came (the script stopped, or the connection broke) is reported as
// started, not done, with what it printed.
package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// tag starts every marker line.
const tag = "@@breakglass"

// Script is a shell script made of framed parts and unframed text.
type Script struct {
	nonce string
	b     strings.Builder
	n     int
}

// New returns an empty script with a fresh nonce.
func New() (*Script, error) {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return &Script{nonce: hex.EncodeToString(buf[:])}, nil
}

// WriteString appends unframed shell text (a prelude, a function
// definition); its output belongs to no part.
func (s *Script) WriteString(text string) {
	s.b.WriteString(text)
	if text != "" && !strings.HasSuffix(text, "\n") {
		s.b.WriteByte('\n')
	}
}

// Part appends body as the next part, run in a subshell (a fork, not a
// new shell) with stdin from /dev/null, its exit status on the end
// marker. It returns the part's index.
func (s *Script) Part(body string) int {
	i := s.Begin()
	if strings.TrimSpace(body) == "" {
		body = ":" // sh refuses an empty subshell
	}
	fmt.Fprintf(&s.b, "(\n%s\n) </dev/null\n", body)
	s.End(i, "$?")
	return i
}

// Begin appends the begin marker of the next part and returns its index.
// What runs between Begin and End is the part's body, in the script's
// own shell (so `set -e` there stops the script with the part begun and
// not ended).
func (s *Script) Begin() int {
	i := s.n
	s.n++
	fmt.Fprintf(&s.b, "printf '\\n%s %s begin %d\\n'\n", tag, s.nonce, i)
	return i
}

// End appends part i's end marker; status is a shell word giving its
// exit status: "$?" (of the body's last command), "0", "$rc".
func (s *Script) End(i int, status string) {
	fmt.Fprintf(&s.b, "printf '\\n%s %s end %d %%s\\n' \"%s\"\n", tag, s.nonce, i, status)
}

// Len is the number of parts.
func (s *Script) Len() int { return s.n }

// String returns the script.
func (s *Script) String() string { return s.b.String() }

// Bytes returns the script.
func (s *Script) Bytes() []byte { return []byte(s.b.String()) }

// Part is what one part printed.
type Part struct {
	// Out is the part's output (stdout), exactly as printed.
	Out []byte
	// Begun: its begin marker came; Done: its end marker came too, and
	// Status is its exit status. Begun and not Done: the script stopped
	// in it (Out is what it printed until then).
	Begun, Done bool
	Status      int
}

// OK reports whether the part ran to its end with exit status 0.
func (p Part) OK() bool { return p.Done && p.Status == 0 }

// Split cuts out, the output of s, into one Part per part of s. Marker
// lines without s's nonce are output like any other; a marker with the
// nonce that names no part of s, or one already seen, ends the split
// there (the output is not what s prints).
func (s *Script) Split(out []byte) []Part {
	return split(out, s.nonce, s.n)
}

func split(out []byte, nonce string, n int) []Part {
	parts := make([]Part, n)
	begin := []byte("\n" + tag + " " + nonce + " begin ")
	for {
		k := bytes.Index(out, begin)
		if k < 0 {
			return parts
		}
		out = out[k+len(begin):]
		line, rest, ok := bytes.Cut(out, []byte{'\n'})
		if !ok {
			return parts
		}
		i, err := strconv.Atoi(string(line))
		if err != nil || i < 0 || i >= n || parts[i].Begun || string(line) != strconv.Itoa(i) {
			return parts
		}
		p := &parts[i]
		p.Begun = true
		end := []byte("\n" + tag + " " + nonce + " end " + string(line) + " ")
		e := bytes.Index(rest, end)
		if e < 0 {
			p.Out = rest
			return parts
		}
		p.Out = rest[:e]
		out = rest[e+len(end):]
		status, after, ok := bytes.Cut(out, []byte{'\n'})
		rc, err := strconv.Atoi(string(status))
		if !ok || err != nil {
			return parts
		}
		p.Done, p.Status = true, rc
		out = after // the next begin marker brings its own newline
	}
}

// Parse reads a script made by Script back: its nonce and the body of
// each part, in order (a Part's body without its subshell). It is for
// fake hosts in tests, which answer each part by what it runs; ok is
// false when script holds no part.
func Parse(script []byte) (nonce string, bodies []string, ok bool) {
	const lead = "printf '\\n" + tag + " "
	s := string(script)
	for {
		k := strings.Index(s, lead)
		if k < 0 {
			return nonce, bodies, nonce != ""
		}
		line, rest, _ := strings.Cut(s[k+len(lead):], "\n")
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "begin" {
			s = rest
			continue
		}
		nonce = f[0]
		endLead := lead + nonce + " end " + strings.TrimSuffix(f[2], "\\n'") + " "
		e := strings.Index(rest, endLead)
		if e < 0 {
			return nonce, bodies, false
		}
		body := rest[:e]
		if b, ok := strings.CutPrefix(body, "(\n"); ok {
			if b, ok = strings.CutSuffix(b, "\n) </dev/null\n"); ok {
				body = b
			}
		}
		bodies = append(bodies, body)
		s = rest[e:]
		_, s, _ = strings.Cut(s, "\n")
	}
}

// Reply is what a host prints for part i of the script with nonce: out,
// then the end marker with status.
func Reply(nonce string, i int, out string, status int) string {
	return Begun(nonce, i, out) + fmt.Sprintf("\n%s %s end %d %d\n", tag, nonce, i, status)
}

// Begun is what a host prints for part i when the script stops in it.
func Begun(nonce string, i int, out string) string {
	return fmt.Sprintf("\n%s %s begin %d\n%s", tag, nonce, i, out)
}
