#!/usr/bin/env bash
# Creates the Proxmox VE users, roles, ACLs and API tokens of AgentLab's two
# programs with the least privileges each needs: agentlab-provider@pve for
# Terraform/OpenTofu and agentlab-reaper@pve for the reaper. The privileges
# come from privileges.tsv next to this script, generated from
# internal/privileges (the list the docs and the provider's "lacks
# privileges" diagnostic use). Each distinct ACL path gets its own role, so a
# privilege is granted only where the list says (a deeper path also gets its
# parents' roles: Proxmox VE lets a deeper ACL replace inherited ones).
# Idempotent. Dry run by
# default; --apply to change the host.
#
#   scripts/host/setup-tokens.sh [--apply] [--template-vmid 9000] [--iso-storage local]
#       [--sdn-zone localnetwork] [--bridge vmbr1] [--reaper-token-file /etc/agentlab/pve-token]
#
# The reaper's token secret goes to --reaper-token-file (mode 0600); the
# provider's is printed once, for the pipeline's secret store.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

template=9000 iso=local zone=localnetwork bridge=vmbr1 reaper_token_file=/etc/agentlab/pve-token
table=$(dirname "$0")/privileges.tsv
parse_mode "$@"
set -- "${REST[@]+"${REST[@]}"}"
while [ $# -gt 0 ]; do
	case "$1" in
	--template-vmid) template=${2:?--template-vmid needs the template VMID, e.g. 9000}; shift 2 ;;
	--iso-storage) iso=${2:?--iso-storage needs the storage holding cloud-init ISOs, e.g. local}; shift 2 ;;
	--sdn-zone) zone=${2:?--sdn-zone needs a zone; plain bridges are in localnetwork}; shift 2 ;;
	--bridge) bridge=${2:?--bridge needs the agent bridge, e.g. vmbr1}; shift 2 ;;
	--reaper-token-file) reaper_token_file=${2:?--reaper-token-file needs a path}; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $template =~ ^[1-9][0-9]*$ ]] || die "--template-vmid $template: want a VMID such as 9000"
[ -r "$table" ] || die "$table is missing: it ships next to this script (make generate writes it)"

# resolve_path turns the list's placeholders into this host's names.
resolve_path() {
	local p=$1
	p=${p//<template>/$template}
	p=${p//<iso storage>/$iso}
	p=${p//<zone>/$zone}
	p=${p//<bridge>/$bridge}
	echo "$p"
}

# role_name names the role of one program on one path, e.g. AgentLab-reaper-storage-local.
role_name() {
	local p=${2#/}
	echo "AgentLab-$1-${p//\//-}"
}

exists() { # exists KIND ID: whether pveum lists it (false where pveum is missing: dry run on another machine)
	have pveum || return 1
	case "$1" in
	role) pveum role list --output-format json | grep -q "\"roleid\":\"$2\"" ;;
	user) pveum user list --output-format json | grep -q "\"userid\":\"$2\"" ;;
	token) pveum user token list "${2%!*}" --output-format json 2>/dev/null | grep -q "\"tokenid\":\"${2#*!}\"" ;;
	esac
}

for program in provider reaper; do
	user=agentlab-$program@pve
	echo "== $program: $user"
	if exists user "$user"; then
		echo "ok: user $user exists"
	else
		run pveum user add "$user" --comment "AgentLab $program (scripts/host/setup-tokens.sh)"
	fi
	# Privileges by resolved path, in the list's order.
	declare -A privs=()
	paths=()
	while IFS=$'\t' read -r prog priv path; do
		[ "$prog" = "$program" ] || continue
		path=$(resolve_path "$path")
		if [ -z "${privs[$path]+x}" ]; then
			paths+=("$path")
			privs[$path]=$priv
		elif [[ " ${privs[$path]} " != *" $priv "* ]]; then
			privs[$path]+=" $priv"
		fi
	done < <(grep -v '^#' "$table")
	[ ${#paths[@]} -gt 0 ] || die "$table lists no privileges for $program"
	for path in "${paths[@]}"; do
		role=$(role_name "$program" "$path")
		if exists role "$role"; then
			run pveum role modify "$role" --privs "${privs[$path]}"
		else
			run pveum role add "$role" --privs "${privs[$path]}"
		fi
		# An ACL on a deeper path replaces, for this user, what it inherits
		# from above: grant the roles of the listed parent paths there too.
		roles=$role
		for parent in "${paths[@]}"; do
			if [ "$parent" != "$path" ] && [[ $path == "$parent"/* ]]; then
				roles+=",$(role_name "$program" "$parent")"
			fi
		done
		run pveum acl modify "$path" --users "$user" --roles "$roles"
	done
	unset privs
	# One token per program; privsep 0: the token has exactly the user's ACLs.
	if exists token "$user!agentlab"; then
		echo "ok: token $user!agentlab exists (its secret was shown when it was made; to rotate: pveum user token remove $user agentlab, then run this again)"
		continue
	fi
	if [ "$APPLY" = 0 ]; then
		echo "would run: pveum user token add $user agentlab --privsep 0 --output-format json"
		[ "$program" = reaper ] && echo "would write $reaper_token_file (mode 0600): $user!agentlab=<secret>"
		continue
	fi
	echo "+ pveum user token add $user agentlab --privsep 0"
	secret=$(pveum user token add "$user" agentlab --privsep 0 --output-format json | sed -n 's/.*"value":"\([^"]*\)".*/\1/p')
	[ -n "$secret" ] || die "pveum did not print the token's secret"
	if [ "$program" = reaper ]; then
		install -D -m 0600 /dev/null "$reaper_token_file"
		printf '%s\n' "$user!agentlab=$secret" >"$reaper_token_file"
		echo "+ wrote $reaper_token_file (mode 0600)"
	else
		echo "provider api_token (shown once; store it as a secret, e.g. PROXMOX_VE_API_TOKEN):"
		echo "  $user!agentlab=$secret"
	fi
done
finish
