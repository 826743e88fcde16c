package audit

import (
	"fmt"
	"strings"
)

// Check is one entry of the catalogue of lockout causes: a stable finding
// id, what it means and how it is fixed. The README's list of ids and
// docs/lockouts.md are generated from Catalog (go test ./internal/audit
// -run TestCatalog -update), and a test keeps every id the checks emit in
// it.
type Check struct {
	ID     string
	Family string // "account", "sshd", "session", "key", "pam", "daemon", "sudo", "second", "login", "run"
	Cause  string // when it fires, and what refuses
	Fix    string // the kind of fix: a command (and whether recover runs it), or what a person decides
}

// Catalog is every finding id audit (and the runner) reports, by family.
var Catalog = []Check{
	{"user-missing", "account", "a break-glass user does not exist", "command: useradd, then install the key"},
	{"account-locked", "account", "password field starts with '!' and UsePAM no: sshd refuses the account", "command (recover runs it): usermod -p '*'"},
	{"account-expired", "account", "shadow expiry date passed (lockout) or set (risk)", "command (recover runs it): chage -E -1"},
	{"password-inactive", "account", "password aged out past the inactive period: PAM's account stage refuses", "command (recover runs it): chage -d today -M -1 -I -1"},
	{"password-change-required", "account", "PAM demands a password change a key login cannot make", "command (recover runs it): chage -d today -M -1"},
	{"shell-missing", "account", "login shell missing, not executable, or nologin/false", "command (recover runs it): usermod -s /bin/bash"},
	{"home-missing", "account", "home directory missing: home-relative key files with it", "command (recover runs it): install -d"},
	{"user-filtered", "sshd", "AllowUsers, DenyUsers, AllowGroups or DenyGroups refuse the user", "command: a drop-in line (recover adds it through the sshd module)"},
	{"root-refused", "sshd", "PermitRootLogin no for a uid 0 user", "command: comment out the line, reload"},
	{"pubkey-disabled", "sshd", "PubkeyAuthentication no for the user", "command: comment out the line, reload"},
	{"second-factor-required", "sshd", "AuthenticationMethods needs more than a key", "command: a Match exemption, reload"},
	{"max-auth-tries", "sshd", "MaxAuthTries low enough that an agent's keys use it up", "person: offer only the break-glass key"},
	{"forced-command", "session", "ForceCommand for the user, or a key line's command= that cannot but fail (false, nologin, exit N, or a program that does not exist or the user cannot execute, checked as the user): the key is accepted, the user's command never runs", "person: remove it for the user, or install the program it names (line and file named)"},
	{"chroot", "session", "ChrootDirectory for the user: the session is locked into it (or refused)", "person: remove it for the user (line and file named)"},
	{"session-limit", "session", "MaxSessions 0 for the user: every session channel is refused", "command: comment out the line, reload"},
	{"key-revoked", "key", "the key is in sshd's RevokedKeys list (text or binary KRL), or that list is missing, which revokes every key", "person: a new key, or take the key out of the list"},
	{"unsafe-path", "key", "StrictModes: key file or a directory on its way owned by another user or writable by group/others (risk when only Debian's group-write tolerance lets it in)", "command (recover runs it): chown / chmod go-w on the component"},
	{"unreadable", "key", "the user cannot traverse or read the key file", "command (recover runs it): chmod"},
	{"not-regular", "key", "the key path is not a regular file", "command: move it aside, install the keys"},
	{"key-absent", "key", "no key line in any file sshd reads for the user", "command or person: install the key at the effective path"},
	{"key-options", "key", "from= not matching the client, or expiry-time= in the past", "person: fix the option"},
	{"key-algorithm", "key", "key type or size sshd does not accept", "person: a new ed25519 key"},
	{"key-file-too-large", "key", "a key file larger than breakglass reads: not checked", "person: look at what fills it"},
	{"symlink-in-path", "key", "a symbolic link a user could have planted on the way to the key file: not followed, not judged", "person: replace the link"},
	{"selinux-label", "key", "~/.ssh not labelled ssh_home_t while SELinux enforces", "command: restorecon -RF"},
	{"nologin-file", "pam", "/run/nologin or /etc/nologin blocks everyone but root", "command (recover runs it): rm -f"},
	{"pam-access", "pam", "pam_access denies the user from the client (first matching access.conf rule)", "command: a +:USER:ALL line above the rule"},
	{"pam-broken", "pam", "a module of the sshd stack does not exist", "person: install it or fix the stack"},
	{"pam-time", "pam", "pam_time: a time.conf rule for sshd and the user that does not allow now", "person: change the rule (line named)"},
	{"pam-limits", "pam", "pam_limits: the maxlogins or maxsyslogins limit that wins for the user (user, @group, %group, %, * and uid/gid ranges; limits.conf then limits.d, or conf=) leaves no room for one more session now (0; 1 where pam_limits counts logind's sessions; or the sessions open now), or conf= is missing", "person: change the limit (line named)"},
	{"pam-listfile", "pam", "pam_listfile: the user (group, shell, client) is on a deny list, off an allow list, or the list is missing, world-writable or not a regular file", "command (recover runs it for a deny list's line naming just the user: removed, a backup kept) or person: the entry to add, the mode to fix"},
	{"pam-succeed-if", "pam", "pam_succeed_if in the account stage: a condition false for the user (every operator, globs included; use_uid: about root), or one the module cannot evaluate", "person: change the condition (line named)"},
	{"pam-securetty", "pam", "pam_securetty in the account stage: /etc/securetty exists and does not list sshd's tty \"ssh\" (or is world-writable): root is refused", "person: add ssh to the list, or remove the module (line named)"},
	{"config-invalid", "daemon", "sshd -t fails: the next restart starts no sshd", "command: move the broken drop-in aside"},
	{"config-pending", "daemon", "configuration changed after the running sshd read it", "command: validate, then reload"},
	{"penalty-not-exempt", "daemon", "OpenSSH ≥ 9.8 PerSourcePenalties on and this controller's address not exempt: refused logins get every later connection from it closed before authentication", "command: a PerSourcePenaltyExemptList drop-in (sshd module)"},
	{"socket-overrides-port", "daemon", "socket activation: sshd_config's Port or ListenAddress (address and port) is not where ssh.socket listens; the socket decides now, the listener changes when the socket is rewritten", "person: make ListenStream agree with Port and ListenAddress"},
	{"privsep-dir", "daemon", "sshd's privilege separation directory is missing", "command (recover runs it): install -d"},
	{"sudo-no-rule", "sudo", "no sudo rule, or only rules that ask for a password a key-only user lacks", "command: a validated sudoers drop-in"},
	{"sudo-negated", "sudo", "sudo -l -U lists rules, but sudo -l -U USER true (the probe's command) is refused: a later rule takes it away (!ALL, !/usr/bin/true, a later drop-in)", "person: remove the negation (line named) or move the user's rule after it"},
	{"sudo-file-ignored", "sudo", "a sudoers.d file whose name sudo skips ('.' or '~')", "command: validate, install under a name sudo reads"},
	{"sudo-file-unsafe", "sudo", "a sudoers file sudo skips for its owner or mode", "command: chown root, chmod 0440"},
	{"sudo-syntax", "sudo", "visudo -c reports a syntax error", "command: visudo -f the file"},
	{"sudo-requiretty", "sudo", "Defaults requiretty applies to the user", "command: a Defaults:USER !requiretty drop-in"},
	{"sudo-account", "sudo", "sudo's PAM account stage refuses the user (expired, aged out)", "command (recover runs it): chage"},
	{"sudo-faillock", "sudo", "pam_faillock locked the user's sudo password", "command: faillock --reset"},
	{"second-path-not-running", "second", "the emergency sshd (secondary_sshd) is not running, or was never set up", "command: breakglass apply (it starts it again)"},
	{"second-path-no-boot", "second", "nothing starts the emergency sshd at boot: its systemd unit is not enabled, its sysv init script or cron @reboot entry is missing, or the host runs neither systemd, sysv-rc nor a cron daemon (risk); its init script is in place but PID 1 is no sysvinit, which may never run it (info: only the host's owner knows)", "command: systemctl enable, or breakglass apply; person: install cron where the host runs nothing at boot, or have PID 1 run the init script"},
	{"second-path-shared", "second", "the emergency sshd shares a weak point with the main path: keys under a home, UsePAM yes, the main host key files, an Include", "command: breakglass apply"},
	{"second-path-keys-differ", "second", "the emergency sshd's key store differs from the keys the play gives", "command: breakglass apply"},
	{"second-path-known-hosts", "second", "[addr]:port of the emergency sshd is missing from the known_hosts file: plain ssh with strict checking refuses it", "command: breakglass apply (records it when it presents the verified host key)"},
	{"second-path-needs-sudo", "second", "info: without root_login the second path gives root only through sudo, which it shares with the main path", "person: root_login: true on the secondary_sshd task"},
	{"emergency-access", "second", "info: the exact command to get in through the emergency port", "none: it is the way in"},
	{"login-penalised", "login", "a real login was closed before authentication because sshd penalised this controller's address (PerSourcePenalties): not the user's lockout", "person: exempt the controller, fix the refused logins"},
	{"login-failed-unexplained", "login", "a real login failed and no check explains it: sshd's log lines of that attempt", "person: raise LogLevel, read the log"},
	{"control-login-failed", "run", "sshd refused the inventory's user; the run went on as a break-glass user", "command: breakglass recover"},
	{"drift", "run", "what apply would change", "command: breakglass apply"},
}

// lookupCheck returns the catalogue entry of id.
func lookupCheck(id string) (Check, bool) {
	for _, c := range Catalog {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// CatalogMarkdown renders Catalog as a Markdown table.
func CatalogMarkdown() string {
	var b strings.Builder
	b.WriteString("| id | family | cause | fix |\n|---|---|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, c := range Catalog {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", c.ID, c.Family, esc(c.Cause), esc(c.Fix))
	}
	return b.String()
}
