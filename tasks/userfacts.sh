# shellcheck shell=sh
# The user facts script's body (userFactsScript in facts.go puts u=,
# bg_keymax*, and resolve.sh, which only defines bg_resolve, before it;
# FactsPrelude sets bg_sshd_out and the rest once for all users). Its style
# is deliberate:
# shellcheck disable=SC1007 # "a= b=" empties variables, one builtin
# shellcheck disable=SC2154 # set by the caller, FactsPrelude and bg_resolve
# shellcheck disable=SC2209 # c=hash is the word hash
# shellcheck disable=SC2125 # "?" is a separator, not a glob
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
set -f
nl='
'
tab='	'
printf 'breakglass-user-facts 2 %s\n' "$u"
if [ -z "$client" ] && [ -n "${bg_client-}" ]; then
	client=$bg_client server=${bg_server-} port=${bg_port-}
fi
if [ -z "$client" ]; then
	c=${SSH_CONNECTION-}
	p=$$
	while [ -z "$c" ] && [ -r "/proc/$p/status" ]; do
		pp=
		while read -r k v; do [ "$k" != PPid: ] || pp=$v; done <"/proc/$p/status"
		case $pp in ''|0|1) break ;; esac
		p=$pp
		c=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -m 1 '^SSH_CONNECTION=')
		c=${c#SSH_CONNECTION=}
	done
	set -- $c
	client=${1-} server=${3-} port=${4-}
fi
printf 'conn %s %s %s\n' "${client:--}" "${server:--}" "${port:--}"
printf 'today %s\n' "${bg_today:-$(( $(date +%s) / 86400 ))}"
uid= gid= home= sh_=
# The prelude looked up every user of the script at once.
pw= found=
case ${bg_pw_users-} in
*" $u "*)
	IFS=$nl
	for l in ${bg_pw_all-}; do case $l in "$u":*) pw=$l found=1; break ;; esac; done
	IFS=" $tab$nl"
	;;
*) pw=$(getent passwd "$u") && found=1 ;;
esac
if [ -n "$found" ]; then
	printf 'passwd %s\n' "$pw"
	IFS=:
	set -- $pw
	IFS=" $tab$nl"
	uid=${3-} gid=${4-} home=${6-} sh_=${7:-/bin/sh}
	printf 'shell %s\n' "$sh_"
	# One id for both lists: "groups=1000(admin),27(sudo),1234", primary
	# group first, a number alone for a group without a name.
	gn= gi=
	if idl=$(id -- "$u" 2>/dev/null); then
		case $idl in *groups=*) idl=${idl##*groups=} ;; *) idl= ;; esac
		IFS=,
		for g in $idl; do
			n=${g%%"("*}
			case $g in *"("*")") g=${g#*"("} g=${g%")"} ;; *) g=$n ;; esac
			gi=$gi${gi:+ }$n gn=$gn${gn:+ }$g
		done
		IFS=" $tab$nl"
	fi
	printf 'groups %s\n' "$gn"
	printf 'gids %s\n' "$gi"
	sp= found=
	case ${bg_pw_users-} in
	*" $u "*)
		IFS=$nl
		for l in ${bg_sp_all-}; do case $l in "$u":*) sp=$l found=1; break ;; esac; done
		IFS=" $tab$nl"
		;;
	*) sp=$(getent shadow "$u") && found=1 ;;
	esac
	if [ -n "$found" ]; then
		sp=${sp%%"$nl"*}
		IFS=:
		set -- $sp
		IFS=" $tab$nl"
		case ${2-} in
		'') c=empty ;;
		'!'*) c=locked ;;
		'*'*) c=star ;;
		*) c=hash ;;
		esac
		printf 'shadow %s %s %s %s %s\n' "$c" "${3:--}" "${5:--}" "${7:--}" "${8:--}"
	else
		echo noshadow
	fi
else
	# useradd -D's HOME: the last HOME= line of its defaults file.
	d=
	if [ -r /etc/default/useradd ]; then
		while IFS= read -r l || [ -n "$l" ]; do
			case $l in HOME=*) d=${l#HOME=} ;; esac
		done </etc/default/useradd
	fi
	d=${d:-/home}
	home=$d/$u
	printf 'newhome %s\n' "$home"
fi
printf 'home %s\n' "$home"
akf=
if [ -z "$client" ] || [ -z "$server" ] || [ -z "$port" ]; then
	echo sshd-skip
elif { [ -n "${bg_sshd_shared-}" ] && o=$bg_sshd_out; } || o=$(sshd -T -C "user=$u,host=$client,addr=$client,laddr=$server,lport=$port" 2>/dev/null); then
	echo sshd-rc 0
	[ -z "${bg_sshd_shared-}" ] || echo sshd-shared
	IFS=$nl
	[ -z "$o" ] || printf 'sshd %s\n' $o
	pats=
	for l in $o; do
		case $l in "authorizedkeysfile "*) pats=${l#authorizedkeysfile } ;; esac
	done
	IFS=" $tab$nl"
	case $pats in
	*%*)
		akf=$(printf '%s\n' "$o" | H=$home U=$u I=$uid awk '
		function expand(s,   r, c, n) {
			r = ""
			while (s != "") {
				c = substr(s, 1, 1)
				if (c != "%") { r = r c; s = substr(s, 2); continue }
				n = substr(s, 2, 1)
				if (n == "%") r = r "%"
				else if (n == "u") r = r ENVIRON["U"]
				else if (n == "h") r = r ENVIRON["H"]
				else if (n == "U" && ENVIRON["I"] != "") r = r ENVIRON["I"]
				else return ""
				s = substr(s, 3)
			}
			if (substr(r, 1, 1) != "/") r = ENVIRON["H"] "/" r
			return r
		}
		$1 == "authorizedkeysfile" { for (i = 2; i <= NF; i++) if ($i != "none") print $i "\t" expand($i) }')
		;;
	*)
		for l in $pats; do
			[ "$l" != none ] || continue
			case $l in /*) p=$l ;; *) p=$home/$l ;; esac
			akf=$akf${akf:+$nl}$l$tab$p
		done
		;;
	esac
else
	printf 'sshd-rc %s\n' "$?"
	sshd -T -C "user=$u,host=$client,addr=$client,laddr=$server,lport=$port" 2>&1 >/dev/null | sed 's/^/sshd-err /'
fi
# Fast path: when home and every key file path are absolute and plain (no
# ".", "..", "//") and no directory on the way is a symbolic link, each is
# its own real path, and one lstat of every component (and of the shell,
# stat -L'd on its own when it is a link) does what realpath and stat -L
# would do.
plain() { case $1 in /*) ;; *) return 1 ;; esac; case "$1/" in *//*|*/./*|*/../*) return 1 ;; esac; }
fast= st=
if [ -z "${bg_slow-}" ] && [ -n "$home" ] && plain "$home"; then
	fast=1 comps=
	IFS=$nl
	for p in "$home" $akf; do
		p=${p#*"$tab"}
		[ -n "$p" ] || continue
		plain "$p" || { fast=; break; }
		while [ "$p" != / ]; do
			comps=$comps$nl$p
			p=${p%/*}
			[ -n "$p" ] || p=/
		done
	done
	set --
	for p in $comps / $sh_; do set -- "$@" "$p"; done
	IFS=" $tab$nl"
fi
if [ -n "$fast" ]; then
	st=$(stat -c 'stat %u %g %f %n' -- "$@" 2>/dev/null)
	IFS=$nl
	for l in $st; do
		r=${l#stat * * }
		case ${r%% *} in
		a???)
			if [ "${r#* }" = "$sh_" ]; then
				shl=$(stat -L -c 'stat %u %g %f %n' -- "$sh_" 2>/dev/null)
			else
				fast=
			fi
			;;
		esac
	done
	IFS=" $tab$nl"
fi
# Otherwise each path resolved by bg_resolve: a link is followed only
# where root alone can have made it, and a link a user could have planted
# stops the path there (a "link" record: target in base64, the link, the
# path), as breakglass never follows one.
set --
[ -z "$home" ] || set -- "$home"
IFS=$nl
for l in $akf; do
	p=${l#*"$tab"}
	[ -z "$p" ] || set -- "$@" "$p"
done
IFS=" $tab$nl"
reals=
if [ $# -gt 0 ] && [ -n "$fast" ]; then
	for p in "$@"; do reals=$reals$p$nl; done
else
	for p in "$@"; do
		if bg_resolve "$p"; then
			reals=$reals$bg_real$nl
		else
			reals=$reals?$nl
			printf 'link %s %s %s\n' "$(printf '%s' "$bg_target" | base64 -w0)" "$(printf '%s' "$bg_link" | base64 -w0)" "$p"
		fi
	done
fi
# One line per path, in order: home first when set; ? for a link.
set --
IFS=$nl
for r in $reals; do
	[ "$r" != '?' ] || r=
	set -- "$@" "$r"
done
IFS=" $tab$nl"
hr=
if [ -n "$home" ]; then
	hr=${1-}
	printf 'homereal %s\n' "$hr"
	[ $# -eq 0 ] || shift
else
	printf 'homereal \n'
fi
i=0 all=${hr:-$home} files=
IFS=$nl
for l in $akf; do
	i=$((i + 1))
	printf 'akf %d %s\n' "$i" "${l%%"$tab"*}"
	p=${l#*"$tab"}
	[ -n "$p" ] || continue
	printf 'akpath %d %s\n' "$i" "$p"
	r=${1-}
	[ $# -eq 0 ] || shift
	[ -n "$r" ] || continue
	printf 'akreal %d %s\n' "$i" "$r"
	p=$r
	while :; do
		printf 'walk %d %s\n' "$i" "$p"
		all=$all$nl$p
		[ "$p" != / ] || break
		p=${p%/*}
		[ -n "$p" ] || p=/
	done
	[ ! -f "$r" ] || files=$files$nl$i$tab$r
done
set --
for p in $all; do set -- "$@" "$p"; done
IFS=" $tab$nl"
if [ -n "$fast" ]; then
	IFS=$nl
	for l in $st; do
		[ "${l#stat * * * }" != "$sh_" ] || [ -z "${shl-}" ] || l=$shl
		printf '%s\n' "$l"
	done
	IFS=" $tab$nl"
else
	# Nothing but the shell is stat'd through a link: every other path
	# is resolved already, so a link now is one planted meanwhile.
	[ $# -eq 0 ] || stat -c 'stat %u %g %f %n' -- "$@" 2>/dev/null
	[ -z "$sh_" ] || stat -L -c 'stat %u %g %f %n' -- "$sh_" 2>/dev/null
fi
# Key files are read as the user, as sshd reads them: whatever a link
# swapped in meanwhile, the user could read it anyway; never as root. At
# most bg_keymax bytes (a larger file is reported by its size), for at
# most 10 seconds, and what the user's process printed must be base64,
# nothing else: the user may trace their own process.
IFS=$nl
for l in $files; do
	i=${l%%"$tab"*} f=${l#*"$tab"}
	sz=$(stat -c %s -- "$f" 2>/dev/null) || sz=0
	if [ -z "$uid" ] || [ -z "$gid" ]; then
		printf 'akunreadable %d\n' "$i"
	elif [ "$sz" -gt "$bg_keymax" ]; then
		printf 'aktoolarge %d %s\n' "$i" "$sz"
	else
		c=$(timeout -s KILL 10 setpriv --reuid="$uid" --regid="$gid" --init-groups -- base64 -w0 -- "$f" </dev/null 2>/dev/null | head -c "$bg_keymax64")
		case $c in *[!A-Za-z0-9+/=]*) c= sz=1 ;; esac
		if [ "${#c}" -ge "$bg_keymax64" ]; then
			printf 'aktoolarge %d %s\n' "$i" "$((sz > bg_keymax ? sz : bg_keymax + 1))"
		elif [ -z "$c" ] && [ "$sz" -gt 0 ]; then
			printf 'akunreadable %d\n' "$i"
		else
			printf 'content %d %s\n' "$i" "$c"
		fi
	fi
done
IFS=" $tab$nl"
echo end
