// Package inventory reads Ansible inventories — YAML, INI, directories with
// group_vars/ and host_vars/, and executable dynamic-inventory scripts — and
// answers Ansible host patterns against them. It knows hosts, groups,
// variables and patterns, and nothing about SSH.
//
// The aim is that an inventory that works with ansible-playbook works here
// unchanged and means the same: the same hosts, the same groups, the same
// variable values (see Host.Vars for the precedence). Where breakglass
// differs from Ansible it is stricter, because a misread inventory can
// leave a host without its emergency access:
//
//   - Unknown keys in a group (hosts/vars/children are the only ones) and
//     duplicate keys are errors, not warnings; so are groups that are not
//     mappings and hosts: written as a list.
//   - Host and group names are letters, digits, '.', '-' and '_', starting
//     with a letter, digit or '_' (host names may also be IP addresses):
//     no whitespace, control characters, shell metacharacters, '/' or
//     leading '-'.
//   - A pattern that is empty, has an unbalanced bracket or an empty ~regexp
//     is an error (Ansible would select every host).
//   - Ansible Vault cannot be decrypted: vault-encrypted vars files and
//     !vault values are skipped and listed by Inventory.Warnings; a
//     vault-encrypted inventory file is an error.
//   - Inventory plugin configurations (a YAML file with plugin:) cannot be
//     run; save `ansible-inventory --list` output as JSON instead.
//
// And where Ansible's behaviour is an accident, it follows the intent:
// {} for a group in dynamic-inventory JSON is an empty group (Ansible makes
// a host of it); integers too big for 64 bits stay strings rather than
// becoming floats; a subscript out of range (web[99]) matches nothing.
//
// Values are read as Ansible reads them. YAML is YAML 1.1 as far as it
// matters: unquoted yes/no/on/off are booleans, 0644 is an octal int. INI
// values go through a port of Python's ast.literal_eval: 22 is an int,
// True a bool, 'x' a string without quotes, [1, 2] a list; true, 0755 and
// bare words stay strings, and a "# comment" after a bare word is part of
// the value, as in Ansible.
//
// Ansible's magic variables (inventory_hostname, group_names,
// inventory_file...) are not added to Host.Vars.
//
// Limits keep hostile input from exhausting time or memory: 100 000 hosts
// from one host range, 250 000 hosts in all, 10 000 000 host variables and
// group memberships in all, nesting 1000 deep, YAML alias expansion bounded
// by the file's size, 64 MiB per file or script output, 30 s per script
// run. Errors name file:line (and column for YAML and JSON) as
// *yamlx.PosError; all the errors of a load are returned together as a
// *multierror.Error, the first 100 of them.
package inventory
