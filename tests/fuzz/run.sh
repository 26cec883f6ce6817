#!/usr/bin/env bash
# tests/fuzz/run.sh: build each libFuzzer harness of tests/fuzz/ with clang
# (AddressSanitizer + UndefinedBehaviorSanitizer) into a temporary directory
# and run it for FUZZ_SECONDS seconds (default 10) from seeds the harness
# writes itself. Exits non-zero on any crash, leak, timeout or failed
# property, printing the reproducer. Usage: tests/fuzz/run.sh [name...]
# (names: envelope attr_array template config). FUZZ_KEEP=1 keeps the
# directory (corpora, logs) after a clean run too.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
secs=${FUZZ_SECONDS:-10}
cc=${FUZZ_CC:-clang}
case "$secs" in ''|*[!0-9]*) echo "FUZZ_SECONDS must be a number of seconds" >&2; exit 2;; esac

# name|sources from src/|libraries|largest input (bytes)
harnesses=(
  "envelope|src/envelope/format.c src/envelope/stream.c||8192"
  "attr_array|src/core/attr.c src/core/schema.c src/core/template.c src/util/secmem.c||4096"
  "template|src/core/attr.c src/core/schema.c src/core/template.c src/util/secmem.c||2048"
  "config|src/policy/config.c|-linih|4096"
)
cflags=(-g -O1 -std=gnu11 -pthread "-fsanitize=fuzzer,address,undefined"
        -fno-sanitize-recover=all -fno-omit-frame-pointer
        -Wall -Wextra -Wno-unused-parameter -I pkcs11 -I src)

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/custos-fuzz.XXXXXX")
if ! printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' |
     "$cc" -fsanitize=fuzzer,address,undefined -x c - -o "$work/probe" 2>"$work/probe.log"; then
  cat "$work/probe.log" >&2
  echo "run.sh: '$cc' cannot build libFuzzer programs (Debian: clang-14 libclang-rt-14-dev)" >&2
  rm -rf "$work"
  exit 2
fi

# Build all harnesses at once; each is small.
names=()
for h in "${harnesses[@]}"; do
  IFS='|' read -r name srcs libs maxlen <<<"$h"
  selected "$name" || continue
  names+=("$name")
  mkdir -p "$work/$name/seeds" "$work/$name/corpus"
  # shellcheck disable=SC2086
  ( "$cc" "${cflags[@]}" "tests/fuzz/fuzz_$name.c" $srcs $libs -o "$work/$name/fuzz_$name" \
      >"$work/$name/build.log" 2>&1 && echo ok >"$work/$name/built" ) &
done
wait
if [ ${#names[@]} -eq 0 ]; then echo "run.sh: no harness named ${want[*]}" >&2; exit 2; fi

export UBSAN_OPTIONS=print_stacktrace=1
status=0
for h in "${harnesses[@]}"; do
  IFS='|' read -r name srcs libs maxlen <<<"$h"
  selected "$name" || continue
  dir=$work/$name
  bin=$dir/fuzz_$name
  if [ ! -f "$dir/built" ]; then
    echo "FAIL fuzz_$name: build failed"; cat "$dir/build.log"; status=1; continue
  fi
  if ! FUZZ_SEED_DIR="$dir/seeds" "$bin" >"$dir/seeds.log" 2>&1; then
    echo "FAIL fuzz_$name: writing seeds failed"; tail -n 40 "$dir/seeds.log"; status=1; continue
  fi
  rc=0
  "$bin" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" "$dir/seeds" \
    >"$dir/fuzz.log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/fuzz.log")
  last=$(grep -E '^#[0-9]+.* cov: ' "$dir/fuzz.log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  artifacts=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
                -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
  if [ $rc -eq 0 ] && [ -z "$artifacts" ]; then
    echo "PASS fuzz_$name: ${runs:-?} runs in ${secs}s, ${eps:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
    continue
  fi
  status=1
  echo "FAIL fuzz_$name (exit $rc) after ${runs:-?} runs, cov ${cov:-?}"
  grep -E 'ERROR: |SUMMARY: |runtime error|property failed|^ +#[0-9]+ ' "$dir/fuzz.log" | head -n 40 || true
  for a in $artifacts; do
    echo "reproducer: $a ($(wc -c <"$a") bytes)"
    echo "  hex: $(head -c 512 "$a" | od -An -tx1 -v | tr -d ' \n')"
    echo "  rerun: $bin $a"
  done
  echo "log: $dir/fuzz.log"
done

if [ $status -eq 0 ] && [ "${FUZZ_KEEP:-}" != 1 ]; then
  rm -rf "$work"
else
  echo "fuzz work directory kept: $work"
fi
exit $status
