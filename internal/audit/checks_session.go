package audit

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/shell"
)

// The refusals that come after sshd has accepted the key, or outside its
// authentication: a forced command or a chroot in place of the user's
// command, a session limit, and the revoked key list. Each is judged
// from sshd -T's effective value for this user and connection.

// session: ForceCommand, ChrootDirectory, MaxSessions and RevokedKeys as
// sshd -T gives them for the user.
func (c *checker) session(u auditedUser) {
	uf, cfg := u.uf, &u.uf.SSHD
	name := uf.Name
	// A forced command or a chroot is often meant for other accounts
	// (sftp-only users): only a user who must log in is locked out by it.
	sev := SeverityInfo
	if u.expected {
		sev = SeverityLockout
	}
	if fc := cfg.Get("forcecommand"); fc != "" && fc != "none" {
		ev := setting(c.conf, "forcecommand", fc)
		detail := fmt.Sprintf("%s applies to %s from %s: sshd accepts the key, then runs %q in place of every command and shell the user asks for, so neither breakglass's probe nor a root shell can run", ev, name, uf.Conn.Client, fc)
		fix := fmt.Sprintf("remove that ForceCommand for %s (%s), or leave %s out of its Match block (e.g. Match User *,!%s), then %s", name, evidence(c.conf, "forcecommand", []string{fc}), name, name, c.reload())
		fsev := sev
		if why := c.commandFails(name, fc); why != "" {
			// Not even what it forces works: every session of the user
			// fails, whoever the user is.
			fsev = SeverityLockout
			detail = fmt.Sprintf("%s applies to %s from %s: sshd accepts the key, then the forced command %s, so every session of %s fails at once", ev, name, uf.Conn.Client, why, name)
			fix = fmt.Sprintf("install %s (or correct the path in %s) if %s is meant to run only that; otherwise %s", commandProgram(fc), evidence(c.conf, "forcecommand", []string{fc}), name, fix)
		}
		c.add(name, "forced-command", fsev, firstFile(c.conf, "forcecommand", []string{fc}), detail, fix)
	}
	if ch := cfg.Get("chrootdirectory"); ch != "" && ch != "none" {
		ev := setting(c.conf, "chrootdirectory", ch)
		c.add(name, "chroot", sev, firstFile(c.conf, "chrootdirectory", []string{ch}),
			fmt.Sprintf("%s applies to %s from %s: sshd accepts the key, then locks the session into %s (or refuses it, when that directory is not root-owned and unwritable to others all the way up): no shell, sudo or probe outside it", ev, name, uf.Conn.Client, ch),
			fmt.Sprintf("remove that ChrootDirectory for %s (%s), or leave %s out of its Match block, then %s", name, evidence(c.conf, "chrootdirectory", []string{ch}), name, c.reload()))
	}
	if ms := cfg.Get("maxsessions"); ms == "0" {
		c.add(name, "session-limit", SeverityLockout, firstFile(c.conf, "maxsessions", []string{ms}),
			fmt.Sprintf("%s for %s from %s: sshd accepts the key, then refuses every session channel (\"open failed: administratively prohibited\"), so no command or shell runs", setting(c.conf, "maxsessions", ms), name, uf.Conn.Client),
			c.commentOut("maxsessions", ms)+"  # sshd's default is MaxSessions 10")
	}
	if rk := cfg.Get("revokedkeys"); rk != "" && rk != "none" && c.h.Revoked != nil {
		if l := c.h.Revoked[rk]; l != nil && l.Kind == "missing" {
			c.add(name, "key-revoked", SeverityLockout, rk,
				fmt.Sprintf("%s, but %s does not exist or cannot be read: sshd refuses every key (\"Error checking authentication key\")", setting(c.conf, "revokedkeys", rk), rk),
				fmt.Sprintf("restore %s from where it is kept; an empty file revokes nothing (%s), or remove the RevokedKeys line (%s), then %s",
					rk, shell.Join("install", "-m", "0644", "/dev/null", rk), evidence(c.conf, "revokedkeys", []string{rk}), c.reload()))
		}
	}
}

// revokedBy returns, for a user's effective RevokedKeys, a function that
// says why sshd refuses a key (and "" when it does not), or nil when no
// list applies or it was not read.
func (c *checker) revokedBy(rk string) func(ssh.PublicKey) string {
	if rk == "" || rk == "none" || c.h.Revoked == nil {
		return nil
	}
	l := c.h.Revoked[rk]
	if l == nil {
		return nil
	}
	switch l.Kind {
	case "text":
		// sshd compares the keys of the list (one per line) with the key.
		var keys []ssh.PublicKey
		var lines []int
		for i, raw := range strings.Split(string(c.h.AccessConf[rk]), "\n") {
			if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(raw)); err == nil {
				keys, lines = append(keys, pk), append(lines, i+1)
			}
		}
		return func(pk ssh.PublicKey) string {
			for i, k := range keys {
				if bytes.Equal(k.Marshal(), pk.Marshal()) {
					return fmt.Sprintf("revoked: line %d of the RevokedKeys list %s names this key", lines[i], rk)
				}
			}
			return ""
		}
	case "krl":
		return func(pk ssh.PublicKey) string {
			sha256 := ssh.FingerprintSHA256(pk)
			sum := sha1.Sum(pk.Marshal())
			sha1fp := "SHA1:" + base64.RawStdEncoding.EncodeToString(sum[:])
			for _, e := range l.Listing {
				f := strings.Fields(e)
				if len(f) < 2 {
					continue
				}
				// A fingerprint anywhere on the line, or the key itself.
				hit := strings.Contains(e, sha256) || strings.Contains(e, sha1fp)
				switch f[0] {
				case "key:":
					if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f[1:], " "))); err == nil {
						hit = hit || bytes.Equal(k.Marshal(), pk.Marshal())
					}
				}
				if hit {
					return fmt.Sprintf("revoked: the binary key revocation list %s (RevokedKeys) holds it (ssh-keygen -Q -l -f %s: %q)", rk, rk, strings.TrimSpace(e))
				}
			}
			return ""
		}
	}
	return nil
}
