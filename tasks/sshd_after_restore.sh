# shellcheck shell=sh
# The end of the sshd transaction's bg_after_restore (a function body:
# it returns), after a header that sets its positional parameters to the
# running sshd's command line (none when unknown) and sshd's reload
# functions: validate the restored configuration, then reload sshd,
# starting it as it ran when the reload killed it.
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd
if ! out=$(sshd -t 2>&1); then
	echo "sshd -t rejects the restored configuration, so sshd was not reloaded: $out"
	return 1
fi
bg_sshd_reload start "$@"
