# shellcheck shell=sh
# The end of the sshd transaction's bg_after_restore (a function body:
# it returns), after bg_sshd_start and sshd's reload functions: validate
# the restored configuration, then reload sshd, starting it when the
# reload killed it.
[ -d /run/sshd ] || mkdir -m 0755 /run/sshd
if ! out=$(sshd -t 2>&1); then
	echo "sshd -t rejects the restored configuration, so sshd was not reloaded: $out"
	return 1
fi
bg_sshd_reload start
