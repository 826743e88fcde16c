#!/bin/sh
# An old-style inventory script: no _meta, so each host is asked with --host.
case "$1" in
--list) echo '{"legacy": ["old1.example.com", "old2.example.com"]}' ;;
--host) printf '{"ansible_host": "192.0.2.%s"}\n' "${2#old}" | sed 's/\.example\.com//' ;;
*) exit 2 ;;
esac
