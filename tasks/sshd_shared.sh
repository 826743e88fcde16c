# shellcheck shell=sh
# shellcheck disable=SC2154 # bg_client, bg_server, bg_port: set by the facts prelude
# shellcheck disable=SC1007 # "a= b=" empties both, one command
# shellcheck disable=SC2034 # bg_sshd_shared, bg_sshd_out: read by userfacts.sh, which runs after it
bg_sshd_shared= bg_sshd_out=
if [ -n "$bg_client" ] && bg_sshd_nomatch </dev/null; then
	if bg_sshd_out=$(sshd -T -C "user=root,host=$bg_client,addr=$bg_client,laddr=$bg_server,lport=$bg_port" 2>/dev/null </dev/null); then
		bg_sshd_shared=1
	else
		bg_sshd_out=
	fi
fi
