package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
)

// TestLogsRecorded parses what readLogs read on lab hosts
// (testdata/logs, see its README.md) and checks each attempt's lines.
func TestLogsRecorded(t *testing.T) {
	for _, name := range []string{"namespace.info", "namespace.verbose", "trixie.info", "trixie.verbose"} {
		t.Run(name, func(t *testing.T) {
			read := func(f string) string {
				b, err := os.ReadFile(filepath.Join("testdata", "logs", f))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			out := read(name + ".txt")
			var attempts []engine.Access
			for _, l := range strings.Split(strings.TrimSpace(read(name+".attempts")), "\n") {
				u, p, _ := strings.Cut(l, " ")
				port, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("attempts: %q", l)
				}
				attempts = append(attempts, engine.Access{User: u, SourcePort: port})
			}
			if len(attempts) != 3 || attempts[0].User != "bob" || attempts[0].SourcePort == 0 || attempts[1] != (engine.Access{User: "carol"}) || attempts[2] != (engine.Access{User: "ghost"}) {
				t.Fatalf("attempts %+v", attempts)
			}
			port := attempts[0].SourcePort
			logs, err := readLogs(context.Background(), runnerFunc(func(cmd string, stdin []byte) ([]byte, error) {
				if want := fmt.Sprintf("\nbg_attempts='bob:%d carol:0 ghost:0'\n", port); cmd != "/bin/sh -s" || !strings.Contains(string(stdin), want) {
					return nil, fmt.Errorf("unexpected script, want %q in it", want)
				}
				return []byte(out), nil
			}), attempts, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			bobKey := fmt.Sprintf("bob %d", port)
			var keys []string
			for k := range logs {
				keys = append(keys, k)
			}
			if len(keys) != 2 || logs[bobKey] == nil || logs["carol 0"] == nil {
				t.Fatalf("attempts with lines: %q, want %q and \"carol 0\" (ghost never tried)", keys, bobKey)
			}
			want := 1 // INFO: only the connection's end
			if strings.HasSuffix(name, ".verbose") {
				want = 3 // its start, the refused key, its end
			}
			journald := strings.HasPrefix(name, "trixie.")
			for _, u := range []string{"bob", "carol"} {
				k := bobKey
				if u == "carol" {
					k = "carol 0"
				}
				lines := logs[k]
				if len(lines) != want {
					t.Errorf("%s: %d lines, want %d: %q", u, len(lines), want, lines)
					continue
				}
				// One connection: every line names the same client port
				// (bob's the one asked about), and none is of his
				// older, accepted login.
				m := portRe.FindStringSubmatch(lines[0])
				if m == nil || u == "bob" && m[1] != strconv.Itoa(port) {
					t.Errorf("%s: first line %q, want client port %d", u, lines[0], port)
					continue
				}
				for _, l := range lines {
					if !strings.Contains(l, "127.0.0.1 port "+m[1]) || strings.Contains(l, "Accepted") {
						t.Errorf("%s: line %q is not of connection %s", u, l, m[1])
					}
					if strings.ContainsAny(l, "\r\n") {
						t.Errorf("%s: line %q ends in a control character", u, l)
					}
					if strings.Contains(l, "sshd-session[") != journald {
						t.Errorf("%s: line %q: journald's form %v", u, l, journald)
					}
				}
				if last := lines[len(lines)-1]; !strings.HasPrefix(last[strings.Index(last, "Connection closed"):], "Connection closed by authenticating user "+u+" 127.0.0.1 port "+m[1]+" [preauth]") {
					t.Errorf("%s: last line %q", u, last)
				}
				if want == 3 && (!strings.Contains(lines[0], "Connection from 127.0.0.1 port "+m[1]+" on 127.") || !strings.Contains(lines[1], "Failed publickey for "+u+" from 127.0.0.1 port "+m[1]+" ssh2: ED25519 SHA256:")) {
					t.Errorf("%s: verbose lines %q", u, lines)
				}
				if penalised(lines) {
					t.Errorf("%s: read as penalised: %q", u, lines)
				}
			}
		})
	}
}

// TestLogsEdgeCases: readLogs keeps only "log USER PORT LINE" lines.
func TestLogsEdgeCases(t *testing.T) {
	attempts := []engine.Access{{User: "bob", SourcePort: 4242}}
	for _, tc := range []struct {
		name, out string
		want      map[string][]string
	}{
		{"empty", "", map[string][]string{}},
		{"stray lines", "Welcome\nlogbob 4242 x\n\nlog bob 4242 sshd[9]: Connection closed by authenticating user bob 127.0.0.1 port 4242 [preauth]\n",
			map[string][]string{"bob 4242": {"sshd[9]: Connection closed by authenticating user bob 127.0.0.1 port 4242 [preauth]"}}},
		{"sshd -E's line ends", "log bob 4242 a\r\nlog bob 4242 b\r\n", map[string][]string{"bob 4242": {"a", "b"}}},
		{"cut off", "log bob 4242 sshd[9]: Conn", map[string][]string{"bob 4242": {"sshd[9]: Conn"}}},
		{"no newline at the end, a line with spaces", "log bob 4242 a  b ", map[string][]string{"bob 4242": {"a  b "}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readLogs(context.Background(), runnerFunc(func(string, []byte) ([]byte, error) { return []byte(tc.out), nil }), attempts, "")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
