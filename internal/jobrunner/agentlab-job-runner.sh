#!/bin/sh
# agentlab-job-runner: runs one AgentLab job inside its sandbox.
#
# It reads AGENTLAB_GUEST_URL and AGENTLAB_BOOTSTRAP_TOKEN from
# /etc/agentlab/job.env (AGENTLAB_JOB_ENV overrides the path), fetches the
# job's spec once with the bootstrap token, clones the repository at the
# ref (branch, tag or commit), runs the task with sh -c under the job's
# timeout, streams its output to the reaper while it runs, sends
# heartbeats, uploads the files matching the artifact globs and reports the
# exit code. It needs only sh, curl, git and the usual base utilities.
#
# State lives in AGENTLAB_JOB_DIR (default /var/lib/agentlab/job): the
# spec (so a restarted runner goes on without its spent bootstrap token),
# the task's output and the checkout when no workspace is attached. With a
# workspace the checkout is $AGENTLAB_WORKSPACE/src, kept between jobs.

set -u
umask 077

env_file=${AGENTLAB_JOB_ENV:-/etc/agentlab/job.env}
secrets_dir=${AGENTLAB_SECRETS_DIR:-/run/agentlab/secrets}
state=${AGENTLAB_JOB_DIR:-/var/lib/agentlab/job}
beat_every=${AGENTLAB_HEARTBEAT_SECONDS:-30}
flush_every=2
chunk_max=524288

say() { printf '[agentlab-job-runner] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -r "$env_file" ] || die "cannot read $env_file"
# shellcheck disable=SC1090
. "$env_file"
: "${AGENTLAB_GUEST_URL:?missing in the job env file}"
: "${AGENTLAB_BOOTSTRAP_TOKEN:?missing in the job env file}"
url=${AGENTLAB_GUEST_URL%/}

mkdir -p "$state" || die "cannot create $state"
spec=$state/spec.sh
log=$state/task.log
sent=$state/log.sent

# request METHOD PATH [curl options...]: one request to the guest listener
# with the job token; the answer's body goes to stdout. A request that
# moves less than 1 KiB/s for two minutes gives up (uploads may take long,
# but never stall forever).
request() {
	method=$1 path=$2
	shift 2
	curl -sS --retry 5 --retry-delay 1 --retry-connrefused --connect-timeout 30 \
		--speed-limit 1024 --speed-time 120 \
		-X "$method" -H "Authorization: Bearer $AGENTLAB_JOB_TOKEN" "$@" "$url$path"
}

# call METHOD PATH [curl options...]: a request that fails when the reaper
# answers with an error.
call() {
	method=$1 path=$2
	shift 2
	request "$method" "$path" -f "$@"
}

# finish CODE TIMED_OUT [ERROR [NOT_RUN]]: reports the end; retried until
# the reaper answers, for the job's outcome must not be lost to a network
# blip. The error keeps only characters that need no escaping in JSON.
# NOT_RUN true says the task never ran: the job has no exit code. It is
# sent only to a reaper whose spec lists not_run in AGENTLAB_FINISH_FIELDS
# (an older one refuses fields it does not know, and records CODE).
finish() {
	error=$(printf '%s' "${3:-}" | tr -cd 'A-Za-z0-9._/:,=+@~ -')
	extra=''
	case " ${AGENTLAB_FINISH_FIELDS:-} " in
	*" not_run "*) extra=",\"not_run\":${4:-false}" ;;
	esac
	body=$(printf '{"exit_code":%d,"timed_out":%s,"error":"%s"%s}' "$1" "$2" "$error" "$extra")
	tries=0
	until call POST /v1/job/finished -H 'Content-Type: application/json' --data-binary "$body" >/dev/null; do
		tries=$((tries + 1))
		[ "$tries" -ge 30 ] && die "cannot report the end to $url"
		sleep 2
	done
}

# Fetch the spec once; a restarted runner uses the copy it kept.
if [ ! -s "$spec" ]; then
	tries=0
	until curl -fsS --retry 3 --retry-connrefused --max-time 60 \
		-H "Authorization: Bearer $AGENTLAB_BOOTSTRAP_TOKEN" "$url/v1/job/spec?format=sh" -o "$spec.tmp"; do
		tries=$((tries + 1))
		[ "$tries" -ge 60 ] && die "cannot fetch the job spec from $url"
		sleep 2
	done
	mv "$spec.tmp" "$spec"
fi
# shellcheck disable=SC1090
. "$spec"
say "job $AGENTLAB_JOB_ID: $AGENTLAB_REPO at $AGENTLAB_REF"

# flush: sends the task output not sent yet, in chunks.
flush() {
	[ -f "$log" ] || return 0
	size=$(wc -c <"$log")
	off=$(cat "$sent" 2>/dev/null || echo 0)
	while [ "$off" -lt "$size" ]; do
		n=$((size - off))
		[ "$n" -gt "$chunk_max" ] && n=$chunk_max
		tail -c +"$((off + 1))" "$log" | head -c "$n" |
			call POST /v1/job/log -H 'Content-Type: application/octet-stream' --data-binary @- >/dev/null || return 1
		off=$((off + n))
		echo "$off" >"$sent"
	done
}

# The reporter streams the output and sends heartbeats while the runner
# lives; it stops when the runner dies, so a dead runner goes silent.
runner_pid=$$
beat_ticks=$((beat_every / flush_every))
[ "$beat_ticks" -ge 1 ] || beat_ticks=1
(
	ticks=0
	while kill -0 "$runner_pid" 2>/dev/null; do
		flush
		if [ $((ticks % beat_ticks)) -eq 0 ]; then
			call POST /v1/job/heartbeat >/dev/null 2>&1 || say "heartbeat failed"
		fi
		ticks=$((ticks + 1))
		sleep "$flush_every"
	done
) &
reporter=$!

# descendants PID: prints every descendant of PID, read from /proc.
descendants() {
	for st in /proc/[0-9]*/status; do
		pid='' ppid=''
		while IFS=':	 ' read -r key value; do
			case $key in
			Pid) pid=$value ;;
			PPid) ppid=$value && break ;;
			esac
		done <"$st" 2>/dev/null
		if [ "$ppid" = "$1" ]; then
			echo "$pid"
			descendants "$pid"
		fi
	done
}

# kill_tree PID: ends PID and everything it started.
kill_tree() {
	pids="$1 $(descendants "$1")"
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	sleep 5
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
}

# Check out the repository at the ref.
if [ -n "$AGENTLAB_WORKSPACE" ]; then
	src=$AGENTLAB_WORKSPACE/src
else
	src=$state/src
fi
checkout() {
	if [ -d "$src/.git" ]; then
		git -C "$src" remote set-url origin "$AGENTLAB_REPO" &&
			git -C "$src" fetch -q --force --tags origin '+refs/heads/*:refs/remotes/origin/*'
	else
		git clone -q --no-checkout -- "$AGENTLAB_REPO" "$src"
	fi || return 1
	commit=$(git -C "$src" rev-parse -q --verify "refs/remotes/origin/$AGENTLAB_REF^{commit}" ||
		git -C "$src" rev-parse -q --verify "refs/tags/$AGENTLAB_REF^{commit}" ||
		git -C "$src" rev-parse -q --verify "$AGENTLAB_REF^{commit}") ||
		{ git -C "$src" fetch -q origin "$AGENTLAB_REF" && commit=$(git -C "$src" rev-parse FETCH_HEAD); } ||
		return 1
	git -C "$src" checkout -q --force --detach "$commit"
}
: >"$log"
if ! checkout >>"$log" 2>&1; then
	say "cannot check out $AGENTLAB_REF of $AGENTLAB_REPO" 2>>"$log"
	flush
	finish 1 false "cannot check out ref $AGENTLAB_REF of the repository, see the log" true
	kill "$reporter" 2>/dev/null
	exit 0 # the outcome is reported: the runner did its part
fi

call POST /v1/job/started >/dev/null || say "cannot report the start"

# agentlab_secrets_env exports each secret the guest opened at boot (one
# file per key in the secrets directory) to the task's environment. Only
# names a shell can export are taken; values keep their bytes, trailing
# newlines included. Nothing here prints a value.
agentlab_secrets_env() {
	for f in "$secrets_dir"/*; do
		[ -f "$f" ] || continue
		k=${f##*/}
		case $k in
		[!A-Za-z_]* | *[!A-Za-z0-9_]* | AGENTLAB_*) continue ;;
		esac
		v=$(cat "$f" && printf x) || continue
		export "$k=${v%x}"
	done
	unset f k v
}

# Run the task in its own shell, with the job's environment and secrets
# (and not the tokens), under the runner's own timer.
(
	cd "$src" || exit 1
	unset AGENTLAB_JOB_TOKEN AGENTLAB_BOOTSTRAP_TOKEN
	export AGENTLAB_JOB_ID AGENTLAB_WORKSPACE
	agentlab_task_env
	agentlab_secrets_env
	exec sh -c "$AGENTLAB_TASK"
) </dev/null >>"$log" 2>&1 &
task=$!
rm -f "$state/timed-out"
(
	sleep "$AGENTLAB_TIMEOUT"
	: >"$state/timed-out"
	kill_tree "$task"
) &
timer=$!
wait "$task"
code=$?
timed_out=false
if [ -e "$state/timed-out" ]; then
	timed_out=true
	echo "[agentlab-job-runner] the task ran longer than ${AGENTLAB_TIMEOUT}s and was stopped" >>"$log"
else
	kill_tree "$timer" &
fi

# matches PATH: whether PATH matches one of the artifact globs (* also
# matches /).
matches() {
	old_ifs=$IFS
	IFS='
'
	set -f
	for glob in $AGENTLAB_ARTIFACTS; do
		# shellcheck disable=SC2254
		case $1 in $glob)
			IFS=$old_ifs
			set +f
			return 0
			;;
		esac
	done
	IFS=$old_ifs
	set +f
	return 1
}

# escape NAME: NAME for a URL path, every byte but / percent-encoded, so
# that any file name reaches the reaper, which says which names it takes.
escape() {
	printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g; s|%2f|/|g'
}

# upload FILE: uploads the artifact FILE (a path in the checkout). When the
# reaper refuses it, its answer, which says why (larger than
# artifacts.max_bytes, a name it does not take), goes to the log; so does
# curl's own error when no answer came. Sets why_failed.
upload() {
	answer=$state/upload.answer
	status=$(request PUT "/v1/job/artifacts/$(escape "$1")" -T "$src/$1" -o "$answer" -w '%{http_code}' 2>>"$log") || status=000
	case $status in
	2??) return 0 ;;
	000)
		why_failed='no answer'
		echo "[agentlab-job-runner] upload of $1 failed: no answer from the reaper (curl's error above)" >>"$log"
		;;
	*)
		why_failed="HTTP $status"
		echo "[agentlab-job-runner] upload of $1 failed: the reaper answered $status: $(tr -cd '[:print:]' <"$answer" | head -c 400)" >>"$log"
		;;
	esac
	return 1
}

failed=''
if [ -n "$AGENTLAB_ARTIFACTS" ]; then
	list=$state/artifacts.list
	(cd "$src" && find . -path ./.git -prune -o -type f -print) | sed 's|^\./||' | sort >"$list"
	while IFS= read -r f; do
		matches "$f" || continue
		if upload "$f"; then
			echo "[agentlab-job-runner] uploaded $f" >>"$log"
		else
			failed="$failed $f ($why_failed)"
		fi
	done <"$list"
fi

flush
if [ -n "$failed" ]; then
	finish "$code" "$timed_out" "artifact upload failed, see the log:$failed"
else
	finish "$code" "$timed_out"
fi
kill "$reporter" 2>/dev/null
say "job $AGENTLAB_JOB_ID ended: exit code $code, timed out: $timed_out"
exit 0
