# shellcheck shell=sh
# shellcheck disable=SC2034 # bg_real, bg_link and bg_target are its results
# bg_resolve PATH: PATH with its symbolic links resolved, as realpath -m
# does (a missing component is kept as it is), but a link is followed only
# where root alone can have made it: in a directory owned by root and not
# writable by group or others (/home -> /srv/home, /bin -> usr/bin). At a
# link anybody else could have planted, or after 40 links, it stops: it
# sets bg_link (the link) and bg_target (what it points at) and returns
# 1. Otherwise it sets bg_real and returns 0.
#
# It walks by entering each directory (cd), so every question is asked of
# the directory it is in, never of a path a user could change in between;
# it leaves the shell in /.
bg_resolve() {
	bg_real='' bg_link='' bg_target=''
	cd / || return 1
	r_rest=$1 r_cur='' r_n=0 r_in=1
	while [ -n "$r_rest" ]; do
		r_c=${r_rest%%/*}
		case $r_rest in */*) r_rest=${r_rest#*/} ;; *) r_rest='' ;; esac
		case $r_c in
		'' | .) continue ;;
		..)
			r_cur=${r_cur%/*}
			[ -z "$r_in" ] || cd -P .. || r_in=''
			continue
			;;
		esac
		if [ -n "$r_in" ] && [ -L "./$r_c" ]; then
			r_n=$((r_n + 1))
			r_t=$(readlink -- "./$r_c") || r_t=''
			# shellcheck disable=SC2046 # two numbers
			set -- $(stat -c '%u %a' . 2>/dev/null)
			if [ "$r_n" -gt 40 ] || [ -z "$r_t" ] || [ "${1-}" != 0 ] || [ $((0${2-2} & 18)) -ne 0 ]; then
				bg_link=$r_cur/$r_c bg_target=$r_t
				cd /
				return 1
			fi
			case $r_t in /*) r_cur='' && cd / ;; esac
			r_rest=$r_t${r_rest:+/$r_rest}
			continue
		fi
		if [ -n "$r_in" ] && [ -d "./$r_c" ]; then
			if cd -P -- "./$r_c" 2>/dev/null; then
				r_h=$(pwd -P && echo .)
				r_h=${r_h%?.}
				if [ "$r_h" != "$r_cur/$r_c" ]; then
					# Swapped for a link between the two looks.
					bg_link=$r_cur/$r_c bg_target="(changed while breakglass read it)"
					cd /
					return 1
				fi
			else
				r_in=''
			fi
		else
			r_in='' # missing (or not a directory): nothing below can be a link
		fi
		r_cur=$r_cur/$r_c
	done
	bg_real=${r_cur:-/}
	cd /
}
