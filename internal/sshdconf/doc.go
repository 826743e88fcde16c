// Package sshdconf is breakglass's one model of OpenSSH sshd's rules: how
// sshd reads sshd_config (Include order and globs, Match blocks, the first
// value wins), its effective configuration as `sshd -T` prints it, how it
// matches AllowUsers/DenyUsers/AllowGroups/DenyGroups and from= patterns,
// and where the running sshd's pid is found. The modules, audit and
// recover all judge sshd through it, so one host gets one answer.
//
// It reads recorded text only (files the host dumped, sshd -T's output);
// it runs nothing. The shell that collects that text is pidfile.sh.
package sshdconf
