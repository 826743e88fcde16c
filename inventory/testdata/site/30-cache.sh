#!/bin/sh
[ "$1" = --list ] || exit 2
echo '{"_meta": {"hostvars": {}}, "cache": {"hosts": ["cache01.example.com"], "vars": {"level": "cache-script"}}}'
