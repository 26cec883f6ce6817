# tests/integration/lib.sh: shared helpers for the integration tests that drive the built Custos
# module with real Debian tools. Owns the per-run temp dir and test configuration, the PINs (made at
# run time, never committed), the run/expect helpers, and cleanup. Sourced by bash; prints no PIN or key.
#
# Environment: CUSTOS_MODULE (absolute path of the built .so; `make check` sets it), CUSTOS_SRCDIR,
# CUSTOS_BUILDDIR. To check the tests themselves, CUSTOS_MODULE may name SoftHSM2
# (/usr/lib/softhsm/libsofthsm2.so): a private SoftHSM2 token directory is set up instead of the store.
# Exit codes: 0 pass, 1 fail, 77 a required tool is missing.

# shellcheck disable=SC2034  # PYTHON, IT_REFERENCE, ... are used by the tests that source this.
set -u
umask 077

IT_NAME=$(basename "$0" .sh)
IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CUSTOS_SRCDIR=${CUSTOS_SRCDIR:-$(cd "$IT_DIR/../.." && pwd)}
CUSTOS_BUILDDIR=${CUSTOS_BUILDDIR:-$CUSTOS_SRCDIR}
PYTHON=/usr/bin/python3
IT_TIMEOUT=${IT_TIMEOUT:-60}

log() { printf '%s: %s\n' "$IT_NAME" "$(mask "$*")"; }
fail() { printf '%s: FAIL: %s\n' "$IT_NAME" "$(mask "$*")" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$IT_NAME" "$*" >&2; exit 77; }
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (tools/test installs it)"
    done
}

# ---- secrets: PINs and known key bytes are masked in everything printed ----------------------
gen_pin() { od -An -tx1 -N8 /dev/urandom | tr -d ' \n'; }
IT_SECRETS=()
IT_MODULE_SHOWN=   # the module path, shown as $CUSTOS_MODULE once resolved
secret() { IT_SECRETS+=("$1"); }
mask() {
    local s=$* p
    for p in "${IT_SECRETS[@]}"; do
        [ -n "$p" ] && s=${s//"$p"/***}
    done
    [ -n "$IT_MODULE_SHOWN" ] && s=${s//"$IT_MODULE_SHOWN"/\$CUSTOS_MODULE}
    printf '%s' "$s"
}
# A key value that a tool prints is masked line by line too (the tests also assert none appears).
mask_stream() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            *VALUE:*) line="${line%%VALUE:*}VALUE: ***" ;;
        esac
        printf '%s\n' "$(mask "$line")"
    done
}

SO_PIN=$(gen_pin)
USER_PIN=$(gen_pin)
WRONG_PIN=$(gen_pin)
while [ "$WRONG_PIN" = "$USER_PIN" ] || [ "$WRONG_PIN" = "$SO_PIN" ]; do WRONG_PIN=$(gen_pin); done
secret "$SO_PIN"; secret "$USER_PIN"; secret "$WRONG_PIN"

# ---- cleanup --------------------------------------------------------------------------------
IT_TMP=
IT_CLEANUP=()
on_cleanup() { IT_CLEANUP+=("$1"); }
at_exit() {
    local rc=$? c
    for c in "${IT_CLEANUP[@]}"; do eval "$c" || true; done
    [ -n "$IT_TMP" ] && rm -rf "$IT_TMP"
    case $rc in
        0) printf '%s: PASS\n' "$IT_NAME" ;;
        77) ;;
        *) printf '%s: FAILED (exit %s)\n' "$IT_NAME" "$rc" >&2 ;;
    esac
    exit "$rc"
}
trap at_exit EXIT
trap 'exit 1' INT TERM HUP

# ---- the module and its configuration ----------------------------------------------------------
if [ -z "${CUSTOS_MODULE:-}" ]; then
    for c in "$CUSTOS_BUILDDIR/.libs/custos-pkcs11.so" "$CUSTOS_SRCDIR/build/.libs/custos-pkcs11.so"; do
        if [ -f "$c" ]; then CUSTOS_MODULE=$c; break; fi
    done
fi
if [ -z "${CUSTOS_MODULE:-}" ] || [ ! -f "$CUSTOS_MODULE" ]; then
    fail "module not found (CUSTOS_MODULE='${CUSTOS_MODULE:-}'): build it first"
fi
CUSTOS_MODULE=$(readlink -f "$CUSTOS_MODULE")
export CUSTOS_MODULE CUSTOS_SRCDIR CUSTOS_BUILDDIR
log "module: $CUSTOS_MODULE"
IT_MODULE_SHOWN=$CUSTOS_MODULE

IT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/custos-it.XXXXXX") || fail "mktemp failed"
IT_STORE=$IT_TMP/store
mkdir -p "$IT_STORE"
CUSTOS_CONF=$IT_TMP/custos.conf
cat > "$CUSTOS_CONF" <<EOF
[store]
path = $IT_STORE
[pin]
kdf = pbkdf2
pbkdf2_iterations = 1000
max_retries = 10
EOF
export CUSTOS_CONF

IT_REFERENCE=0
case $(basename "$CUSTOS_MODULE") in
    *softhsm*)
        IT_REFERENCE=1
        IT_STORE=$IT_TMP/softhsm
        mkdir -p "$IT_STORE"
        printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
            "$IT_STORE" > "$IT_TMP/softhsm2.conf"
        export SOFTHSM2_CONF=$IT_TMP/softhsm2.conf
        log "reference run against SoftHSM2 (checks the tests, not Custos)"
        ;;
esac

# ---- running commands ------------------------------------------------------------------------
# run CMD...: print the command (PINs masked), run it with a timeout, keep its combined output in
# $OUT and exit code in $RC, print the output indented; the test fails if CMD fails.
OUT=
RC=0
exec_cmd() {
    log "\$ $(printf '%q ' "$@")"
    OUT=$(timeout "$IT_TIMEOUT" "$@" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT" | mask_stream | sed 's/^/    | /'
    [ "$RC" -ne 124 ] || fail "timed out after ${IT_TIMEOUT}s: $(printf '%q ' "$@")"
    return 0
}
run() {
    exec_cmd "$@"
    [ "$RC" -eq 0 ] || fail "expected exit 0, got $RC from: $(printf '%q ' "$@")"
}
# run_fails CMD...: the command must exit non-zero.
run_fails() {
    exec_cmd "$@"
    [ "$RC" -ne 0 ] || fail "expected failure, got exit 0 from: $(printf '%q ' "$@")"
}
# expect REGEX WHAT / expect_not REGEX WHAT: on the output of the last command (extended regex).
expect() {
    printf '%s\n' "$OUT" | grep -Eq -- "$1" ||
        fail "$2: expected the output of the last command to match /$1/, it did not"
}
expect_not() {
    if printf '%s\n' "$OUT" | grep -Eq -- "$1"; then
        fail "$2: expected the output of the last command not to match /$1/, it did"
    fi
}
hexof() { od -An -tx1 -v "$1" | tr -d ' \n'; }
filesize() { stat -c %s "$1"; }

P11TOOL=(pkcs11-tool --module "$CUSTOS_MODULE")

# The id of the slot that holds the uninitialised token, from `pkcs11-tool --list-slots`
# (it prints "token state: uninitialized" under such a slot).
empty_slot() {
    timeout "$IT_TIMEOUT" "${P11TOOL[@]}" --list-slots 2>/dev/null | awk '
        /^Slot [0-9]+ \(0x[0-9a-fA-F]+\)/ { id = $3; gsub(/[():]/, "", id) }
        /token state:[[:space:]]*uninitialized/ { print id; exit }'
}

# init_token LABEL: initialise the empty slot's token with SO_PIN, then set USER_PIN. Selects by
# --slot for the init (the token has no label yet) and by --token-label afterwards (INTEROP.md:
# some tokens renumber slots after --init-token).
init_token() {
    local slot
    slot=$(empty_slot)
    [ -n "$slot" ] || fail "no slot with an uninitialised token in pkcs11-tool --list-slots"
    log "uninitialised token found in slot $slot"
    run "${P11TOOL[@]}" --init-token --slot "$slot" --label "$1" --so-pin "$SO_PIN"
    expect 'Token successfully initialized' "--init-token on slot $slot"
    run "${P11TOOL[@]}" --token-label "$1" --init-pin --login --login-type so \
        --so-pin "$SO_PIN" --pin "$USER_PIN"
    expect 'User PIN successfully initialized' "--init-pin"
}

# flip_byte IN OFFSET OUT: copy IN to OUT with one bit of the byte at OFFSET flipped.
flip_byte() {
    local b
    cp "$1" "$3"
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$3" bs=1 seek="$2" conv=notrunc status=none
}
