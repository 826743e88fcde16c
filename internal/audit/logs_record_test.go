package audit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// TestRecordLogs saves what readLogs reads on a namespace host (sshd -E
// /var/log/auth.log) and a trixie host (journald), with sshd's default
// LogLevel INFO and with VERBOSE, after real logins, to
// testdata/logs/KIND.LEVEL.txt, with the attempts asked about in
// KIND.LEVEL.attempts: go test ./internal/audit -run TestRecordLogs -record
func TestRecordLogs(t *testing.T) {
	if !*record {
		t.Skip("only with -record")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skipf("SKIP: no ssh client: %v", err)
	}
	for _, rc := range []struct {
		k     lab.Kind
		level string
	}{{lab.Namespace, "info"}, {lab.Namespace, "verbose"}, {lab.Trixie, "info"}, {lab.Trixie, "verbose"}} {
		k, name := rc.k, string(rc.k)+"."+rc.level
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := lab.NewKind(t, k, 1)
			h := l.Hosts[0]
			keys := newTestKeys(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			script := setupPrelude + keys.expand(t, "bg_adduser bob {{key:bob}}\nbg_adduser carol {{key:carol}}\n"+kindPrelude[k])
			if rc.level == "verbose" {
				script += "printf 'LogLevel VERBOSE\\n' >/etc/ssh/sshd_config.d/02-verbose.conf\nbg_reload\n"
			}
			if out, err := h.Exec(ctx, script, nil); err != nil {
				t.Fatalf("setup: %v\n%s", err, out)
			}
			// bob: an older accepted login, the refused attempt asked about
			// (its port known), a later refused one. carol: refused, port
			// unknown. ghost: never tried.
			port := bobAttempts(t, l, h, keys)
			if err := sshLogin(t, l, h, "carol", l.AdminKey); err == nil {
				t.Fatal("carol logs in with admin's key")
			}
			if out, err := h.Exec(ctx, `for i in $(seq 200); do
	[ "$({ journalctl -t sshd -t sshd-session -t sshd-auth --no-pager 2>/dev/null; cat /var/log/auth.log 2>/dev/null; } | grep -c 'authenticating user \(bob\|carol\)')" -ge 3 ] && exit 0
	sleep 0.1
done
exit 1`, nil); err != nil {
				t.Fatalf("the refused attempts never reached sshd's log: %v\n%s", err, out)
			}
			attempts := []engine.Access{{User: "bob", SourcePort: port}, {User: "carol"}, {User: "ghost"}}
			var out []byte
			logs, err := readLogs(ctx, runnerFunc(func(cmd string, stdin []byte) ([]byte, error) {
				b, err := h.Runner().Run(ctx, cmd, stdin)
				out = b
				return b, err
			}), attempts, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			if len(logs["bob "+strconv.Itoa(port)]) == 0 || len(logs["carol 0"]) == 0 {
				t.Errorf("nothing of bob's or carol's attempt:\n%s", out)
			}
			var as strings.Builder
			for _, a := range attempts {
				fmt.Fprintf(&as, "%s %d\n", a.User, a.SourcePort)
			}
			dir := filepath.Join("testdata", "logs")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+".txt"), out, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+".attempts"), []byte(as.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
