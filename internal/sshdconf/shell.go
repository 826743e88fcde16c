package sshdconf

import _ "embed"

// Shell defines the shell functions that find the main sshd on a host
// (sshd.sh): bg_sshd_files, bg_sshd_pidfile, bg_sshd_alive, bg_sshd_pid,
// bg_sshd_socket_activated and bg_sshd_nomatch. Scripts that need them
// start with it.
//
//go:embed sshd.sh
var Shell string

// DefaultPidFile is where sshd writes its pid unless PidFile says
// otherwise (bg_sshd_pidfile falls back to it).
const DefaultPidFile = "/run/sshd.pid"
