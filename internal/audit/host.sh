# shellcheck shell=sh
# shellcheck disable=SC2154 # bg_flags, bg_users, bg_session, bg_all: set by hostQuery before this script
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
bg_lines() { while IFS= read -r bg_l; do printf '%s %s\n' "$1" "$bg_l"; done; }
bg_dump() { # TAG FILE…: one record per line of each file, but comments and blank lines
	bg_t=$1
	shift
	[ $# -gt 0 ] || return 0
	awk -v t="$bg_t" 'FNR == 1 { print t "file", FILENAME } /^[ \t]*(#|$)/ && !/^#include/ { next } { printf "%sline %d %s\t%s\n", t, FNR, FILENAME, $0 }' "$@" 2>/dev/null
}
echo 'audit-host 2'
bg_now=$(date '+%s.%N %z')
read -r bg_up _ </proc/uptime
printf 'now %s\n' "$bg_now"

# sshd: does the configuration load, and since when does the listener run it
bg_o=$(sshd -t 2>&1)
printf 'sshd-t %s\n' "$?"
printf '%s\n' "$bg_o" | bg_lines sshd-t-out
for d in /run/sshd /var/empty/sshd; do
	if [ -d "$d" ]; then printf 'privsep present %s\n' "$d"; else printf 'privsep missing %s\n' "$d"; fi
done
bg_cf=$(bg_sshd_files | grep -v '^?$')
bg_dump cfg $bg_cf
bg_pf=$(bg_sshd_pidfile)
printf 'pidfile %s\n' "$bg_pf"
stat -c 'cfgstat %.9Y %n' -- $bg_cf 2>/dev/null
if bg_pid=$(bg_sshd_pid "$bg_pf") && [ -r "/proc/$bg_pid/stat" ]; then
	read -r bg_st <"/proc/$bg_pid/stat"
	read -r bg_comm <"/proc/$bg_pid/comm"
	bg_st=${bg_st##*) }
	set -f
	set -- $bg_st
	set +f
	printf 'listener %s %s 100 %s %s %s %s\n' "$bg_pid" "${20}" "$bg_up" "${bg_now%% *}" "$(stat -c %.9Y -- "$bg_pf")" "$bg_comm"
fi
if command -v getenforce >/dev/null 2>&1; then
	bg_se=$(getenforce 2>/dev/null)
	printf 'selinux %s\n' "$bg_se"
fi

# PAM: every stack (includes are resolved by the reader), the modules, and
# the files pam_access and pam_faillock read
bg_secdir=
for d in /lib/*-linux-gnu*/security /usr/lib/*-linux-gnu*/security /lib64/security /usr/lib64/security /lib/security /usr/lib/security; do
	if [ -e "$d/pam_unix.so" ]; then bg_secdir=$d; break; fi
done
printf 'pamdir %s\n' "$bg_secdir"
if [ -n "$bg_secdir" ]; then
	for m in "$bg_secdir"/*; do printf 'pammod %s\n' "${m##*/}"; done
fi
bg_dump pam /etc/pam.d/*
# pam_limits' login count: logind's sessions when the module is built with
# logind (it links libsystemd), else utmp's user processes; and the kernel's
# ceiling on nofile
if [ -n "$bg_secdir" ] && [ -f "$bg_secdir/pam_limits.so" ]; then
	if grep -q 'libsystemd\.so' "$bg_secdir/pam_limits.so" 2>/dev/null; then
		echo 'limits-count logind'
		bg_self=$(sed -n 's|.*/session-\([^/]*\)\.scope$|\1|p' /proc/self/cgroup 2>/dev/null | head -n 1)
		for f in /run/systemd/sessions/*; do
			[ -f "$f" ] && [ "${f##*/}" != "$bg_self" ] || continue
			awk -F= '$1 == "USER" { u = $2 } $1 == "CLASS" { c = $2 } END { if (u != "") print "login", u, c, 1 }' "$f" 2>/dev/null
		done
	else
		echo 'limits-count utmp'
		# NAME LINE DATE… IDLE PID (COMMENT): the PID is the last number
		who -u 2>/dev/null | awk '{ p = ""; for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+$/) p = $i; if (p != "") print $1, p }' | while read -r bg_n bg_p; do
			if kill -0 "$bg_p" 2>/dev/null; then printf 'login %s utmp 1\n' "$bg_n"; else printf 'login %s utmp 0\n' "$bg_n"; fi
		done
	fi
	# cat, not read: dash's read takes one byte at a time, and a sysctl
	# file answers a read past offset 0 with end of file (read got "1"
	# and failed, so nr-open was never printed).
	bg_nro=$(cat /proc/sys/fs/nr_open 2>/dev/null) && printf 'nr-open %s\n' "$bg_nro"
fi
bg_txt='/etc/security/access.conf /etc/security/faillock.conf /etc/security/time.conf /etc/security/limits.conf'
# pam_securetty's list, when there is one (its mode decides too)
if [ -e /etc/securetty ] || [ -L /etc/securetty ]; then
	bg_txt="$bg_txt /etc/securetty"
	stat -c 'txtstat %f %n' -- /etc/securetty 2>/dev/null
fi
for f in /etc/security/access.d/*.conf /etc/security/limits.d/*.conf; do bg_txt="$bg_txt $f"; done
bg_fl=
for w in $(awk '{ sub(/#.*/, "") } /pam_faillock/ { print "faillock" } { for (i = 1; i <= NF; i++) { if ($i ~ /^\/.*\.so$/) print "abs:" $i; if ($i ~ /^accessfile=/) print "acc:" substr($i, 12); if ($i ~ /^(file|conf)=\// && / pam_(listfile|time|limits)\.so/) print "acc:" substr($i, index($i, "=") + 1) } }' /etc/pam.d/* 2>/dev/null | sort -u); do
	case $w in
	faillock) bg_fl=1 ;;
	abs:*) if [ -e "${w#abs:}" ]; then printf 'pamabs 1 %s\n' "${w#abs:}"; else printf 'pamabs 0 %s\n' "${w#abs:}"; fi ;;
	acc:*)
		bg_txt="$bg_txt ${w#acc:}"
		if [ -e "${w#acc:}" ]; then stat -c 'txtstat %f %n' -- "${w#acc:}" 2>/dev/null; else printf 'txtmissing %s\n' "${w#acc:}"; fi
		;;
	esac
done
# sshd's revoked key lists: a text list is dumped, a binary KRL listed by
# ssh-keygen itself
for f in $(awk 'tolower($1) == "revokedkeys" && $2 != "none" { print $2 }' $bg_cf 2>/dev/null | sort -u); do
	if [ ! -r "$f" ] || [ ! -f "$f" ]; then
		printf 'revoked missing %s\n' "$f"
	elif [ "$(head -c 6 -- "$f")" = SSHKRL ]; then
		printf 'revoked krl %s\n' "$f"
		ssh-keygen -Q -l -f "$f" 2>&1 | head -n 5000 | bg_lines revkrl
	else
		printf 'revoked text %s\n' "$f"
		bg_txt="$bg_txt $f"
	fi
done
# Debian's and Ubuntu's sshd carry the user-group-modes patch (StrictModes
# tolerates some group-write); sshd -V does not say whose build it is
printf 'sshd-version %s %s\n' "$(sshd -V 2>&1 | grep -m 1 OpenSSH_)" "$(dpkg-query -W -f='${Package}=${Version}' openssh-server 2>/dev/null)"
# Socket activation (ssh.socket in charge, ssh.service not enabled): the
# socket's ListenStream decides where sshd listens.
if bg_sshd_socket_activated; then
	printf 'sshsocket %s\n' "$(systemctl show -p Listen --value ssh.socket 2>/dev/null | tr '\n' ' ')"
fi
for f in /run/nologin /var/run/nologin /etc/nologin; do
	[ -e "$f" ] || continue
	# shellcheck disable=SC3013 # -ef: dash and bash both have it
	[ "$f" = /var/run/nologin ] && [ /var/run/nologin -ef /run/nologin ] && continue
	printf 'nologin %s\n' "$f"
done

# sudo: the files it reads, their owners and modes, and what visudo says
if command -v sudo >/dev/null 2>&1; then echo 'sudo-bin present'; else echo 'sudo-bin missing'; fi
if [ -e /etc/sudoers ]; then
	bg_sf=/etc/sudoers
	for w in $(awk '$1 == "@include" || $1 == "#include" { print "f:" $2 } $1 == "@includedir" || $1 == "#includedir" { print "d:" $2 }' /etc/sudoers); do
		case $w in
		f:*) [ -e "${w#f:}" ] && bg_sf="$bg_sf ${w#f:}" ;;
		d:*)
			printf 'sudodir %s\n' "${w#d:}"
			for f in "${w#d:}"/* "${w#d:}"/.[!.]* "${w#d:}"/..?*; do
				[ -f "$f" ] && bg_sf="$bg_sf $f"
			done
			;;
		esac
	done
	stat -L -c 'sudostat %u %g %f %n' -- $bg_sf 2>/dev/null
	bg_txt="$bg_txt $bg_sf"
	if command -v visudo >/dev/null 2>&1; then
		bg_o=$(visudo -c 2>&1)
		printf 'visudo-rc %s\n' "$?"
		printf '%s\n' "$bg_o" | bg_lines visudo
	fi
fi
bg_t=
for f in $bg_txt; do [ -f "$f" ] && bg_t="$bg_t $f"; done
bg_dump txt $bg_t

# users
awk -F: '$3 ~ /^[0-9]+$/ { print "uid", $3, $1 } $3 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ { print "pwgid", $3, $4 }' /etc/passwd
getent group | awk -F: '$3 ~ /^[0-9]+$/ { print "group", $3, $4; print "grname", $3, $1 }'
bg_ux() (
	u=$1
	pw=$(getent passwd "$u") || { printf 'ux %s nouser\n' "$u"; exit 0; }
	printf 'ux %s user\n' "$u"
	IFS=:
	set -f
	set -- $pw
	IFS=' 	
'
	home=${6-} uid=${3-} gid=${4-}
	# Counted as the user, as sshd would read it: a link the user planted
	# leads nowhere the user could not read anyway.
	if [ -f "$home/.ssh/authorized_keys" ]; then
		n=$(timeout -s KILL 10 setpriv --reuid="$uid" --regid="$gid" --init-groups -- grep -c '^[[:space:]]*[^#[:space:]]' -- "$home/.ssh/authorized_keys" </dev/null 2>/dev/null)
		case $n in '' | *[!0-9]*) ;; *) printf 'ux %s homekeys %s\n' "$u" "$n" ;; esac
	fi
	if [ "$bg_se" = Enforcing ] && [ -d "$home/.ssh" ] && command -v restorecon >/dev/null 2>&1; then
		restorecon -nvR -- "$home/.ssh" 2>&1 | head -n 50 | bg_lines "ux $u selinux"
	fi
	case $bg_flags in *s*)
		if command -v sudo >/dev/null 2>&1; then
			o=$(sudo -l -U "$u" 2>&1)
			printf 'ux %s sudo-rc %s\n' "$u" "$?"
			printf '%s\n' "$o" | bg_lines "ux $u sudo"
			# what the probe runs: sudo -n true
			sudo -l -U "$u" true >/dev/null 2>&1
			printf 'ux %s sudo-true %s\n' "$u" "$?"
		fi
		if [ -n "$bg_fl" ] && command -v faillock >/dev/null 2>&1; then
			TZ=UTC faillock --user "$u" 2>&1 | bg_lines "ux $u faillock"
		fi
	;; esac
)
# A user's facts come as records "uf NAME LINE", one per line the user
# facts script printed: whatever a line holds (a path, a key file's
# content), it stays inside that user's records. NAME is a checked user
# name (shell.ValidUser in Go, bg_name_ok here): no character of it is
# special to sed.
bg_user() {
	case $2 in *f*)
		bg_uf "$1" | sed "s/^/uf $1 /"
	;; esac
	bg_flags=$2 bg_ux "$1"
}
bg_named=' '
for s in $bg_users; do
	bg_named="$bg_named${s%%:*} "
	bg_user "${s%%:*}" "${s#*:}"
done
bg_name_ok() {
	case $1 in ''|-*|*[!A-Za-z0-9._-]*) return 1 ;; esac
}
if [ "$bg_session" = 1 ]; then
	bg_s=${SUDO_USER:-$(id -un)}
	if bg_name_ok "$bg_s"; then
		printf 'session %s\n' "$bg_s"
		case $bg_named in *" $bg_s "*) ;; *) bg_named="$bg_named$bg_s "; bg_user "$bg_s" fs ;; esac
	fi
fi
if [ "$bg_all" = 1 ]; then
	for n in $(awk -F: '{ n = split($7, a, "/"); b = a[n]; if (b != "nologin" && b != "false") print $1 }' /etc/passwd); do
		bg_name_ok "$n" || continue
		printf 'candidate %s\n' "$n"
		case $bg_named in *" $n "*) continue ;; esac
		bg_user "$n" f
	done
fi
echo 'audit-end'
