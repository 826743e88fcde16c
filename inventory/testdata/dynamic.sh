#!/bin/sh
# A dynamic inventory script, the way Ansible calls it.
case "$1" in
--list)
	cat <<'JSON'
{
  "_meta": {"hostvars": {
    "app1.cloud.example.com": {"ansible_host": "198.51.100.11", "zone": "eu-1a"},
    "app2.cloud.example.com": {"ansible_host": "198.51.100.12", "zone": "eu-1b"}
  }},
  "app": {"hosts": ["app1.cloud.example.com", "app2.cloud.example.com"], "vars": {"role": "app"}},
  "eu": {"children": ["app"]}
}
JSON
	;;
--host)
	echo '{}'
	;;
*)
	echo "usage: $0 --list | --host NAME" >&2
	exit 2
	;;
esac
