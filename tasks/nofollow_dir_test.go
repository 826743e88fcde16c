package tasks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// TestBackupNameDirectoryOnLab: a user who made a directory under the
// name the previous version of their key file is kept under
// (~/.ssh/.authorized_keys.breakglass.bak/) makes the write of that file
// fail with a message that names the directory and says what to do; the
// directory is neither entered nor removed, and the key file is as it
// was.
func TestBackupNameDirectoryOnLab(t *testing.T) {
	_, h, env := acctLab(t)
	acctSh(t, h, `set -e
useradd -m -s /bin/sh planter
setpriv --reuid=planter --regid=planter --init-groups -- sh -c '
umask 077
mkdir -p /home/planter/.ssh
echo "ssh-ed25519 AAAA old" >/home/planter/.ssh/authorized_keys
mkdir /home/planter/.ssh/.authorized_keys.breakglass.bak
echo mine >/home/planter/.ssh/.authorized_keys.breakglass.bak/notes
ln -s /etc/shadow /home/planter/.ssh/.authorized_keys.breakglass.bak/authorized_keys'`)
	const state = `cd /home/planter/.ssh && ls -A . .authorized_keys.breakglass.bak && stat -c '%n %U %a %i' . authorized_keys .authorized_keys.breakglass.bak .authorized_keys.breakglass.bak/* && cat authorized_keys .authorized_keys.breakglass.bak/notes
stat -c '%n %U %G %a %h' /etc/shadow && sha256sum /etc/shadow`
	before := acctSh(t, h, state)

	_, err := runModule(context.Background(), h.Runner(), env, mustAuthorizedKey(t, fmt.Sprintf("{user: planter, key: %q}", testKey(t, 7, "planter@new"))))
	want := "/home/planter/.ssh/.authorized_keys.breakglass.bak, the name its previous version is kept under, is a directory; breakglass neither enters nor removes it: move it out of the way, then run again"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not writing /home/planter/.ssh/authorized_keys") {
		t.Fatalf("error %v\nwant it to say %q", err, want)
	}
	t.Logf("refused as expected: %v", err)
	if after := acctSh(t, h, state); after != before {
		t.Errorf("the user's files changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestBackupNameDirectoryRootDir: the same in a directory only root can
// change (bg_temp and bg_commit): the commit is refused with the same
// words, the file and the directory stay as they were.
func TestBackupNameDirectoryRootDir(t *testing.T) {
	if os.Geteuid() != 0 {
		lab.Skip(t, "bg_temp writes root's files")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	bak := filepath.Join(dir, ".f.breakglass.bak")
	if err := os.WriteFile(f, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(bak, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bak, "x"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", engine.Nofollow+"\nbg_write \"$1\" root: 0644 new", "sh", f).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "breakglass: not writing "+f+": "+bak+", the name its previous version is kept under, is a directory") {
		t.Errorf("bg_write: %v %s", err, out)
	}
	if b, _ := os.ReadFile(f); string(b) != "old\n" {
		t.Errorf("%s: %q", f, b)
	}
	if b, _ := os.ReadFile(filepath.Join(bak, "x")); string(b) != "kept" {
		t.Errorf("the directory's file: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left in %s: %v", dir, ents)
	}
}
