package lab

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// AdminUser is the user every lab host has: bash, key-only login,
// passwordless sudo.
const AdminUser = "admin"

// template is the /etc every host starts from: the machine's /etc without
// its host keys and with the admin user and its sudoers drop-in. With
// overlayfs it is a thin layer over the machine's /etc (lower, for the
// hosts' overlay mounts); without, a full copy (etc) that each host copies.
type template struct {
	lower    string // overlay lowerdir: "LAYER:/etc"; "" in copy mode
	etc      string // the full template /etc in copy mode
	uid, gid int    // admin's
	utmpGID  int
	skel     map[string][]byte // /etc/skel/.bashrc etc., for fresh homes
	hosts    []byte            // the machine's /etc/hosts, to which each host adds itself
}

// buildTemplate makes the template under dir: an overlay layer over the
// machine's /etc when overlay is true, else a full copy.
func buildTemplate(dir string, overlay bool) (*template, error) {
	t := &template{skel: map[string][]byte{}}
	etc := filepath.Join(dir, "etc")
	if overlay {
		etc = filepath.Join(dir, "layer")
		t.lower = etc + ":/etc"
		if err := mkdir(etc, 0o755, 0, 0); err != nil {
			return nil, err
		}
	} else {
		t.etc = etc
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create template dir: %w", err)
		}
		if out, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("copy /etc to %s: %w: %s", etc, err, bytes.TrimSpace(out))
		}
	}
	// Directories the template writes into must look like the machine's:
	// in a layer, the topmost layer's directory decides mode and owner.
	for _, d := range []string{"ssh", "sudoers.d", "default"} {
		if err := mkdirLike(filepath.Join(etc, d), filepath.Join("/etc", d)); err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
	}
	keys, err := filepath.Glob("/etc/ssh/ssh_host_*")
	if err != nil {
		return nil, fmt.Errorf("list host keys: %w", err)
	}
	for _, k := range keys {
		k = filepath.Join(etc, "ssh", filepath.Base(k))
		if overlay {
			// A whiteout: a 0/0 character device hides the lower file.
			if err := syscall.Mknod(k, syscall.S_IFCHR, 0); err != nil {
				return nil, fmt.Errorf("template: hide host key %s: %w", k, err)
			}
		} else if err := os.Remove(k); err != nil {
			return nil, fmt.Errorf("template: remove host key: %w", err)
		}
	}

	if t.uid, t.gid, t.utmpGID, err = addAdmin("/etc", etc); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	// service ssh start/restart (/etc/init.d/ssh) runs sshd with
	// $SSHD_OPTS: log where the init's sshd logs, as there is no syslog.
	if err := editFile("/etc/default/ssh", filepath.Join(etc, "default", "ssh"), func(b []byte) []byte {
		return setShellVar(b, "SSHD_OPTS", `"-E /var/log/auth.log"`)
	}); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	for _, name := range []string{".bashrc", ".profile", ".bash_logout"} {
		b, err := os.ReadFile(filepath.Join("/etc/skel", name))
		if err == nil {
			t.skel[name] = b
		}
	}
	if t.hosts, err = os.ReadFile("/etc/hosts"); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return t, nil
}

// addAdmin writes into dstEtc srcEtc's passwd, shadow, group and gshadow
// with the admin user added (replacing any), and admin's sudoers drop-in
// (dstEtc/sudoers.d must exist). It returns admin's uid and gid and the
// utmp group's id. srcEtc and dstEtc may be the same dir.
func addAdmin(srcEtc, dstEtc string) (uid, gid, utmpGID int, err error) {
	passwd, err := os.ReadFile(filepath.Join(srcEtc, "passwd"))
	if err != nil {
		return 0, 0, 0, err
	}
	group, err := os.ReadFile(filepath.Join(srcEtc, "group"))
	if err != nil {
		return 0, 0, 0, err
	}
	uid = freeID(passwd, group)
	gid = uid
	utmpGID = lookupID(group, "utmp", 0)
	entries := []struct{ file, line string }{
		{"passwd", fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/bash", AdminUser, uid, gid, AdminUser)},
		// "*": no password can match, but the account is not locked, so
		// public-key logins work (a "!" would lock it).
		{"shadow", AdminUser + ":*:19000:0:99999:7:::"},
		{"group", fmt.Sprintf("%s:x:%d:", AdminUser, gid)},
		{"gshadow", AdminUser + ":!::"},
	}
	for _, e := range entries {
		err := editFile(filepath.Join(srcEtc, e.file), filepath.Join(dstEtc, e.file), func(b []byte) []byte {
			return setDBEntry(b, AdminUser, e.line)
		})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("add %s to %s: %w", AdminUser, e.file, err)
		}
	}
	sudoers := filepath.Join(dstEtc, "sudoers.d", AdminUser)
	if err := writeFile(sudoers, []byte(AdminUser+" ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440, 0, 0); err != nil {
		return 0, 0, 0, err
	}
	return uid, gid, utmpGID, nil
}

// setDBEntry replaces the line for name in a passwd-style file, or appends it.
func setDBEntry(db []byte, name, line string) []byte {
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(db), "\n") {
		if l == "" || strings.HasPrefix(l, name+":") {
			continue
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteByte('\n')
		}
	}
	out.WriteString(line + "\n")
	return out.Bytes()
}

// setShellVar sets name=value in a shell-sourced file such as
// /etc/default/ssh, replacing its assignments or appending one.
func setShellVar(b []byte, name, value string) []byte {
	var out bytes.Buffer
	set := false
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(l, name+"=") {
			if set {
				continue
			}
			l, set = name+"="+value+"\n", true
		}
		out.WriteString(l)
	}
	if !set {
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteByte('\n')
		}
		out.WriteString(name + "=" + value + "\n")
	}
	return out.Bytes()
}

// editFile writes edit(src's content) to dst with src's mode and owner;
// a missing src is an empty one, mode 0644 root.
func editFile(src, dst string, edit func([]byte) []byte) error {
	b, err := os.ReadFile(src)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	mode, uid, gid := os.FileMode(0o644), 0, 0
	var st syscall.Stat_t
	if err == nil && syscall.Stat(src, &st) == nil {
		mode, uid, gid = os.FileMode(st.Mode&0o7777), int(st.Uid), int(st.Gid)
	}
	return writeFile(dst, edit(b), mode, uid, gid)
}

// freeID is the lowest id from 1000 used neither as a uid in passwd nor as a
// gid in group, ignoring any existing admin entries (they are replaced).
func freeID(passwd, group []byte) int {
	used := map[int]bool{}
	for _, db := range [][]byte{passwd, group} {
		for _, l := range strings.Split(string(db), "\n") {
			f := strings.Split(l, ":")
			if len(f) < 3 || f[0] == AdminUser {
				continue
			}
			if id, err := strconv.Atoi(f[2]); err == nil {
				used[id] = true
			}
		}
	}
	id := 1000
	for used[id] {
		id++
	}
	return id
}

// lookupID returns the id (third field) of name in a passwd-style file.
func lookupID(db []byte, name string, def int) int {
	for _, l := range strings.Split(string(db), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[0] == name {
			if id, err := strconv.Atoi(f[2]); err == nil {
				return id
			}
		}
	}
	return def
}

// writeFile creates or replaces path with mode and owner exactly.
func writeFile(path string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// mkdir creates path (and missing parents, 0755 root) with mode and owner exactly.
func mkdir(path string, mode os.FileMode, uid, gid int) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// mkdirLike creates dir (or fixes it) with the mode and owner of like, or
// 0755 root when like does not exist.
func mkdirLike(dir, like string) error {
	mode, uid, gid := os.FileMode(0o755), 0, 0
	if fi, err := os.Stat(like); err == nil {
		st := fi.Sys().(*syscall.Stat_t)
		mode, uid, gid = fi.Mode().Perm(), int(st.Uid), int(st.Gid)
	}
	return mkdir(dir, mode, uid, gid)
}

// newKey returns an ed25519 private key in OpenSSH PEM format and its
// public key in authorized_keys format (with newline).
func newKey(comment string) (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal ed25519 key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal ed25519 public key: %w", err)
	}
	public = ssh.MarshalAuthorizedKey(sp)
	if comment != "" {
		public = append(bytes.TrimSuffix(public, []byte("\n")), []byte(" "+comment+"\n")...)
	}
	return pem.EncodeToMemory(block), public, nil
}

// prepareHost creates h.Dir: the host's /etc (an overlay upper dir over the
// template, or a full copy), /home with admin's, /root, /var/log and /tmp.
// It returns the host's public host key (authorized_keys format).
func prepareHost(h *Host, t *template, adminPub []byte) ([]byte, error) {
	if err := mkdir(h.Dir, 0o755, 0, 0); err != nil {
		return nil, err
	}
	etc := filepath.Join(h.Dir, "etc")
	if t.lower != "" {
		if err := mkdir(filepath.Join(h.Dir, "etc.work"), 0o755, 0, 0); err != nil {
			return nil, err
		}
	} else if out, err := exec.Command("cp", "-a", t.etc, etc).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy template /etc to %s: %w: %s", etc, err, bytes.TrimSpace(out))
	}
	// In the upper dir, directories the lower has too must carry the same
	// mode and owner: a merged directory takes the upper's.
	for _, d := range []string{"", "ssh", "ssh/sshd_config.d"} {
		if err := mkdirLike(filepath.Join(etc, d), filepath.Join("/etc", d)); err != nil {
			return nil, err
		}
	}

	files, pub, err := hostFiles(h, t.hosts)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(etc, f.path), f.data, f.mode, 0, 0); err != nil {
			return nil, err
		}
	}

	home := filepath.Join(h.Dir, "home", AdminUser)
	if err := mkdir(filepath.Join(h.Dir, "home"), 0o755, 0, 0); err != nil {
		return nil, err
	}
	if err := adminHome(home, adminPub, t.uid, t.gid, t.skel); err != nil {
		return nil, err
	}
	root := filepath.Join(h.Dir, "root")
	if err := mkdir(root, 0o700, 0, 0); err != nil {
		return nil, err
	}
	for name, data := range t.skel {
		if name != ".bash_logout" {
			if err := writeFile(filepath.Join(root, name), data, 0o644, 0, 0); err != nil {
				return nil, err
			}
		}
	}

	// /srv is the host's own (tests make shared or linked directories
	// there), never the machine's.
	if err := mkdir(filepath.Join(h.Dir, "srv"), 0o755, 0, 0); err != nil {
		return nil, err
	}

	logDir := filepath.Join(h.Dir, "log")
	if err := mkdir(logDir, 0o755, 0, 0); err != nil {
		return nil, err
	}
	logs := []struct {
		name string
		mode os.FileMode
		gid  int
	}{
		{"wtmp", 0o664, t.utmpGID},
		{"btmp", 0o660, t.utmpGID},
		{"lastlog", 0o664, t.utmpGID},
	}
	for _, l := range logs {
		if err := writeFile(filepath.Join(logDir, l.name), nil, l.mode, 0, l.gid); err != nil {
			return nil, err
		}
	}
	if err := mkdir(filepath.Join(h.Dir, "tmp"), 0o777|os.ModeSticky, 0, 0); err != nil {
		return nil, err
	}
	return pub, nil
}

// etcFile is a file of a host's own /etc, path relative to it.
type etcFile struct {
	path string
	data []byte
	mode os.FileMode
}

// hostFiles returns the files that make h itself under /etc: hostname,
// hosts (hostsBase and h's line), a new ed25519 host key and the sshd
// drop-in that makes sshd listen on h's address with that key. It returns
// the public host key (authorized_keys format) too.
func hostFiles(h *Host, hostsBase []byte) ([]etcFile, []byte, error) {
	key, pub, err := newKey("root@" + h.Name)
	if err != nil {
		return nil, nil, err
	}
	hosts := fmt.Appendf(nil, "%s\n%s\t%s\n", bytes.TrimRight(hostsBase, "\n"), h.Addr, h.Name)
	conf := fmt.Sprintf("# breakglass lab host %s: its own address and host key.\n"+
		"# No port here, so a Port directive still applies.\n"+
		"ListenAddress %s\nHostKey /etc/ssh/ssh_host_ed25519_key\n", h.Name, h.Addr)
	return []etcFile{
		{"hostname", []byte(h.Name + "\n"), 0o644},
		{"hosts", hosts, 0o644},
		{"ssh/ssh_host_ed25519_key", key, 0o600},
		{"ssh/ssh_host_ed25519_key.pub", pub, 0o644},
		{"ssh/sshd_config.d/lab.conf", []byte(conf), 0o644},
	}, pub, nil
}

// adminHome creates admin's home dir with .ssh/authorized_keys holding
// adminPub and the skeleton files; its parent must exist.
func adminHome(home string, adminPub []byte, uid, gid int, skel map[string][]byte) error {
	if err := mkdir(filepath.Join(home, ".ssh"), 0o700, uid, gid); err != nil {
		return err
	}
	if err := mkdir(home, 0o700, uid, gid); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(home, ".ssh", "authorized_keys"), adminPub, 0o600, uid, gid); err != nil {
		return err
	}
	for name, data := range skel {
		if err := writeFile(filepath.Join(home, name), data, 0o644, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
