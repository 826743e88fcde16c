package tasks

import (
	"errors"
	"reflect"
	"testing"
)

// TestStrictModes: the one judgement, component by component, as sshd's
// safe_path (and Debian's secure_permissions) decide.
func TestStrictModes(t *testing.T) {
	const bob = 1001
	dir := func(p string, uid int, perm uint32) PathStat {
		return PathStat{Path: p, Exists: true, UID: uid, GID: uid, Mode: modeDir | perm}
	}
	file := func(p string, uid int, perm uint32) PathStat {
		return PathStat{Path: p, Exists: true, UID: uid, GID: uid, Mode: modeRegular | perm}
	}
	uf := &UserFacts{Name: "bob", Exists: true, UID: bob, GID: bob, Home: "/home/bob", HomeReal: "/home/bob"}
	home := func(homePerm uint32, key PathStat) *KeyFile {
		return &KeyFile{Path: key.Path, Real: key.Path, Walk: []PathStat{
			key, dir("/home/bob/.ssh", bob, 0o700), dir("/home/bob", bob, homePerm), dir("/home", 0, 0o755), dir("/", 0, 0o755),
		}}
	}
	deb := &DebianGroups{PrimaryGID: map[int]int{bob: bob, 0: 0}, Members: map[int][]string{bob: nil}, UIDNames: map[int]string{bob: "bob"}}
	type fix struct{ chown, chmod []string }
	for _, tc := range []struct {
		name    string
		kf      *KeyFile
		deb     *DebianGroups
		inHome  bool
		refused bool
		fixes   map[string]fix // path → fixes, only the components that have one
		debian  string         // the component Debian's sshd accepts
	}{
		{name: "healthy", kf: home(0o755, file("/home/bob/.ssh/authorized_keys", bob, 0o600)), inHome: true},
		{name: "root's file", kf: home(0o755, file("/home/bob/.ssh/authorized_keys", 0, 0o644)), inHome: true},
		{name: "someone else's file", kf: home(0o755, file("/home/bob/.ssh/authorized_keys", 1002, 0o600)), inHome: true, refused: true,
			fixes: map[string]fix{"/home/bob/.ssh/authorized_keys": {chown: []string{"bg_chown", "bob", "/home/bob/.ssh/authorized_keys"}}}},
		{name: "home group-writable, upstream sshd", kf: home(0o775, file("/home/bob/.ssh/authorized_keys", bob, 0o600)), inHome: true, refused: true,
			fixes: map[string]fix{"/home/bob": {chmod: []string{"bg_chmod", "go-w", "/home/bob", "bob"}}}},
		{name: "home group-writable, Debian's sshd, bob alone", kf: home(0o775, file("/home/bob/.ssh/authorized_keys", bob, 0o600)), deb: deb, inHome: true,
			fixes: map[string]fix{"/home/bob": {chmod: []string{"bg_chmod", "go-w", "/home/bob", "bob"}}}, debian: "/home/bob"},
		{name: "home world-writable, Debian's sshd", kf: home(0o777, file("/home/bob/.ssh/authorized_keys", bob, 0o600)), deb: deb, inHome: true, refused: true,
			fixes: map[string]fix{"/home/bob": {chmod: []string{"bg_chmod", "go-w", "/home/bob", "bob"}}}},
		{name: "home group-writable, Debian's sshd, a second member", kf: home(0o775, file("/home/bob/.ssh/authorized_keys", bob, 0o600)),
			deb:    &DebianGroups{PrimaryGID: deb.PrimaryGID, Members: map[int][]string{bob: {"bob", "frank"}}, UIDNames: deb.UIDNames},
			inHome: true, refused: true, fixes: map[string]fix{"/home/bob": {chmod: []string{"bg_chmod", "go-w", "/home/bob", "bob"}}}},
		{name: "outside home: a user's directory goes to root", kf: &KeyFile{Path: "/etc/ssh/keys/bob", Real: "/etc/ssh/keys/bob", Walk: []PathStat{
			file("/etc/ssh/keys/bob", 1002, 0o644), dir("/etc/ssh/keys", 1002, 0o775), dir("/etc/ssh", 0, 0o755), dir("/etc", 0, 0o755), dir("/", 0, 0o755)}},
			refused: true, fixes: map[string]fix{
				"/etc/ssh/keys/bob": {chown: []string{"bg_chown", "bob", "/etc/ssh/keys/bob"}},
				"/etc/ssh/keys":     {chown: []string{"bg_chown", "root", "/etc/ssh/keys"}, chmod: []string{"bg_chmod", "go-w", "/etc/ssh/keys", "bob"}}}},
		{name: "outside home: shared sticky /tmp is refused, never chmodded", kf: &KeyFile{Path: "/tmp/bob", Real: "/tmp/bob", Walk: []PathStat{
			file("/tmp/bob", bob, 0o600), dir("/tmp", 0, 0o1777), dir("/", 0, 0o755)}}, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := uf.StrictModes(tc.kf, tc.deb)
			if err != nil {
				t.Fatal(err)
			}
			if v.InHome != tc.inHome || v.Refused() != tc.refused {
				t.Errorf("in home %v, refused %v; want %v, %v", v.InHome, v.Refused(), tc.inHome, tc.refused)
			}
			got := map[string]fix{}
			for _, c := range v.Walk {
				own, mod := c.Fix("bob")
				var f fix
				if own != nil {
					f.chown = own.Argv()
				}
				if mod != nil {
					f.chmod = mod.Argv()
				}
				if f.chown != nil || f.chmod != nil {
					got[c.Path] = f
				}
				if c.DebianAccepted != (c.Path == tc.debian) {
					t.Errorf("%s: Debian accepts %v", c.Path, c.DebianAccepted)
				}
			}
			if len(tc.fixes) == 0 {
				tc.fixes = map[string]fix{}
			}
			if !reflect.DeepEqual(got, tc.fixes) {
				t.Errorf("fixes\n got %v\nwant %v", got, tc.fixes)
			}
		})
	}

	// A key file that is not a regular file: no owner or mode helps.
	fifo := home(0o755, PathStat{Path: "/home/bob/.ssh/authorized_keys", Exists: true, UID: bob, Mode: 0o010000 | 0o600})
	var nr *NotRegularError
	if _, err := uf.StrictModes(fifo, nil); !errors.As(err, &nr) || nr.Dir {
		t.Errorf("fifo: %v", err)
	}
}
