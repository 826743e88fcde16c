// strictmodes: the one judgement of sshd's StrictModes check, used by
// ssh_permissions (to repair), audit (to report, with typed fixes that
// recover runs) and every other caller, so that the same host gives the
// same answer everywhere.
//
// What sshd checks (OpenSSH auth2-pubkey.c, auth.c auth_openfile, misc.c
// safe_path): it opens the key file as the user, resolves symlinks
// (realpath), and accepts the file only if it is a regular file owned by
// the user or root and not writable by group or others; then, walking up
// the resolved path, every directory up to and including the user's
// (resolved) home directory, or up to / for a file outside home, must be
// owned by the user or root and not writable by group or others. The first
// component that fails makes sshd ignore the whole file ("Authentication
// refused: bad ownership or modes for directory /home/bob").
//
// Debian's OpenSSH (and Ubuntu's) carries a patch (user-group-modes,
// secure_permissions) that accepts a group-writable component whose group
// has no member but the owner. The judgement reports that case as
// DebianAccepted: not refused by this host's sshd now, still repaired,
// since upstream OpenSSH and RHEL refuse it, and so does Debian's once the
// group gains a member.

package tasks

import (
	"fmt"
	"slices"
	"strings"

	"github.com/breakglass/breakglass/internal/shell"
)

// PermFix is one repair StrictModes asks for, done through the no-follow
// helpers of nofollow.sh: `bg_chown OWNER PATH` or `bg_chmod go-w PATH
// USER`, which re-check the path when they act and never follow a link a
// user planted.
type PermFix struct {
	Op   string // "chown" or "chmod"
	Path string
	// Arg is the new owner (chown) or the mode change, "go-w" (chmod).
	Arg string
	// User is the user whose key file the walk is for: bg_chmod acts as
	// that user in a directory users can change.
	User string
}

// Argv returns the fix as a typed action (RunAction, a plan step).
func (f PermFix) Argv() []string {
	if f.Op == "chown" {
		return []string{"bg_chown", f.Arg, f.Path}
	}
	return []string{"bg_chmod", f.Arg, f.Path, f.User}
}

// Text returns the fix as a person would type it: chown -h, which never
// follows a link, and chmod (which has no such flag; the path was
// resolved, so it is no link when judged).
func (f PermFix) Text() string {
	if f.Op == "chown" {
		return shell.Join("chown", "-h", f.Arg, f.Path)
	}
	return shell.Join("chmod", f.Arg, f.Path)
}

// PathVerdict is StrictModes' judgement of one component of the walk.
type PathVerdict struct {
	PathStat
	File bool // the key file itself; otherwise a directory above it
	// BadOwner: owned by neither the user nor root. Owner is who should
	// own it: the user for the key file and anything inside home, root for
	// a directory outside home (a shared directory such as
	// /etc/ssh/authorized_keys must not belong to one user).
	BadOwner bool
	Owner    string
	// GroupWritable, OtherWritable: the mode has g+w, o+w.
	GroupWritable, OtherWritable bool
	// DebianAccepted: only group-writable, and this host's sshd is
	// Debian's, whose group has no member but the owner: accepted now.
	DebianAccepted bool
	// SharedSticky: a writable sticky directory outside home (/tmp):
	// removing write would break the host, so there is no chmod fix; the
	// key file must move.
	SharedSticky bool
}

// Writable reports whether group or others may write the component.
func (v PathVerdict) Writable() bool { return v.GroupWritable || v.OtherWritable }

// Refused reports whether this host's sshd refuses the component.
func (v PathVerdict) Refused() bool {
	return v.BadOwner || v.Writable() && !v.DebianAccepted
}

// Fix returns the repairs of the component: the chown, nil when the
// owner is right, and the chmod go-w, nil when the mode is right or the
// component is a shared sticky directory (no chmod; the key file must
// move). Both are made, chown first, even when Debian's sshd accepts the
// mode now.
func (v PathVerdict) Fix(user string) (chown, chmod *PermFix) {
	if v.BadOwner {
		chown = &PermFix{Op: "chown", Path: v.Path, Arg: v.Owner, User: user}
	}
	if v.Writable() && !v.SharedSticky {
		chmod = &PermFix{Op: "chmod", Path: v.Path, Arg: "go-w", User: user}
	}
	return chown, chmod
}

// StrictModesVerdict is the judgement of one key file's walk.
type StrictModesVerdict struct {
	// Walk holds the existing components in sshd's order: the file
	// (symlinks resolved), then each directory up to and including home,
	// or up to / (InHome false).
	Walk   []PathVerdict
	InHome bool
	// Missing lists the components that do not exist (sshd cannot open
	// the file; nothing to judge there).
	Missing []string
}

// Refused reports whether this host's sshd, with StrictModes on, ignores
// the key file.
func (v *StrictModesVerdict) Refused() bool {
	return slices.ContainsFunc(v.Walk, PathVerdict.Refused)
}

// DebianGroups is what Debian's user-group-modes patch reads to accept a
// group-writable path. Nil when this host's sshd is not Debian's (or
// Ubuntu's) or the groups were not read.
type DebianGroups struct {
	PrimaryGID map[int]int      // /etc/passwd: uid → gid
	Members    map[int][]string // /etc/group: gid → member names
	UIDNames   map[int]string   // /etc/passwd: uid → name
}

// accepts reports whether Debian's sshd accepts st for uid although it is
// group-writable (secure_permissions): not world-writable, and its group
// has exactly one member, uid itself: every account whose primary group it
// is is uid, and its member list is empty or only st's owner.
func (d *DebianGroups) accepts(st PathStat, uid int) bool {
	if d == nil || d.PrimaryGID == nil || d.Members == nil {
		return false
	}
	if st.Perm()&0o002 != 0 || st.Perm()&0o020 == 0 {
		return false
	}
	members, ok := d.Members[st.GID]
	if !ok {
		return false
	}
	n := 0
	for u, gid := range d.PrimaryGID {
		if gid == st.GID {
			n++
			if u != uid {
				return false
			}
		}
	}
	if len(members) > 0 {
		n++
		if owner, ok := d.UIDNames[st.UID]; !ok || members[0] != owner || len(members) > 1 {
			return false
		}
	}
	return n > 0
}

// DebianSSHD reports whether sshd -V (with the package version breakglass
// appends, "openssh-server=…") is Debian's or Ubuntu's build, which
// carries the user-group-modes patch.
func DebianSSHD(version string) bool { return strings.Contains(version, "openssh-server=") }

// StrictModes judges key file k of u as sshd's StrictModes check does (see
// the top of the file). deb is nil unless the host's sshd is Debian's.
// A component that is not a directory (above the file) or a file that is
// not regular is reported as an error: sshd reads no key there, and no
// change of owner or mode helps.
func (u *UserFacts) StrictModes(k *KeyFile, deb *DebianGroups) (*StrictModesVerdict, error) {
	walk, inHome := u.StrictModesWalk(k)
	v := &StrictModesVerdict{InHome: inHome}
	for j, c := range walk {
		if !c.Exists {
			v.Missing = append(v.Missing, c.Path)
			continue
		}
		isFile := j == 0
		switch {
		case isFile && !c.IsRegular():
			return nil, &NotRegularError{Path: c.Path, Dir: false}
		case !isFile && !c.IsDir():
			return nil, &NotRegularError{Path: c.Path, Dir: true}
		}
		pv := PathVerdict{PathStat: c, File: isFile}
		if c.UID != 0 && c.UID != u.UID {
			pv.BadOwner, pv.Owner = true, u.Name
			if !isFile && !inHome {
				pv.Owner = "root"
			}
		}
		perm := c.Perm()
		pv.GroupWritable, pv.OtherWritable = perm&0o020 != 0, perm&0o002 != 0
		pv.DebianAccepted = pv.GroupWritable && !pv.OtherWritable && deb.accepts(c, u.UID)
		pv.SharedSticky = pv.Writable() && !isFile && !inHome && perm&0o1000 != 0
		v.Walk = append(v.Walk, pv)
	}
	return v, nil
}

// NotRegularError: the key file is not a regular file, or a component
// above it is not a directory.
type NotRegularError struct {
	Path string
	Dir  bool // a directory was expected
}

func (e *NotRegularError) Error() string {
	if e.Dir {
		return fmt.Sprintf("%s is not a directory", e.Path)
	}
	return fmt.Sprintf("%s is not a regular file: sshd will not read keys from it; move it away", e.Path)
}

// Repaired returns the key file's whole walk (k.Walk, up to /) as it is
// once the verdict's owner repairs are made: what the user can then
// traverse and read.
func (v *StrictModesVerdict) Repaired(k *KeyFile, u *UserFacts) []PathStat {
	out := slices.Clone(k.Walk)
	for _, pv := range v.Walk {
		if !pv.BadOwner {
			continue
		}
		for j := range out {
			if out[j].Path == pv.Path {
				out[j].UID = u.UID
				if pv.Owner == "root" {
					out[j].UID = 0
				}
			}
		}
	}
	return out
}
