# shellcheck shell=sh
# Can each user run the program its forced command names, as that user?
# forcedCommands in commands.go puts the header before this script:
#   bg_path    PATH of a session (sshd's _PATH_STDPATH), where a program
#              without a slash is looked up
#   bg_checks  one "USER PROGRAM" line each (checked names, programs of
#              [A-Za-z0-9._/+-]: words without glob characters)
# It prints "fc USER STATE PROGRAM", STATE one of ok, missing, noexec,
# notfound, unknown.
# shellcheck disable=SC2154 # bg_path, bg_checks: set by the header
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
{
bg_fc() { # USER PROGRAM: can USER run PROGRAM, as USER
	bg_ids=$(id -u -- "$1" 2>/dev/null):$(id -g -- "$1" 2>/dev/null)
	case $bg_ids in *[!0-9:]* | :* | *:) printf 'fc %s unknown %s\n' "$1" "$2"; return ;; esac
	# shellcheck disable=SC2016 # the inner script expands its own $1 and $p
	bg_s=$(timeout -s KILL 10 setpriv --reuid="${bg_ids%:*}" --regid="${bg_ids#*:}" --init-groups -- env -i PATH="$bg_path" /bin/sh -c '
		case $1 in
		*/*) p=$1 ;;
		*) p=$(command -v -- "$1") || { echo notfound; exit; } ;;
		esac
		case $p in /*) ;; *) echo ok; exit ;; esac
		if [ ! -e "$p" ]; then echo missing
		elif [ -f "$p" ] && [ -x "$p" ]; then echo ok
		else echo noexec
		fi' sh "$2" </dev/null 2>/dev/null)
	case $bg_s in ok | missing | noexec | notfound) ;; *) bg_s=unknown ;; esac
	printf 'fc %s %s %s\n' "$1" "$bg_s" "$2"
}
set -f
bg_nl='
'
bg_oldifs=$IFS
IFS=$bg_nl
for bg_c in $bg_checks; do bg_fc "${bg_c%% *}" "${bg_c#* }"; done
IFS=$bg_oldifs
} </dev/null
