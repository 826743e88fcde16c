# shellcheck shell=sh
# nofollow.sh: the only way breakglass changes a path on a host (sourced at
# the top of every apply script). breakglass is root inside directories
# ordinary users own (homes, ~/.ssh), where a user can swap any entry for a
# symbolic link, a hard link or another directory, at any moment. So:
#
#   - Every helper first makes the directory of its path the working
#     directory (bg_pin) and checks that the kernel's name for it is the path
#     asked for: a symbolic link anywhere on the way makes them differ, and
#     the helper refuses. From then on it names the entry as ./ENTRY,
#     relative to the directory itself: a link planted on the way
#     afterwards changes nothing.
#   - In a directory only root can change (owned by root, not writable by
#     group or others: bg_trusted), nobody can swap the entry, and root acts.
#   - In any other directory, whatever follows the entry (chmod, writing a
#     file, making a directory) runs as the user (bg_as), with the user's own
#     rights and nothing more: a link the user planted can only lead where
#     the user could go anyway. The one thing a user cannot do, chown, is
#     done on a directory from inside it (chown .: the pinned inode itself,
#     checked by name first), and never on a regular file: the file is
#     replaced by a copy the user writes (root reads the entry with
#     O_NOFOLLOW), so no inode but the user's own changes hands, whatever
#     the user swaps in.
#
# Paths are absolute, validated and quoted by breakglass. Every helper runs
# in a subshell, so its cd does not leak into the script.

# bg_dir PATH: the directory of PATH.
bg_dir() {
	bg_d=${1%/*}
	printf '%s\n' "${bg_d:-/}"
}

# bg_pin DIR: cd into DIR, which must hold no symbolic link now. (The
# trailing "." keeps a name ending in a newline whole.)
bg_pin() {
	cd -P -- "$1" 2>/dev/null || { echo "breakglass: cannot enter $1" >&2; return 1; }
	bg_here=$(pwd -P && echo .)
	bg_here=${bg_here%?.}
	if [ "$bg_here" != "$1" ]; then
		echo "breakglass: $1 is reached through a symbolic link (it leads to $bg_here): not followed" >&2
		return 1
	fi
}

# bg_trusted: the working directory can be changed by root alone.
bg_trusted() {
	# shellcheck disable=SC2046 # two numbers
	set -- $(stat -c '%u %a' .)
	[ "${1-}" = 0 ] && [ $((0${2-2} & 18)) -eq 0 ]
}

# bg_nolink ENTRY PATH: refuse when ./ENTRY is a symbolic link.
bg_nolink() {
	if [ -L "./$1" ]; then
		echo "breakglass: $2 is a symbolic link: not followed" >&2
		return 1
	fi
}

# bg_as USER COMMAND...: run COMMAND as USER, with USER's groups, no
# capabilities, no PAM, no input, for at most 60 seconds.
bg_as() {
	bg_u=$1
	shift
	bg_g=$(id -g -- "$bg_u") || return 1
	timeout -s KILL 60 setpriv --reuid="$bg_u" --regid="$bg_g" --init-groups -- "$@"
}

# bg_chown OWNER PATH: make PATH belong to OWNER (USER: or root) without
# following anything a user could have planted.
bg_chown() (
	bg_pin "$(bg_dir "$2")" || exit 1
	b=${2##*/}
	bg_nolink "$b" "$2" || exit 1
	if bg_trusted; then
		chown -h -- "$1" "./$b"
		exit
	fi
	if [ -d "./$b" ]; then
		# Enter it and check it is the entry asked for; then chown the
		# working directory, which no swap of the name can change.
		bg_pin "$2" || exit 1
		chown -- "$1" .
		exit
	fi
	if [ ! -f "./$b" ] || [ "$1" = root ]; then
		echo "breakglass: not changing the owner of $2 in a directory users can change: it is not a regular file or directory, or should be root's" >&2
		exit 1
	fi
	# A regular file: the user writes a copy of it over it. Root reads the
	# entry without following it (O_NOFOLLOW, O_NONBLOCK: no FIFO hangs),
	# at most 1 MiB, and keeps its mode.
	m=$(stat -c '%a %s' -- "./$b") || exit 1
	c=$(dd if="./$b" iflag=nofollow,nonblock bs=65536 count=17 2>/dev/null | base64 -w0)
	if [ -z "$c" ] && [ "${m#* }" != 0 ]; then
		# dd failed (the entry changed, or could not be read): never
		# hand over an empty copy of a file that had content.
		echo "breakglass: not handing $2 over: it could not be read" >&2
		exit 1
	fi
	m=${m%% *}
	if [ "${#c}" -gt 1398104 ]; then
		echo "breakglass: not handing $2 over: it is larger than 1 MiB" >&2
		exit 1
	fi
	printf '%s' "$c" | base64 -d | bg_as "${1%%:*}" /bin/sh -c "$bg_write_script" bg_chown "$b" "0$m"
)

# bg_chmod MODE PATH USER: chmod, as root where only root can change the
# directory, otherwise as USER (who must own PATH).
bg_chmod() (
	bg_pin "$(bg_dir "$2")" || exit 1
	b=${2##*/}
	bg_nolink "$b" "$2" || exit 1
	if bg_trusted; then
		chmod "$1" -- "./$b"
	else
		bg_as "$3" chmod "$1" -- "./$b"
	fi
)

# bg_mkdir MODE PATH OWNER: make a directory owned by OWNER (USER: or
# root).
bg_mkdir() (
	bg_pin "$(bg_dir "$2")" || exit 1
	b=${2##*/}
	if bg_trusted; then
		mkdir -m "$1" -- "./$b"
		[ "$3" = root ] || chown -h -- "$3" "./$b"
	elif [ "$3" = root ]; then
		echo "breakglass: not making root's directory $2 in a directory users can change" >&2
		exit 1
	else
		bg_as "${3%%:*}" mkdir -m "$1" -- "./$b"
	fi
)

# bg_mkparents DIR: make DIR and any missing directory above it (root's,
# 0755), following no link and creating only where root alone can change
# the directory it creates in. A home's parent (/home, /srv/homes, ...)
# under a directory users can write is refused, not made.
bg_mkparents() (
	cd / || exit 1
	bg_p=
	bg_rest=${1#/}
	while [ -n "$bg_rest" ]; do
		bg_c=${bg_rest%%/*}
		case $bg_rest in */*) bg_rest=${bg_rest#*/} ;; *) bg_rest= ;; esac
		[ -n "$bg_c" ] || continue
		bg_p=$bg_p/$bg_c
		if [ ! -e "./$bg_c" ] && [ ! -L "./$bg_c" ]; then
			if ! bg_trusted; then
				echo "breakglass: not making $bg_p: ${bg_p%/*} can be changed by users" >&2
				exit 1
			fi
			mkdir -m 0755 -- "./$bg_c" || exit 1
		fi
		bg_pin "$bg_p" || exit 1
	done
)

# bg_copy_root SRC DST MODE: copy root's file SRC (a host key, a host
# certificate) to DST, root's with MODE, written as bg_write writes (no
# backup kept: a copy of SRC is remade from SRC). SRC is read only where no
# user can steer the read: links on its way are followed only where root
# alone made them (bg_resolve, from resolve.sh, which the script must
# include), its directory can be changed by root alone, and SRC itself is no
# link (read with O_NOFOLLOW). A path a user could change is refused, not
# read.
# shellcheck disable=SC2154 # bg_real, bg_link, bg_target: set by bg_resolve
bg_copy_root() (
	if ! bg_resolve "$1"; then
		echo "breakglass: $1 is reached through $bg_link (to $bg_target), a link a user could have made: not read" >&2
		exit 1
	fi
	bg_pin "$(bg_dir "$bg_real")" || exit 1
	if ! bg_trusted; then
		echo "breakglass: not reading $bg_real: its directory can be changed by users" >&2
		exit 1
	fi
	b=${bg_real##*/}
	bg_nolink "$b" "$bg_real" || exit 1
	if [ ! -f "./$b" ]; then
		echo "breakglass: $bg_real is not a regular file" >&2
		exit 1
	fi
	# A run killed here before left its temp file: the host lock makes
	# any such file a dead run's (the second name is the one breakglass
	# used before the one writer).
	rm -f -- "$(bg_dir "$2")/.${2##*/}$bg_tmp".?????? "$2".breakglass-tmp.??????
	# The read is checked by its size: a pipe hides dd's status, and
	# only root can change the file while it is read.
	s=$(stat -c %s -- "./$b") || exit 1
	t=$(dd if="./$b" iflag=nofollow,nonblock bs=65536 2>/dev/null | bg_temp "$2" 0:0 "$3") || exit 1
	if [ "$(stat -c %s -- "$t")" != "$s" ]; then
		rm -f -- "$t"
		echo "breakglass: $bg_real could not be read whole" >&2
		exit 1
	fi
	bg_commit "$t" "$2" nobak
)

# The one atomic writer. Every file breakglass writes on a host is written
# by bg_write or, where the new file must be checked before it replaces
# the old one (visudo -cf, sshd -t -f), by its two halves, bg_temp and
# bg_commit, with the check between them:
#
#   - the new content goes to a temp file in the same directory,
#     .NAME.breakglass-tmp.XXXXXX (hidden: no reader of the directory takes
#     it), its owner and mode are set and it is fsynced;
#   - the previous version of FILE is kept as .NAME.breakglass.bak beside it
#     (bg_bak): a hard link to the old inode, so it keeps the old owner and
#     mode, and root-only stays root-only;
#   - the temp file is renamed over FILE, and the directory fsynced.
#
# The backup's name starts with a dot and ends in .bak: sudo's
# @includedir skips names with a dot, sshd's Include globs
# (sshd_config.d/*.conf) match no name that starts with a dot, Debian's
# cron and run-parts take only [A-Za-z0-9_-] names (run-parts
# --lsbsysinit none whose part after the last - holds a dot), cronie,
# insserv and systemd skip dot files. So no reader of sudoers.d,
# sshd_config.d, cron.d, init.d or a unit directory ever takes a backup
# for configuration (BackupPath in Go names it too).

# bg_bak FILE: the name of FILE's previous version (see above).
bg_bak() {
	printf '%s/.%s%s\n' "$(bg_dir "$1")" "${1##*/}" "$bg_bak"
}

# bg_temp FILE OWNER MODE [FILTER...]: the first half of a write, for a
# file in a directory only root can change: write stdin (or FILTER's
# output, FILTER reading stdin) to a new temp file beside FILE, set OWNER
# and MODE, fsync it, and print its path. Then check it and bg_commit it,
# or remove it. When FILTER fails, bg_temp fails with FILTER's status.
bg_temp() (
	bg_pin "$(bg_dir "$1")" || exit 1
	if ! bg_trusted; then
		echo "breakglass: not writing $1: users other than root can change its directory" >&2
		exit 1
	fi
	bg_f=$1 bg_o=$2 bg_m=$3
	shift 3
	[ $# -gt 0 ] || set -- cat
	# A temp file of FILE already there is a killed run's: one run per
	# host at a time holds the host lock.
	rm -f -- "./.${bg_f##*/}$bg_tmp".??????
	t=$(mktemp -- "./.${bg_f##*/}$bg_tmp.XXXXXX") || exit 1
	# What the commands say goes to stderr only when one fails: callers
	# take the path from stdout and stderr together (t=$(bg_temp … 2>&1)).
	e=$("$@" 2>&1 >"$t") || { r=$?; rm -f -- "$t"; [ -z "$e" ] || printf '%s\n' "$e" >&2; exit "$r"; }
	if e=$(chown -h -- "$bg_o" "$t" 2>&1 && { [ "$bg_m" = 0600 ] || chmod "$bg_m" -- "$t" 2>&1; } && sync -- "$t" 2>&1); then
		printf '%s/%s\n' "$(bg_dir "$bg_f")" "${t#./}"
		exit 0
	fi
	rm -f -- "$t"
	[ -z "$e" ] || printf '%s\n' "$e" >&2
	exit 1
)

# bg_linkbak ENTRY FILE: in FILE's pinned directory, make the backup name
# (bg_bak) another name for ./ENTRY (link(2) follows nothing; -T takes the
# backup name as a name, never as a directory to link into). A directory
# under the backup name is none of breakglass's (a user can make one in
# their own directory): it is neither entered nor removed, and the write
# is refused, naming it.
bg_linkbak() {
	if [ -d "./.$1$bg_bak" ] && [ ! -L "./.$1$bg_bak" ]; then
		echo "breakglass: not writing $2: $(bg_dir "$2")/.$1$bg_bak, the name its previous version is kept under, is a directory; breakglass neither enters nor removes it: move it out of the way, then run again" >&2
		return 1
	fi
	bg_e=$(ln -fT -- "./$1" "./.$1$bg_bak" 2>&1) && return
	echo "breakglass: not writing $2: cannot keep its previous version as $(bg_dir "$2")/.$1$bg_bak: $bg_e" >&2
	return 1
}

# bg_commit TEMP FILE [nobak]: the second half: keep FILE's previous
# version as its backup (bg_bak), rename TEMP (bg_temp's, beside FILE)
# over FILE and fsync the directory. With nobak no backup is made: the
# caller's own transaction holds the previous version until the change is
# kept (bg_keep), or nothing is worth keeping (a copy remade from its
# source).
bg_commit() (
	bg_pin "$(bg_dir "$2")" || exit 1
	b=${2##*/}
	t=${1##*/}
	if [ "$(bg_dir "$1")" != "$(bg_dir "$2")" ] || [ ! -f "./$t" ] || [ -L "./$t" ]; then
		echo "breakglass: $1 is no temp file beside $2" >&2
		exit 1
	fi
	if [ "${3-}" != nobak ] && { [ -e "./$b" ] || [ -L "./$b" ]; }; then
		bg_linkbak "$b" "$2" || exit 1
	fi
	mv -fT -- "./$t" "./$b" || exit 1
	sync -- . 2>/dev/null || :
)

# bg_keep OLD FILE: make OLD, another name for FILE's previous version in
# FILE's directory, its backup (bg_bak): for a transaction that held the
# previous version until its change was proven (sudoers.sh).
bg_keep() (
	bg_pin "$(bg_dir "$2")" || exit 1
	mv -fT -- "./${1##*/}" "./.${2##*/}$bg_bak"
)

# bg_write FILE OWNER MODE CONTENT: write CONTENT atomically, as above:
# bg_temp and bg_commit, where only root can change the directory. Where
# users can, all of it but the backup runs as OWNER (USER:), whose file it
# is (the backup is made first, before the rename).
bg_write() (
	bg_pin "$(bg_dir "$1")" || exit 1
	b=${1##*/}
	if ! bg_trusted; then
		case $2 in root | root:* | 0 | 0:*)
			# As root, the writer would follow a link the users who can
			# change the directory put in place of its temp file.
			echo "breakglass: not writing root's file $1 in a directory users other than root can change" >&2
			exit 1
			;;
		esac
		# The backup is another name, in the same directory, for whatever
		# ./ENTRY is (link(2) never follows it): root may make it, where
		# protected_hardlinks would stop the user for a file of root's.
		if [ -e "./$b" ] || [ -L "./$b" ]; then bg_linkbak "$b" "$1" || exit 1; fi
		printf '%s' "$4" | bg_as "${2%%:*}" /bin/sh -c "$bg_write_script" bg_write "$b" "$3"
		exit
	fi
	t=$(printf '%s' "$4" | bg_temp "$1" "$2" "$3") || exit 1
	bg_commit "$t" "$1" || { rm -f -- "$t"; exit 1; }
)

# bg_dropline FILE TEXT: remove the lines of FILE that are TEXT (a CR at
# the end aside, as pam_listfile reads a line), written as bg_write writes
# (the same owner and mode, the previous version kept), and only where
# root alone can change the directory: a configuration file's line is no
# user's to steer. Nothing is written when no line is TEXT.
bg_dropline() (
	bg_pin "$(bg_dir "$1")" || exit 1
	b=${1##*/}
	bg_nolink "$b" "$1" || exit 1
	if ! bg_trusted; then
		echo "breakglass: not editing $1: users other than root can change its directory" >&2
		exit 1
	fi
	if [ ! -f "./$b" ]; then
		echo "breakglass: $1 is not a regular file" >&2
		exit 1
	fi
	m=$(stat -c '%u:%g %a' -- "./$b") || exit 1
	# The name through the environment: awk -v would read escapes in it.
	# shellcheck disable=SC2016 # awk's program
	if t=$(bg_temp "$1" "${m% *}" "0${m#* }" env BG_NAME="$2" awk '{ l = $0; sub(/\r$/, "", l) } l == ENVIRON["BG_NAME"] { n++; next } { print } END { exit n ? 0 : 3 }' "./$b"); then
		bg_commit "$t" "$1" || { rm -f -- "$t"; exit 1; }
	elif [ $? -ne 3 ]; then
		exit 1
	fi
)

# What bg_write and bg_chown run as the user, in the pinned directory:
# ENTRY MODE, content on stdin. mktemp makes the file 0600.
# shellcheck disable=SC2016 # expanded by the user's shell
bg_write_script='t=$(mktemp -- "./.$1.breakglass-tmp.XXXXXX") || exit 1
if cat >"$t" && { [ "$2" = 0600 ] || chmod "$2" -- "$t"; } && sync -- "$t" && mv -fT -- "$t" "./$1"; then
	exit 0
fi
rm -f -- "$t"
exit 1'
bg_bak=.breakglass.bak
bg_tmp=.breakglass-tmp
