#!/usr/bin/env bash
# make bench: the project's benchmarks, each reported against a baseline measured in the same run.
# Figures and how to read them: docs/performance.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "simulator: simple GET and clone+wait with the zero model (go test -bench)"
go test -run '^$' -bench . -benchtime 2s -count 1 ./internal/pvesim/

step "reaper: one tick over 10,000 VMs, expiry-to-destroy delay (go test -bench)"
go test -run '^$' -bench 'Tick' -benchtime 20x -count 1 ./reaper/reconcile/
go test -run '^$' -bench 'ExpiryToDestroy' -benchtime 3x -count 1 ./reaper/reconcile/

step "provider: terraform apply of 50 sandboxes, -parallelism=10, realistic model with the capacity model (about 5 minutes)"
make --no-print-directory build
go run ./tools/applybench -provider-dir bin -n 50 -parallelism 10

step "client path: 50 sandboxes through the Telmate library as-is vs internal/pve, same model (about 10 minutes)"
go run ./tools/libbench -n 50 -workers 10

step "reaper: artifact upload with curl through the guest listener vs writing the same bytes to disk; CPU; peak RSS"
make --no-print-directory build
go run ./tools/uploadbench -reaper bin/agentlab-reaper -sizes 64MiB,256MiB,1GiB -rounds 5

step "jobs: 20 concurrent jobs end to end, terraform -parallelism=20, realistic model (about 2 minutes; needs root)"
go run ./tools/jobbench -bin bin -n 20 -parallelism 20
