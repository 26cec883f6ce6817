#!/bin/bash
# tests/integration/robustness.sh: two promises of the token store, proven on the built module with
# robustness_test.py (PyKCS11, /usr/bin/python3). 1. Crash safety: a token key reported created
# (CKR_OK) survives a SIGKILL of its process at a random moment, alone or beside a second writer;
# the file passes `PRAGMA integrity_check`. 2. A damaged token file (header overwritten, truncated
# to half, random bytes) gives a clear error for that token only, is never modified, and the other
# token goes on working. PINs reach Python through the environment, never the command line.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need sqlite3 sha256sum truncate
[ -x "$PYTHON" ] || skip "$PYTHON is not installed"
"$PYTHON" -c 'import PyKCS11' 2>/dev/null || skip "python3-pykcs11 is not installed"
[ "$IT_REFERENCE" = 0 ] || skip "checks the Custos store files (token-<slot>.db)"

export IT_SO_PIN=$SO_PIN IT_USER_PIN=$USER_PIN IT_STATE=$IT_TMP
export IT_LABEL="it-robust-$$"
TEST_PY=$IT_DIR/robustness_test.py
T0=$SECONDS

# integrity_ok DB: SQLite's own check of the whole file (run with no module process open).
integrity_ok() {
    run sqlite3 "$1" 'PRAGMA integrity_check'
    [ "$OUT" = ok ] || fail "PRAGMA integrity_check of $(basename "$1"): '$OUT', expected 'ok'"
}

# ---- 1. crash safety ------------------------------------------------------------------------------
run "$PYTHON" "$TEST_PY" init "$IT_LABEL"
DB=$IT_STORE/token-0.db
[ -f "$DB" ] || fail "the token file $DB was not created"
# Rounds 1-3: one writer; round 4: two writers on the same token at once.
for round in 1 2 3 4; do
    writers=1
    [ "$round" = 4 ] && writers=2
    log "round $round: $writers writer(s), SIGKILLed 0.3-1.0 s after their first key"
    run "$PYTHON" "$TEST_PY" crash "$round" "$writers"
    run "$PYTHON" "$TEST_PY" verify "$round"
    expect '^# after round' "the verify phase ran to its end"
    SUMMARY=$(sed -n 's/^# after round [0-9]*: //p' <<<"$OUT")
    integrity_ok "$DB"
done
log "crash safety after 5 SIGKILLs in 4 rounds: $SUMMARY"

# ---- 2. a damaged token file ----------------------------------------------------------------------
D=$IT_TMP/damage
mkdir -p "$D/store"
printf '[store]\npath = %s\n[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n' \
    "$D/store" > "$D/custos.conf"
run env CUSTOS_CONF="$D/custos.conf" IT_STATE="$D" "$PYTHON" "$TEST_PY" damage-init
for f in token-0.db token-1.db; do
    [ -f "$D/store/$f" ] || fail "damage-init did not create $f"
done
# The module checkpoints on close; token-1's data must all be in token-1.db, since only that file
# is copied into each damaged store.
if [ -s "$D/store/token-1.db-wal" ]; then fail "token-1.db-wal is not empty after C_Finalize"; fi
size=$(filesize "$D/store/token-1.db")
log "token-1.db: $size bytes"

for variant in intact header half random; do
    V=$IT_TMP/v-$variant
    mkdir -p "$V/store"
    printf '[store]\npath = %s\n[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n' \
        "$V/store" > "$V/custos.conf"
    cp -p "$D/store"/token-0.db* "$V/store/"
    cp -p "$D/store/token-1.db" "$V/store/token-1.db"
    cp "$D/damage.json" "$V/damage.json"
    f=$V/store/token-1.db
    case $variant in
        intact) ;;
        header) head -c 4096 /dev/urandom | dd of="$f" bs=4096 count=1 conv=notrunc status=none ;;
        half) truncate -s $((size / 2)) "$f" ;;
        random) head -c "$size" /dev/urandom > "$f" ;;
    esac
    before=$(sha256sum < "$f")
    log "variant $variant: token-1.db is $(filesize "$f") bytes"
    run env CUSTOS_CONF="$V/custos.conf" IT_STATE="$V" "$PYTHON" "$TEST_PY" damage-check "$variant"
    expect '^ok   - slot 0: key-0: GCM round trip' "token 0 worked beside token-1.db ($variant)"
    after=$(sha256sum < "$f")
    # A healthy token in use is written to (encryption counters, the audit
    # head); a damaged one must never be.
    if [ "$variant" != intact ]; then
        [ "$before" = "$after" ] || fail "variant $variant: the module modified token-1.db (sha256 changed)"
        log "variant $variant: token-1.db unchanged (sha256 ${after%% *})"
    fi
    integrity_ok "$V/store/token-0.db"
done
log "run time $((SECONDS - T0)) s"
