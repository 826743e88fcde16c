package tasks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// TestNoFollowRaceOnLab races the no-follow helpers against their user: as
// an ordinary user, without sudo, a loop swaps ~/.ssh and the key file
// for symbolic links into /etc and root's home, as fast as it can, while
// root runs every helper on those paths sixty times. Whatever the
// interleaving, nothing outside the user's own files may change: the
// targets keep their owner, mode and content, and no file appears there.
func TestNoFollowRaceOnLab(t *testing.T) {
	_, h, _ := acctLab(t)
	acctSh(t, h, `useradd -m -s /bin/sh racer
mkdir -m 0700 /home/racer/.ssh && echo 'ssh-ed25519 AAAA racer' >/home/racer/.ssh/authorized_keys
chown -R racer: /home/racer/.ssh && chmod 0600 /home/racer/.ssh/authorized_keys
echo 'root secret' >/root/secret && chmod 0600 /root/secret`)
	const state = `stat -c '%n %u %g %a' /etc /etc/shadow /etc/sudoers.d /root /root/secret /etc/profile.d
sha256sum /etc/shadow /root/secret
ls -A /etc /etc/sudoers.d /root /etc/profile.d | sha256sum`
	before := acctSh(t, h, state)

	// The racer: each round swaps .ssh for a link to /etc, then the key
	// file for a link to /etc/shadow or /root/secret, and back.
	acctSh(t, h, `setpriv --reuid=racer --regid=racer --init-groups -- sh -c '
cd /home/racer || exit 1
end=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$end" ] && [ ! -e /tmp/racer.stop ]; do
	mv .ssh .ssh.real 2>/dev/null; ln -s /etc .ssh 2>/dev/null
	rm -f .ssh; mv .ssh.real .ssh 2>/dev/null
	mv .ssh/authorized_keys .ssh/ak.real 2>/dev/null; ln -s /etc/shadow .ssh/authorized_keys 2>/dev/null
	rm -f .ssh/authorized_keys; ln -s /root/secret .ssh/authorized_keys 2>/dev/null
	rm -f .ssh/authorized_keys; mv .ssh/ak.real .ssh/authorized_keys 2>/dev/null
done' </dev/null >/dev/null 2>&1 &`)
	t.Cleanup(func() { _, _ = h.Exec(t.Context(), "touch /tmp/racer.stop", nil) })

	script := engine.ApplyPrelude + `set +e
ok=0
i=0
while [ "$i" -lt 60 ]; do
	i=$((i + 1))
	bg_write /home/racer/.ssh/authorized_keys racer: 0600 'ssh-ed25519 BBBB written
' && ok=$((ok + 1))
	bg_chmod 0644 /home/racer/.ssh/authorized_keys racer && ok=$((ok + 1))
	bg_chown racer: /home/racer/.ssh/authorized_keys && ok=$((ok + 1))
	bg_chmod 0755 /home/racer/.ssh racer && ok=$((ok + 1))
	bg_chown racer: /home/racer/.ssh && ok=$((ok + 1))
	bg_mkdir 0700 /home/racer/.ssh/sub racer: && ok=$((ok + 1))
	rmdir /home/racer/.ssh/sub 2>/dev/null
done 2>/dev/null
echo "ok $ok"
`
	out := acctSh(t, h, "{\n"+script+"\n} </dev/null")
	acctSh(t, h, "touch /tmp/racer.stop; sleep 0.2")
	if after := acctSh(t, h, state); after != before {
		t.Errorf("a racing user steered root:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The race must have been real: some helpers ran, some were refused.
	if !strings.HasPrefix(out, "ok ") || strings.TrimSpace(out) == "ok 0" || strings.TrimSpace(out) == "ok 360" {
		t.Errorf("helpers: %q of 360 calls succeeded; want some of each", out)
	}
	t.Logf("helpers: %s of 360 calls succeeded under the race", strings.TrimSpace(out))
}

// TestResolveRaceOnLab races bg_resolve, which decides what the facts call
// a key file's real path: the user flips a directory on the way between
// itself and a link to /etc, where a link root would follow
// (/etc/ssh/...) could be confused with the user's own link to
// /etc/shadow. bg_resolve must never answer a path outside the user's
// tree.
func TestResolveRaceOnLab(t *testing.T) {
	_, h, _ := acctLab(t)
	acctSh(t, h, `useradd -m -s /bin/sh flipper
mkdir -p /home/flipper/.config/ssh && ln -s /etc/shadow /home/flipper/.config/ssh/authorized_keys
chown -R flipper: /home/flipper/.config && chown -h flipper: /home/flipper/.config/ssh/authorized_keys`)
	acctSh(t, h, `setpriv --reuid=flipper --regid=flipper --init-groups -- sh -c '
cd /home/flipper || exit 1
end=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$end" ] && [ ! -e /tmp/flipper.stop ]; do
	mv .config .config.real; ln -s /etc .config; rm -f .config; mv .config.real .config
done' </dev/null >/dev/null 2>&1 &`)
	t.Cleanup(func() { _, _ = h.Exec(t.Context(), "touch /tmp/flipper.stop", nil) })
	out := acctSh(t, h, resolveScript+`
i=0 links=0 bad=
while [ "$i" -lt 400 ]; do
	i=$((i + 1))
	if bg_resolve /home/flipper/.config/ssh/authorized_keys; then
		case $bg_real in /home/flipper/*) ;; *) bad="$bad $bg_real" ;; esac
	else
		links=$((links + 1))
	fi
done
echo "links $links bad$bad"`)
	acctSh(t, h, "touch /tmp/flipper.stop")
	if !strings.HasPrefix(out, "links ") || strings.Contains(out, "bad ") {
		t.Errorf("bg_resolve under the race: %q", out)
	}
	t.Logf("bg_resolve under the race: %s", strings.TrimSpace(out))
}

// TestWriteRootFileRefusedInSharedDir: bg_write writes a user's file in a
// directory users can change as that user; root's file it refuses there,
// since as root the writer would follow a link planted in place of its
// temp file.
func TestWriteRootFileRefusedInSharedDir(t *testing.T) {
	if os.Geteuid() != 0 {
		lab.Skip(t, "bg_write's owner checks need root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"root", "root:", "0:0"} {
		f := filepath.Join(dir, "f")
		out, err := exec.Command("sh", "-c", engine.Nofollow+"\nbg_write \"$1\" \"$2\" 0644 content", "sh", f, owner).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not writing root's file") {
			t.Errorf("owner %s: %v %s", owner, err, out)
		}
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("owner %s: %s written: %v", owner, f, err)
		}
	}
}

// TestTempOfKilledRunRemoved: a temp file a killed run left beside a file
// (.NAME.breakglass-tmp.XXXXXX) is removed by the next write of it.
func TestTempOfKilledRunRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		lab.Skip(t, "bg_temp writes root's files")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	stale := filepath.Join(dir, ".f.breakglass-tmp.Ab12Cd")
	other := filepath.Join(dir, ".g.breakglass-tmp.Ab12Cd")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("sh", "-c", engine.Nofollow+"\nt=$(echo new | bg_temp \"$1\" root: 0644) && bg_commit \"$t\" \"$1\"", "sh", f).CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed run's temp file is still there: %v", err)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("another file's temp file was removed: %v", err)
	}
	if b, _ := os.ReadFile(f); string(b) != "new\n" {
		t.Errorf("written: %q", b)
	}
}

// TestTempPathAloneOnSuccess: writers take bg_temp's path from its stdout
// and stderr together, so a filter that warns but succeeds must not add
// to it; when the filter fails, what it said comes out.
func TestTempPathAloneOnSuccess(t *testing.T) {
	if os.Geteuid() != 0 {
		lab.Skip(t, "bg_temp writes root's files")
	}
	f := filepath.Join(t.TempDir(), "f")
	out, err := exec.Command("sh", "-c", engine.Nofollow+"\nt=$(echo x | bg_temp \"$1\" root: 0644 sh -c 'echo warning >&2; cat' 2>&1) && printf '%s' \"$t\"", "sh", f).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), filepath.Dir(f)+"/.f.breakglass-tmp.") || strings.Contains(string(out), "warning") || strings.Contains(string(out), "\n") {
		t.Errorf("path %q, %v", out, err)
	}
	out, err = exec.Command("sh", "-c", engine.Nofollow+"\nbg_temp \"$1\" root: 0644 sh -c 'echo it broke >&2; exit 3' </dev/null", "sh", f).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "it broke") {
		t.Errorf("a failed filter: %q, %v", out, err)
	}
}
