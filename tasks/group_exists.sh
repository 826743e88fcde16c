# shellcheck shell=sh
# GroupQuery's script, after a header that sets g, a group name: "present"
# or "absent".
# shellcheck disable=SC2154 # g: set by the header
if getent group "$g" >/dev/null; then echo present; else echo absent; fi
