package transport

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

var recordSSHConn = flag.Bool("record", false, "run sshConnectionCommand on lab hosts and save its output under testdata/sshconnection (TestRecordSSHConnection)")

// TestRecordSSHConnection rewrites testdata/sshconnection (see its
// README.md): go test ./internal/transport -run TestRecordSSHConnection -record
func TestRecordSSHConnection(t *testing.T) {
	if !*recordSSHConn {
		t.Skip("only with -record")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	env := &labEnv{lab: lab.New(t, 2)}
	jump, dest := env.lab.Hosts[0], env.lab.Hosts[1]
	viaJump := env.target(dest)
	viaJump.Jumps = []Target{env.target(jump)}
	record := func(name string, target Target) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := env.dial(t, Config{}, target)
		defer c.Close()
		out, err := c.Run(ctx, sshConnectionCommand, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s (%s → %s): %q", name, target.Name, dest.Addr, out)
		if err := os.WriteFile(filepath.Join("testdata", "sshconnection", name+".txt"), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	record("direct", env.target(dest))
	record("jump", viaJump)
	// A login shell that prints before the command runs (bash reads
	// ~/.bashrc for a command sshd starts).
	hostExec(t, dest, `printf 'echo "welcome to $(hostname)"\n' >/home/admin/.bashrc.bg && cat /home/admin/.bashrc >>/home/admin/.bashrc.bg && mv /home/admin/.bashrc /home/admin/.bashrc.orig && mv /home/admin/.bashrc.bg /home/admin/.bashrc`)
	record("bashrc", env.target(dest))
	hostExec(t, dest, `mv /home/admin/.bashrc.orig /home/admin/.bashrc`)
}
