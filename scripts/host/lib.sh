# shellcheck shell=bash
# Shared by the host setup scripts: --dry-run (the default) prints every
# command that would change the host and runs none of them; --apply runs
# them. Read-only checks (does the role exist? is the file current?) run in
# both modes when their tool is present, so a second --apply changes nothing
# and a dry run on a configured host prints nothing to do.

APPLY=0

# parse_mode consumes --dry-run/--apply from "$@" and leaves the other
# arguments in REST.
parse_mode() {
	REST=()
	for arg in "$@"; do
		case "$arg" in
		--apply) APPLY=1 ;;
		--dry-run) APPLY=0 ;;
		*) REST+=("$arg") ;;
		esac
	done
}

# run prints a command (shell-quoted) and runs it with --apply.
run() {
	local q
	printf -v q '%q ' "$@"
	if [ "$APPLY" = 1 ]; then
		echo "+ ${q% }"
		"$@"
	else
		echo "would run: ${q% }"
	fi
}

# have reports whether a command is on PATH.
have() { command -v "$1" >/dev/null 2>&1; }

# write_file PATH MODE CONTENT writes CONTENT to PATH unless it already holds
# exactly that; the dry run prints the content it would write.
write_file() {
	local path=$1 mode=$2 content=$3
	if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
		echo "ok: $path is current"
		return 1
	fi
	if [ "$APPLY" = 1 ]; then
		echo "+ write $path (mode $mode)"
		install -D -m "$mode" /dev/null "$path"
		printf '%s\n' "$content" >"$path"
	else
		echo "would write $path (mode $mode):"
		printf '%s\n' "$content" | sed 's/^/    /'
	fi
	return 0
}

# die prints an error naming what to fix and exits.
die() {
	echo "error: $*" >&2
	exit 2
}

# finish says how to apply after a dry run.
finish() {
	if [ "$APPLY" = 0 ]; then
		echo "dry run: nothing was changed; run again with --apply to make these changes"
	fi
}
