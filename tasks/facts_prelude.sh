# shellcheck shell=sh
# The facts prelude's fixed part (factsPrelude in gather.go): it starts
# every script that gathers user facts and sets, once for all of them, what
# each user's query (userfacts.sh) would otherwise compute again. It runs
# after a header that sets:
#   bg_client bg_server bg_port  this run's connection as sshd sees it
#                (empty: each query learns it from the session)
#   bg_pw_list   the users whose facts the script gathers, one per word,
#                when more than one (empty otherwise)
#   bg_today     the host's day, when an earlier query told it (or empty)
# and, when sshd's configuration is already known to be the same for every
# user, bg_sshd_shared=1 and bg_sshd_out; otherwise sshdconf.Shell and
# sshd_shared.sh follow this file.
# shellcheck disable=SC2154 # bg_pw_list, bg_today: set by the header
# shellcheck disable=SC2034 # bg_pw_users, bg_pw_all, bg_sp_all: read by userfacts.sh
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
# Every user's passwd and shadow entry in one getent each.
if [ -n "$bg_pw_list" ]; then
	bg_pw_users=" $bg_pw_list "
	# shellcheck disable=SC2086 # one word per user: valid names, no globs
	bg_pw_all=$(getent passwd $bg_pw_list 2>/dev/null)
	# shellcheck disable=SC2086 # the same
	bg_sp_all=$(getent shadow $bg_pw_list 2>/dev/null)
fi
[ -n "$bg_today" ] || bg_today=$(( $(date +%s) / 86400 ))
