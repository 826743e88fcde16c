package audit

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// The lab scenarios: each host gets one set of faults, and each audit of
// it must find exactly these findings. The integration test injects the
// faults on real lab hosts (and proves with plain ssh that sshd really
// refuses the logins it calls locked out); with -record it saves what the
// host query read, and TestRecordedScenarios replays those recordings
// (testdata/lab/*.txt) through the same checks, so the expectations are
// checked without a lab too.

// labHost is one lab host: its faults and the audits run on it.
type labHost struct {
	name  string
	setup string // shell run as root on the host; {{key:NAME}} is NAME's public key
	// audits run in order, after setup
	audits []auditCase
	// refused and works are users whose ssh login (with their own key)
	// sshd must refuse, or accept; refusedOn and worksOn add to them on
	// hosts of one kind.
	refused, works     []string
	refusedOn, worksOn map[lab.Kind][]string
	// hold are users who keep an interactive session (a pty) open
	// during the audits and logins.
	hold []string
}

// auditCase is one audit and exactly what it must find.
type auditCase struct {
	name string // recording: testdata/lab/NAME.txt
	opts Options
	// want is every finding as "user id severity path", sorted; wantOn
	// adds findings on hosts of one kind (the namespace kind's are the
	// recorded ones).
	want   []string
	wantOn map[lab.Kind][]string
	// fixes: "user id path" → the exact fix.
	fixes map[string]string
	// details: "user id path" → a piece of evidence the detail must hold.
	details map[string][]string
	// only, when set, restricts the comparison to these users' findings
	// (and host-wide ones): with --all-users the lab host's passwd holds
	// the machine's accounts too, which the test does not control.
	only []string
}

// setupPrelude defines the helpers setup scripts use: bg_adduser NAME KEY
// makes a key-only user with the key, and NOPASSWD sudo; bg_reload sends
// sshd SIGHUP and waits until it has re-read its configuration (it
// rewrites its pidfile then).
const setupPrelude = `set -e
bg_adduser() {
	useradd -m -s /bin/bash "$1"
	usermod -p '*' "$1"
	install -d -o "$1" -g "$1" -m 0700 "/home/$1/.ssh"
	printf '%s\n' "$2" >"/home/$1/.ssh/authorized_keys"
	chown "$1:$1" "/home/$1/.ssh/authorized_keys"
	chmod 0600 "/home/$1/.ssh/authorized_keys"
	printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$1" >"/etc/sudoers.d/bgtest-$1"
	chmod 0440 "/etc/sudoers.d/bgtest-$1"
}
bg_reload() {
	old=$(stat -c %.9Y /run/sshd.pid)
	kill -HUP "$(cat /run/sshd.pid)"
	i=0
	while [ "$(stat -c %.9Y /run/sshd.pid 2>/dev/null)" = "$old" ]; do
		i=$((i + 1))
		[ $i -lt 250 ] || { echo "sshd did not reload" >&2; exit 1; }
		sleep 0.02
	done
	sleep 0.1
}
`

// kindPrelude is what every host of a kind gets before its scenario, to
// make it the healthy host the scenarios start from. OpenSSH ≥ 9.8
// (trixie) penalises an address for refused logins: unexempted, the
// controller's address is a true penalty-not-exempt risk on every host,
// and the scenarios' refused logins would get it dropped before the
// logins that must work. A host breakglass manages has it exempt.
var kindPrelude = map[lab.Kind]string{
	lab.Trixie: `printf 'PerSourcePenaltyExemptList 127.0.0.1\n' >/etc/ssh/sshd_config.d/01-lab-exempt.conf
bg_reload
`,
}

// kindUntouched is what an audit finds on a host of a kind as the lab
// makes it, before kindPrelude.
var kindUntouched = map[lab.Kind][]string{
	lab.Trixie: {" penalty-not-exempt risk "},
}

const reloadFix = `sshd -t && kill -HUP "$(cat /run/sshd.pid)"`

var labHosts = []labHost{
	{
		name: "clean",
		audits: []auditCase{{
			name: "clean",
			want: nil, // an untouched host has nothing to report
		}},
		works: []string{"admin"},
	},
	{
		name: "home",
		setup: `chmod 0777 /home/admin
bg_adduser frank {{key:frank}}
rm -rf /home/frank`,
		audits: []auditCase{{
			name: "home",
			opts: Options{Users: []string{"frank"}},
			want: []string{
				"admin unsafe-path lockout /home/admin",
				"frank home-missing lockout /home/frank",
			},
			fixes: map[string]string{
				"admin unsafe-path /home/admin":  "chmod go-w /home/admin",
				"frank home-missing /home/frank": "install -d -m 0700 -o frank -g frank /home/frank",
			},
			details: map[string][]string{
				"admin unsafe-path /home/admin": {"mode 0777", "/home/admin/.ssh/authorized_keys"},
			},
		}},
		refused: []string{"admin"},
	},
	{
		name: "keys",
		setup: `chmod 0777 /home/admin/.ssh
bg_adduser bob {{key:bob}}
usermod -s /nonexistent/shell bob
bg_adduser carol {{key:carol}}
chown bob /home/carol/.ssh/authorized_keys
bg_adduser erin {{key:erin}}
usermod -p '!' erin
printf 'UsePAM no\n' >/etc/ssh/sshd_config.d/10-nopam.conf
usermod -p '*' root
rm -rf /root/.ssh
bg_reload`,
		audits: []auditCase{
			{
				name: "keys",
				opts: Options{Users: []string{"bob", "carol", "erin"}},
				want: []string{
					"admin unsafe-path lockout /home/admin/.ssh",
					"bob shell-missing lockout /nonexistent/shell",
					"carol unsafe-path lockout /home/carol/.ssh/authorized_keys",
					"erin account-locked lockout /etc/shadow",
				},
				fixes: map[string]string{
					"admin unsafe-path /home/admin/.ssh":                 "chmod go-w /home/admin/.ssh",
					"bob shell-missing /nonexistent/shell":               "usermod -s /bin/bash bob",
					"carol unsafe-path /home/carol/.ssh/authorized_keys": "chown -h carol /home/carol/.ssh/authorized_keys",
					"erin account-locked /etc/shadow":                    "usermod -p '*' erin  # key-only; to keep a password instead: usermod -U erin",
				},
				details: map[string][]string{
					"erin account-locked /etc/shadow":                    {"UsePAM no [/etc/ssh/sshd_config.d/10-nopam.conf:1: UsePAM no]"},
					"carol unsafe-path /home/carol/.ssh/authorized_keys": {"owner bob (uid"},
				},
			},
			{
				// The same host with --all-users and no named user: the
				// accounts with a login shell and a key or password are
				// found on the host (root was made key-less above).
				name: "keys-all",
				opts: Options{AllUsers: true},
				only: []string{"", "root", "sync", "admin", "bob", "carol", "erin"},
				want: []string{
					"admin unsafe-path lockout /home/admin/.ssh",
					"bob shell-missing lockout /nonexistent/shell",
					"carol unsafe-path lockout /home/carol/.ssh/authorized_keys",
					"erin account-locked lockout /etc/shadow",
				},
			},
		},
	},
	{
		name: "akf",
		setup: `install -d -m 0777 /etc/ssh/authorized_keys
cp /home/admin/.ssh/authorized_keys /etc/ssh/authorized_keys/admin
chmod 0644 /etc/ssh/authorized_keys/admin
printf 'AuthorizedKeysFile /etc/ssh/authorized_keys/%%u\n' >/etc/ssh/sshd_config.d/20-akf.conf
bg_reload
touch /run/nologin
bg_adduser gina {{key:gina}}
rm /etc/sudoers.d/bgtest-gina
printf 'gina ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/bg.conf
chmod 0440 /etc/sudoers.d/bg.conf
printf 'hank ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/ops
chmod 0666 /etc/sudoers.d/ops`,
		audits: []auditCase{{
			name: "akf",
			opts: Options{Users: []string{"gina"}, SudoUsers: []string{"gina"}},
			want: []string{
				" sudo-file-ignored risk /etc/sudoers.d/bg.conf",
				// Only hank, whom the playbook gives no sudo, is in it:
				// making sudo read it is no fix.
				" sudo-file-unsafe info /etc/sudoers.d/ops",
				"admin nologin-file lockout /run/nologin",
				"admin unsafe-path lockout /etc/ssh/authorized_keys",
				"gina key-absent lockout /etc/ssh/authorized_keys/gina",
				"gina nologin-file lockout /run/nologin",
				"gina sudo-no-rule lockout ",
			},
			fixes: map[string]string{
				"admin unsafe-path /etc/ssh/authorized_keys":    "chmod go-w /etc/ssh/authorized_keys",
				"admin nologin-file /run/nologin":               "rm -f -- /run/nologin",
				"gina key-absent /etc/ssh/authorized_keys/gina": "install -D -o gina -m 0600 /home/gina/.ssh/authorized_keys /etc/ssh/authorized_keys/gina",
				"gina sudo-no-rule ":                            "visudo -cf /etc/sudoers.d/bg.conf && install -o root -g root -m 0440 /etc/sudoers.d/bg.conf /etc/sudoers.d/bg && rm -f -- /etc/sudoers.d/bg.conf",
				" sudo-file-unsafe /etc/sudoers.d/ops":          "none needed for the playbook's users; remove it (rm -f -- /etc/sudoers.d/ops) unless its rules are meant to be in force, and give sudo through a sudoers task",
			},
			details: map[string][]string{
				"gina key-absent /etc/ssh/authorized_keys/gina": {"/etc/ssh/sshd_config.d/20-akf.conf:1", "/home/gina/.ssh/authorized_keys holds 1 key line(s), but sshd does not read it"},
				" sudo-file-unsafe /etc/sudoers.d/ops":          {"world-writable", "would grant sudo to hank, whom the playbook gives none"},
			},
		}},
	},
	{
		// sshd reads the drop-ins first, so the first PidFile it reads is
		// the drop-in's; the audit used to take the main file's (the
		// files in the order it found them) and so found no listener.
		name: "pidfile",
		setup: `printf 'PidFile /run/sshd-bg.pid\n' >/etc/ssh/sshd_config.d/05-pidfile.conf
printf 'PidFile /run/sshd.pid\n' >>/etc/ssh/sshd_config
kill -HUP "$(cat /run/sshd.pid)"
i=0
until [ -s /run/sshd-bg.pid ]; do
	i=$((i + 1))
	[ $i -lt 250 ] || { echo "sshd did not write /run/sshd-bg.pid" >&2; exit 1; }
	sleep 0.02
done
rm -f /run/sshd.pid
printf 'LogLevel VERBOSE\n' >/etc/ssh/sshd_config.d/60-pending.conf`,
		audits: []auditCase{{
			name: "pidfile",
			want: []string{" config-pending risk /etc/ssh/sshd_config.d/60-pending.conf"},
			fixes: map[string]string{
				" config-pending /etc/ssh/sshd_config.d/60-pending.conf": `sshd -t && kill -HUP "$(cat /run/sshd-bg.pid)"  # validate, then reload with a second session open (or breakglass apply, which reloads under its safety net)`,
			},
			details: map[string][]string{
				" config-pending /etc/ssh/sshd_config.d/60-pending.conf": {"from /run/sshd-bg.pid"},
			},
		}},
		works: []string{"admin"},
	},
	{
		name: "shadow",
		setup: `chage -E 1 admin
bg_adduser dave {{key:dave}}
chage -d 0 dave
printf 'LogLevel VERBOSE\n' >/etc/ssh/sshd_config.d/60-pending.conf`,
		audits: []auditCase{{
			name: "shadow",
			opts: Options{Users: []string{"dave"}, SudoUsers: []string{"dave"}},
			want: []string{
				" config-pending risk /etc/ssh/sshd_config.d/60-pending.conf",
				"admin account-expired lockout /etc/shadow",
				"admin sudo-account lockout /etc/shadow",
				"dave password-change-required lockout /etc/shadow",
				"dave sudo-account lockout /etc/shadow",
			},
			fixes: map[string]string{
				"admin account-expired /etc/shadow":                      "chage -E -1 admin",
				"dave password-change-required /etc/shadow":              `chage -d "$(date +%F)" -M -1 dave`,
				" config-pending /etc/ssh/sshd_config.d/60-pending.conf": reloadFix + "  # validate, then reload with a second session open (or breakglass apply, which reloads under its safety net)",
			},
			details: map[string][]string{
				"admin account-expired /etc/shadow": {"expired on 1970-01-02"},
			},
		}},
		refused: []string{"admin"},
	},
	{
		// alice has only an authorized_key task, bob a sudoers task; neither
		// has a rule. A skipped file grants bob and hank.
		name: "sudo",
		setup: `bg_adduser alice {{key:alice}}
rm /etc/sudoers.d/bgtest-alice
bg_adduser bob {{key:bob}}
rm /etc/sudoers.d/bgtest-bob
printf 'bob, hank ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/ops.bak
chmod 0440 /etc/sudoers.d/ops.bak`,
		audits: []auditCase{{
			name: "sudo",
			opts: Options{Users: []string{"alice", "bob"}, SudoUsers: []string{"bob"}},
			want: []string{
				" sudo-file-ignored info /etc/sudoers.d/ops.bak",
				"bob sudo-no-rule lockout ",
			},
			fixes: map[string]string{
				"bob sudo-no-rule ":                         `printf '%s\n' 'bob ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/breakglass-bob.new && visudo -cf /etc/sudoers.d/breakglass-bob.new && install -o root -g root -m 0440 /etc/sudoers.d/breakglass-bob.new /etc/sudoers.d/breakglass-bob && rm -f -- /etc/sudoers.d/breakglass-bob.new`,
				" sudo-file-ignored /etc/sudoers.d/ops.bak": "none needed for the playbook's users; remove it (rm -f -- /etc/sudoers.d/ops.bak) unless its rules are meant to be in force, and give sudo through a sudoers task",
			},
			details: map[string][]string{
				"bob sudo-no-rule ": {"/etc/sudoers.d/ops.bak line 1 is skipped by sudo", "also grants hank"},
			},
		}},
		works: []string{"alice", "bob"},
	},
	{
		name: "allow",
		setup: `printf 'AllowUsers bob\n' >/etc/ssh/sshd_config.d/30-allow.conf
bg_adduser bob {{key:bob}}
bg_reload`,
		audits: []auditCase{{
			name: "allow",
			opts: Options{Users: []string{"bob"}},
			want: []string{
				"admin user-filtered lockout /etc/ssh/sshd_config.d/30-allow.conf",
			},
			fixes: map[string]string{
				"admin user-filtered /etc/ssh/sshd_config.d/30-allow.conf": "echo 'AllowUsers admin' >> /etc/ssh/sshd_config.d/00-breakglass.conf && " + reloadFix,
			},
			details: map[string][]string{
				"admin user-filtered /etc/ssh/sshd_config.d/30-allow.conf": {"/etc/ssh/sshd_config.d/30-allow.conf:1: AllowUsers bob", "from 127.0.0.1"},
			},
		}},
		refused: []string{"admin"},
		works:   []string{"bob"},
	},
	{
		name: "match",
		setup: `printf 'Match Address 127.0.0.1\n\tPubkeyAuthentication no\n' >/etc/ssh/sshd_config.d/40-match.conf
bg_reload`,
		audits: []auditCase{{
			name: "match",
			want: []string{
				"admin pubkey-disabled lockout /etc/ssh/sshd_config.d/40-match.conf",
			},
			fixes: map[string]string{
				"admin pubkey-disabled /etc/ssh/sshd_config.d/40-match.conf": "sed -i '2s/^/# breakglass: /' /etc/ssh/sshd_config.d/40-match.conf && " + reloadFix,
			},
			details: map[string][]string{
				"admin pubkey-disabled /etc/ssh/sshd_config.d/40-match.conf": {"40-match.conf:2: PubkeyAuthentication no (in Match Address 127.0.0.1 at /etc/ssh/sshd_config.d/40-match.conf:1)"},
			},
		}},
		refused: []string{"admin"},
	},
	{
		name:  "invalid",
		setup: `printf 'NoSuchKeyword yes\n' >/etc/ssh/sshd_config.d/50-broken.conf`,
		audits: []auditCase{{
			name: "invalid",
			want: []string{
				" config-invalid risk /etc/ssh/sshd_config.d/50-broken.conf",
			},
			fixes: map[string]string{
				" config-invalid /etc/ssh/sshd_config.d/50-broken.conf": "mv -- /etc/ssh/sshd_config.d/50-broken.conf /etc/ssh/sshd_config.d/50-broken.conf.invalid && sshd -t",
			},
			details: map[string][]string{
				" config-invalid /etc/ssh/sshd_config.d/50-broken.conf": {"/etc/ssh/sshd_config.d/50-broken.conf: line 1: Bad configuration option: NoSuchKeyword"},
			},
		}},
		// The running sshd still has its old configuration: a risk, not a
		// lockout.
		works: []string{"admin"},
	},
	{
		// Refusals after the key is accepted. Each has a look-alike that
		// must give nothing: a forced command and a chroot for a user who
		// does not exist here (Match User ghost).
		name: "session",
		setup: `bg_adduser bob {{key:bob}}
bg_adduser carol {{key:carol}}
printf 'command="/bin/false" %s\n' {{key:carol}} >/home/carol/.ssh/authorized_keys
bg_adduser dave {{key:dave}}
bg_adduser erin {{key:erin}}
bg_adduser frank {{key:frank}}
printf 'command="/usr/local/bin/no-such-tool --run" %s\n' {{key:frank}} >/home/frank/.ssh/authorized_keys
bg_adduser gina {{key:gina}}
printf 'command="/etc/hostname" %s\n' {{key:gina}} >/home/gina/.ssh/authorized_keys
bg_adduser judy {{key:judy}}
printf 'command="/root/bgtool" %s\n' {{key:judy}} >/home/judy/.ssh/authorized_keys
printf '#!/bin/sh\nexit 0\n' >/root/bgtool
chmod 0755 /root/bgtool
bg_adduser ivan {{key:ivan}}
printf 'restrict,command="/usr/bin/id -un" %s\n' {{key:ivan}} >/home/ivan/.ssh/authorized_keys
bg_adduser hank {{key:hank}}
printf 'Match User bob\n\tForceCommand /bin/false\nMatch User dave\n\tChrootDirectory /srv\nMatch User erin\n\tMaxSessions 0\nMatch User ghost\n\tForceCommand /bin/false\n\tChrootDirectory /srv\nMatch User hank\n\tForceCommand /opt/bg/missing\n' >/etc/ssh/sshd_config.d/70-session.conf
bg_reload`,
		audits: []auditCase{{
			name: "session",
			opts: Options{Users: []string{"bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"}},
			want: []string{
				"bob forced-command lockout /etc/ssh/sshd_config.d/70-session.conf",
				"carol forced-command lockout /home/carol/.ssh/authorized_keys",
				"dave chroot lockout /etc/ssh/sshd_config.d/70-session.conf",
				"erin session-limit lockout /etc/ssh/sshd_config.d/70-session.conf",
				"frank forced-command lockout /home/frank/.ssh/authorized_keys",
				"gina forced-command lockout /home/gina/.ssh/authorized_keys",
				"hank forced-command lockout /etc/ssh/sshd_config.d/70-session.conf",
				"judy forced-command lockout /home/judy/.ssh/authorized_keys",
				// ivan's forced command runs (id): a look-alike.
			},
			fixes: map[string]string{
				"erin session-limit /etc/ssh/sshd_config.d/70-session.conf": "sed -i '6s/^/# breakglass: /' /etc/ssh/sshd_config.d/70-session.conf && " + reloadFix + "  # sshd's default is MaxSessions 10",
			},
			details: map[string][]string{
				"bob forced-command /etc/ssh/sshd_config.d/70-session.conf":  {"70-session.conf:2: ForceCommand /bin/false (in Match User bob"},
				"carol forced-command /home/carol/.ssh/authorized_keys":      {"line 1", `command="/bin/false"`},
				"dave chroot /etc/ssh/sshd_config.d/70-session.conf":         {"ChrootDirectory /srv"},
				"erin session-limit /etc/ssh/sshd_config.d/70-session.conf":  {"MaxSessions 0"},
				"frank forced-command /home/frank/.ssh/authorized_keys":      {"line 1", "/usr/local/bin/no-such-tool, which does not exist"},
				"gina forced-command /home/gina/.ssh/authorized_keys":        {"/etc/hostname, which gina cannot execute"},
				"hank forced-command /etc/ssh/sshd_config.d/70-session.conf": {"ForceCommand /opt/bg/missing", "/opt/bg/missing, which does not exist", "every session of hank fails"},
				// root can run it; judy cannot reach it (/root is 0700).
				"judy forced-command /home/judy/.ssh/authorized_keys": {"/root/bgtool, which does not exist (or judy cannot reach it)"},
			},
		}},
		refused: []string{"bob", "carol", "dave", "erin", "frank", "gina", "hank", "judy"},
		works:   []string{"admin", "ivan"},
	},
	{
		// PAM account and session modules refusing on their own terms;
		// carol matches a rule of each that lets her in.
		name: "pamrules",
		setup: `bg_adduser bob {{key:bob}}
bg_adduser carol {{key:carol}}
bg_adduser dave {{key:dave}}
bg_adduser erin {{key:erin}}
bg_adduser frank {{key:frank}}
install -d -m 0700 /root/.ssh
printf '%s\n' {{key:root}} >/root/.ssh/authorized_keys
printf 'console\ntty1\n' >/etc/securetty
sed -i '1i account required pam_securetty.so' /etc/pam.d/sshd
bg_adduser ivan {{key:ivan}}
bg_adduser judy {{key:judy}}
bg_adduser kate {{key:kate}}
bg_adduser leo {{key:leo}}
bg_adduser mia {{key:mia}}
groupadd bglim
usermod -aG bglim carol
usermod -aG bglim ivan
usermod -aG bglim judy
sed -i '1i account required pam_time.so\naccount required pam_listfile.so item=user sense=deny file=/etc/ssh/denied onerr=succeed\naccount required pam_succeed_if.so user notin frank:ghost\naccount required pam_succeed_if.so quiet user !~ k*\naccount required pam_succeed_if.so use_uid user =~ r??t\naccount required pam_succeed_if.so rhost =~ 127.* service in sshd:login' /etc/pam.d/sshd
printf 'sshd;*;bob;!Al0000-2400\nsshd;*;carol;Al0000-2400\n' >>/etc/security/time.conf
printf 'dave - maxlogins 0\ncarol - maxlogins 5\n@bglim - maxlogins 0\njudy -\n* hard nofile 4096\nleo hard nofile 2000000\nmia - maxlogins 1\n' >/etc/security/limits.d/bg.conf
printf 'erin\nghost\n' >/etc/ssh/denied`,
		audits: []auditCase{{
			name: "pamrules",
			opts: Options{Users: []string{"bob", "carol", "dave", "erin", "frank", "ivan", "judy", "kate", "leo", "mia", "root"}},
			// carol: her own maxlogins 5 outranks her group's 0; judy:
			// "judy -" lifts every limit; mia: maxlogins 1 while she has
			// an interactive session open: Debian 12 counts it in utmp
			// and refuses another; a namespace host keeps no utmp, and
			// Debian 13's pam_limits counts logind's sessions and gives
			// up on a limit of 1, so both let her in; leo's nofile above
			// fs.nr_open, which setrlimit refuses, still lets him in;
			// nobody is refused by the use_uid condition (about root) or
			// the rhost glob.
			want: []string{
				"bob pam-time lockout /etc/security/time.conf",
				"dave pam-limits lockout /etc/security/limits.d/bg.conf",
				"erin pam-listfile lockout /etc/ssh/denied",
				"frank pam-succeed-if lockout /etc/pam.d/sshd",
				"ivan pam-limits lockout /etc/security/limits.d/bg.conf",
				"kate pam-succeed-if lockout /etc/pam.d/sshd",
				"root pam-securetty lockout /etc/securetty",
			},
			wantOn: map[lab.Kind][]string{
				lab.Bookworm: {"mia pam-limits lockout /etc/security/limits.d/bg.conf"},
			},
			fixes: map[string]string{
				"erin pam-listfile /etc/ssh/denied": "remove the line \"erin\" from /etc/ssh/denied (line 1 when audit read it); or remove line 2 of /etc/pam.d/sshd",
			},
			details: map[string][]string{
				"bob pam-time /etc/security/time.conf":           {"/etc/pam.d/sshd:1: account required pam_time.so", "sshd;*;bob;!Al0000-2400"},
				"dave pam-limits /etc/security/limits.d/bg.conf": {"/etc/security/limits.d/bg.conf:1: dave - maxlogins 0", "pam_limits.so"},
				"frank pam-succeed-if /etc/pam.d/sshd":           {"user notin frank:ghost"},
				"ivan pam-limits /etc/security/limits.d/bg.conf": {"/etc/security/limits.d/bg.conf:3: @bglim - maxlogins 0"},
				"kate pam-succeed-if /etc/pam.d/sshd":            {`the condition "user !~ k*" is false for kate`},
			},
		}},
		refused:   []string{"bob", "dave", "erin", "frank", "ivan", "kate", "root"},
		works:     []string{"admin", "carol", "judy", "leo"},
		refusedOn: map[lab.Kind][]string{lab.Bookworm: {"mia"}},
		worksOn:   map[lab.Kind][]string{lab.Namespace: {"mia"}, lab.Trixie: {"mia"}},
		hold:      []string{"mia"},
	},
	{
		// bob's key in a text RevokedKeys list, dave's in a binary KRL
		// (Match User dave), erin's list is missing; carol's key is in
		// neither.
		name: "revoked",
		setup: `bg_adduser bob {{key:bob}}
bg_adduser carol {{key:carol}}
bg_adduser dave {{key:dave}}
printf '%s\n' {{key:bob}} >/etc/ssh/revoked_keys
printf '%s\n' {{key:dave}} >/tmp/dave.pub
ssh-keygen -q -k -f /etc/ssh/revoked.krl /tmp/dave.pub
bg_adduser erin {{key:erin}}
printf 'RevokedKeys /etc/ssh/revoked_keys\nMatch User dave\n\tRevokedKeys /etc/ssh/revoked.krl\nMatch User erin\n\tRevokedKeys /etc/ssh/gone\n' >/etc/ssh/sshd_config.d/05-revoked.conf
bg_reload`,
		audits: []auditCase{{
			name: "revoked",
			opts: Options{Users: []string{"bob", "carol", "dave", "erin"}},
			want: []string{
				"bob key-revoked lockout /home/bob/.ssh/authorized_keys",
				"dave key-revoked lockout /home/dave/.ssh/authorized_keys",
				// A list sshd cannot read revokes every key.
				"erin key-revoked lockout /etc/ssh/gone",
			},
			details: map[string][]string{
				"bob key-revoked /home/bob/.ssh/authorized_keys":   {"line 1 of the RevokedKeys list /etc/ssh/revoked_keys"},
				"dave key-revoked /home/dave/.ssh/authorized_keys": {"binary key revocation list /etc/ssh/revoked.krl"},
			},
		}},
		refused: []string{"bob", "dave", "erin"},
		works:   []string{"admin", "carol"},
	},
	{
		// sudo rules taken away by a later rule; carol's negation is for
		// another command. Root logs in through pam_securetty, whose
		// list names ssh (a look-alike of pamrules' root).
		name: "sudoneg",
		setup: `install -d -m 0700 /root/.ssh
printf '%s\n' {{key:root}} >/root/.ssh/authorized_keys
printf 'console\nssh\n' >/etc/securetty
sed -i '1i account required pam_securetty.so' /etc/pam.d/sshd
bg_adduser bob {{key:bob}}
bg_adduser carol {{key:carol}}
bg_adduser dave {{key:dave}}
printf 'bob ALL=(ALL) !ALL\ncarol ALL=(ALL:ALL) NOPASSWD: ALL, !/usr/bin/passwd\ndave ALL=(ALL:ALL) NOPASSWD: ALL, !/usr/bin/true\n' >/etc/sudoers.d/zz-later
chmod 0440 /etc/sudoers.d/zz-later`,
		audits: []auditCase{{
			name: "sudoneg",
			opts: Options{Users: []string{"bob", "carol", "dave", "root"}, SudoUsers: []string{"bob", "carol", "dave"}},
			want: []string{
				"bob sudo-negated lockout /etc/sudoers.d/zz-later",
				"dave sudo-negated lockout /etc/sudoers.d/zz-later",
			},
			details: map[string][]string{
				"bob sudo-negated /etc/sudoers.d/zz-later":  {"/etc/sudoers.d/zz-later:1: bob ALL=(ALL) !ALL"},
				"dave sudo-negated /etc/sudoers.d/zz-later": {"/etc/sudoers.d/zz-later:3: dave ALL=(ALL:ALL) NOPASSWD: ALL, !/usr/bin/true"},
			},
		}},
		works: []string{"bob", "carol", "dave", "root"},
	},
	{
		// Group-writable homes: Debian's sshd accepts bob's (his group has
		// no other member), not carol's (frank joined her group).
		name: "groupwrite",
		setup: `bg_adduser bob {{key:bob}}
bg_adduser carol {{key:carol}}
bg_adduser frank {{key:frank}}
chmod 0775 /home/bob /home/carol
usermod -aG carol frank`,
		audits: []auditCase{{
			name: "groupwrite",
			opts: Options{Users: []string{"bob", "carol"}},
			want: []string{
				"bob unsafe-path risk /home/bob",
				"carol unsafe-path lockout /home/carol",
			},
			fixes: map[string]string{
				"bob unsafe-path /home/bob":     "chmod go-w /home/bob",
				"carol unsafe-path /home/carol": "chmod go-w /home/carol",
			},
			details: map[string][]string{
				"bob unsafe-path /home/bob": {"upstream OpenSSH and RHEL refuse it", "once the group gains another member"},
			},
		}},
		refused: []string{"carol"},
		works:   []string{"bob"},
	},
}

// findingKey is how scenarios name a finding.
func findingKey(f engine.Finding) string {
	return f.User + " " + f.ID + " " + f.Severity + " " + f.Path
}

// checkFindings compares fs with what c expects.
func checkFindings(t *testing.T, c auditCase, fs []engine.Finding) {
	t.Helper()
	checkFindingsOn(t, lab.Namespace, c, fs)
}

// checkFindingsOn compares fs with what c expects on a host of kind.
func checkFindingsOn(t *testing.T, kind lab.Kind, c auditCase, fs []engine.Finding) {
	t.Helper()
	var got []string
	byKey := map[string]engine.Finding{}
	for _, f := range fs {
		if c.only != nil && !slices.Contains(c.only, f.User) {
			continue
		}
		got = append(got, findingKey(f))
		byKey[f.User+" "+f.ID+" "+f.Path] = f
		if f.Detail == "" || f.Fix == "" {
			t.Errorf("%s: finding %q has no detail or fix", c.name, findingKey(f))
		}
	}
	sort.Strings(got)
	want := append(append([]string(nil), c.want...), c.wantOn[kind]...)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: findings\n got: %q\nwant: %q\n%s", c.name, got, want, dump(fs))
	}
	for k, fix := range c.fixes {
		if f, ok := byKey[k]; !ok {
			t.Errorf("%s: no finding %q", c.name, k)
		} else if f.Fix != fix {
			t.Errorf("%s: %q: fix\n got: %s\nwant: %s", c.name, k, f.Fix, fix)
		}
	}
	for k, parts := range c.details {
		f, ok := byKey[k]
		if !ok {
			t.Errorf("%s: no finding %q", c.name, k)
			continue
		}
		for _, p := range parts {
			if !strings.Contains(f.Detail, p) {
				t.Errorf("%s: %q: detail lacks %q:\n%s", c.name, k, p, f.Detail)
			}
		}
	}
}

func dump(fs []engine.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  [%s] %s %s %s\n    detail: %s\n    fix: %s\n", f.Severity, f.User, f.ID, f.Path, f.Detail, f.Fix)
	}
	return b.String()
}
