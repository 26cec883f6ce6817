#!/bin/bash
# tests/integration/audit_trail.sh: the audit trail (docs/audit.md) proven on the built module and the
# `custos audit` CLI, with audit_trail_test.py (PyKCS11 + ctypes, /usr/bin/python3): 1. 100,000 mixed
# operations from 2 processes verify OK and the exported counts add up; 2. an edited, a deleted and
# a cut-off record are detected and named (and the triggers refuse plain edits); 3. the decrypt-rate
# alert denies and `clear-alerts` lifts it; 4. bad input gives the standard code and a denied record,
# and `[audit] required = yes` fails closed; 5. no key, PIN, IV or plaintext is in the audit files,
# the exports, the syslog mirror or any log this test wrote. PINs reach Python and the CLI through
# the environment and 0600 PIN files, never the command line.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need sqlite3 grep
[ -x "$PYTHON" ] || skip "$PYTHON is not installed"
"$PYTHON" -c 'import PyKCS11' 2>/dev/null || skip "python3-pykcs11 is not installed"
[ "$IT_REFERENCE" = 0 ] || skip "checks the Custos audit trail (token-<slot>.audit.db, custos audit)"

CUSTOS=
for c in "$CUSTOS_BUILDDIR/tools/custos" "$CUSTOS_SRCDIR/build/tools/custos"; do
    if [ -x "$c" ]; then CUSTOS=$c; break; fi
done
[ -n "$CUSTOS" ] || fail "the custos CLI was not found in \$CUSTOS_BUILDDIR/tools: build it first"
TEST_PY=$IT_DIR/audit_trail_test.py
T0=$SECONDS

DEC_PIN=$(gen_pin); DEC2_PIN=$(gen_pin); GEN_PIN=$(gen_pin); AUD_PIN=$(gen_pin); OFF_PIN=$(gen_pin)
secret "$DEC_PIN"; secret "$DEC2_PIN"; secret "$GEN_PIN"; secret "$AUD_PIN"; secret "$OFF_PIN"
SECRETS=$IT_TMP/secret   # the test's own secrets: the only place they are written
LOGS=$IT_TMP/logs        # everything the test and its programs printed, searched in part 5
STATE=$IT_TMP/state
mkdir -p "$SECRETS" "$LOGS" "$STATE"
for u in so:$SO_PIN aud:$AUD_PIN dec:$DEC_PIN off:$OFF_PIN wrong:$WRONG_PIN; do
    printf '%s\n' "${u#*:}" > "$SECRETS/${u%%:*}.pin"
done
export IT_SO_PIN=$SO_PIN IT_USER_PIN=$USER_PIN IT_WRONG_PIN=$WRONG_PIN IT_DEC_PIN=$DEC_PIN \
    IT_DEC2_PIN=$DEC2_PIN IT_GEN_PIN=$GEN_PIN IT_AUD_PIN=$AUD_PIN IT_OFF_PIN=$OFF_PIN
export IT_STATE=$STATE IT_SECRET_DIR=$SECRETS IT_LABEL="it-audit-$$" IT_STORE=$IT_STORE
AUDIT_DB=$IT_STORE/token-0.audit.db

# defer_fail MSG: a failure that is reported now and fails the test at its end, so that the parts
# after it still run and report.
DEFERRED=()
defer_fail() {
    printf '%s: FAIL: %s\n' "$IT_NAME" "$(mask "$*")" >&2
    DEFERRED+=("$*")
}
# keep NAME: the last command's output into $LOGS/NAME.log (part 5 searches it).
keep() { printf '%s\n' "$OUT" > "$LOGS/$1.log"; }
# cli CONF ACTION ARGS...: `custos audit ACTION` on the store of CONF.
cli() {
    local conf=$1
    shift
    exec_cmd env CUSTOS_CONF="$conf" "$CUSTOS" audit "$@"
}
# conf_with FILE STORE EXTRA: a configuration like lib.sh's for STORE, plus the lines EXTRA.
conf_with() {
    printf '[store]\npath = %s\n[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n%s\n' \
        "$2" "$3" > "$1"
}
# verify_ok CONF WHAT: `custos audit verify` must say OK (exit 0); sets RECORDS.
verify_ok() {
    cli "$1" verify --user aud --pin-file "$SECRETS/aud.pin"
    keep "verify-$2"
    [ "$RC" -eq 0 ] || fail "$2: custos audit verify exit $RC, expected 0"
    expect '^OK: [0-9]+ records, chain and head intact' "$2: verify says OK"
    RECORDS=$(sed -n 's/^OK: \([0-9]*\) records.*/\1/p' <<<"$OUT")
}
# export_to CONF FILE: `custos audit export` into FILE (JSON lines).
export_to() {
    log "\$ custos audit export --user aud > $(basename "$2")"
    env CUSTOS_CONF="$1" timeout "$IT_TIMEOUT" "$CUSTOS" audit export --user aud \
        --pin-file "$SECRETS/aud.pin" > "$2" 2> "$2.err" ||
        fail "custos audit export failed: $(cat "$2.err")"
    log "    | $(wc -l < "$2") JSON lines, $(filesize "$2") bytes"
}
py() { exec_cmd "$PYTHON" "$TEST_PY" "$@"; }
py_ok() {
    py "$@"
    keep "py-$1"
    [ "$RC" -eq 0 ] || fail "audit_trail_test.py $1 failed (exit $RC)"
}

run "$PYTHON" "$TEST_PY" setup "$IT_LABEL"
keep setup
[ -f "$AUDIT_DB" ] || fail "the audit file $AUDIT_DB was not created"

# ---- 1. 100,000 mixed operations from 2 processes ----------------------------------------------
ROUNDS=12400   # per process: 4 data operations a round, plus key, wrap and login work: ~50,200
log "part 1: 2 processes, $ROUNDS rounds each (GCM+AAD, HMAC, KWP wrap/unwrap, key generation," \
    "logins, refusals)"
t1=$SECONDS
wpids=()
for w in 1 2; do
    timeout 180 "$PYTHON" "$TEST_PY" worker "$w" "$ROUNDS" > "$LOGS/worker-$w.log" 2>&1 &
    wpids+=($!)
done
for i in 0 1; do
    wait "${wpids[$i]}"
    rc=$?
    mask_stream < "$LOGS/worker-$((i + 1)).log" | sed 's/^/    | /'
    [ "$rc" -eq 0 ] || fail "worker $((i + 1)) failed (exit $rc)"
done
load_secs=$((SECONDS - t1))
log "part 1: the load took $load_secs s"
verify_ok "$CUSTOS_CONF" after-load
log "part 1: verify OK over $RECORDS records"
export_to "$CUSTOS_CONF" "$LOGS/export-load.jsonl"
py_ok check-counts "$LOGS/export-load.jsonl" "$STATE/worker-1.json" "$STATE/worker-2.json"
expect '^ok   - sum of count over data records == data operations performed' "aggregation lost none"
printf '%s\n' "$OUT" | grep '^# figures' | sed 's/^/    /'

# ---- 2. tampering ------------------------------------------------------------------------------
log "part 2: tampering with copies of the audit file"
LAST=$(sqlite3 "$AUDIT_DB" 'SELECT max(seq) FROM records')
[ "$LAST" -gt 100 ] || fail "only $LAST records in the audit file"
# tamper NAME SQL: a copy of the store (token and audit file) with SQL applied to its audit file by
# the sqlite3 shell; sets TCONF and TDB.
tamper() {
    local d=$IT_TMP/tamper-$1
    mkdir -p "$d/store"
    cp -p "$IT_STORE"/token-0.* "$d/store/"
    conf_with "$d/custos.conf" "$d/store" ""
    TCONF=$d/custos.conf
    TDB=$d/store/token-0.audit.db
    [ -z "$2" ] || run sqlite3 "$TDB" "$2"
}
# broken_at CONF N WHAT [REGEX]: verify must name record N (exit 1).
broken_at() {
    cli "$1" verify --user aud --pin-file "$SECRETS/aud.pin"
    keep "verify-$(tr -c 'a-z0-9\n' - <<<"$3")"
    [ "$RC" -eq 1 ] || fail "$3: custos audit verify exit $RC, expected 1"
    expect "^BROKEN at record $2: ${4:-}" "$3: verify names record $2"
    log "$3: detected: $OUT"
}

# An edited record: an attacker drops the trigger first.
N=$(sqlite3 "$AUDIT_DB" "SELECT seq FROM records WHERE kind = 'data' AND count > 1
                         AND seq > $LAST / 2 ORDER BY seq LIMIT 1")
[ -n "$N" ] || fail "no data record after the middle of the trail"
tamper edit "DROP TRIGGER records_no_update; UPDATE records SET count = count + 1000 WHERE seq = $N"
broken_at "$TCONF" "$N" "edited count of record $N" 'MAC mismatch'
# Covering tracks: a refusal turned into an allowed call.
M=$(sqlite3 "$AUDIT_DB" "SELECT seq FROM records WHERE decision LIKE 'denied%'
                         ORDER BY seq LIMIT 1 OFFSET 3")
[ -n "$M" ] || fail "no denied record in the trail"
tamper edit2 "DROP TRIGGER records_no_update;
              UPDATE records SET rv = 'CKR_OK', decision = 'allowed' WHERE seq = $M"
broken_at "$TCONF" "$M" "denied record $M rewritten as allowed" 'MAC mismatch'
# A deleted record in the middle.
D=$((LAST / 3))
tamper delete "DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq = $D"
broken_at "$TCONF" "$D" "deleted record $D" "record $D is missing"
# A cut tail: the last 5 records, and just the last one (the CLI's own record then takes its seq,
# so the sealed head no longer matches).
K=5
tamper cut5 "DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq > $((LAST - K))"
cli "$TCONF" verify --user aud --pin-file "$SECRETS/aud.pin"; keep verify-cut5
[ "$RC" -eq 1 ] || fail "cut tail of $K: custos audit verify exit $RC, expected 1"
expect "^BROKEN at record [0-9]+: tail cut: the token sealed $LAST records" \
    "cut tail of $K: detected via the sealed head"
log "cut tail of $K records: detected: $OUT"
tamper cut1 "DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq = $LAST"
cli "$TCONF" verify --user aud --pin-file "$SECRETS/aud.pin"; keep verify-cut1
[ "$RC" -eq 1 ] || fail "cut tail of 1: custos audit verify exit $RC, expected 1"
expect "^BROKEN at record $LAST: (head mismatch|tail cut)" "cut tail of 1: detected at record $LAST"
log "cut tail of 1 record: detected: $OUT"
# The triggers: a plain UPDATE or DELETE is refused by SQLite itself, and changes nothing.
tamper plain ""
before=$(sqlite3 "$TDB" "SELECT count, hex(mac) FROM records WHERE seq = 5; SELECT count(*) FROM records")
run_fails sqlite3 "$TDB" "UPDATE records SET count = 99 WHERE seq = 5"
expect 'append-only' "plain UPDATE refused by the trigger"
run_fails sqlite3 "$TDB" "DELETE FROM records WHERE seq = 5"
expect 'append-only' "plain DELETE refused by the trigger"
after=$(sqlite3 "$TDB" "SELECT count, hex(mac) FROM records WHERE seq = 5; SELECT count(*) FROM records")
[ "$before" = "$after" ] || fail "a refused UPDATE/DELETE changed the audit file"
verify_ok "$TCONF" after-refused-edits
log "plain UPDATE and DELETE refused by records_no_update / records_no_delete; the copy verifies OK"
verify_ok "$CUSTOS_CONF" original-after-tampering
log "part 2: the untouched original verifies OK ($RECORDS records)"

# ---- 3. the decrypt-rate alert ---------------------------------------------------------------------
log "part 3: [alerts] decrypt_per_user = 50, window_seconds = 60, action = deny"
ACONF=$IT_TMP/alert.conf
conf_with "$ACONF" "$IT_STORE" \
    "$(printf '[alerts]\ndecrypt_per_user = 50\nwindow_seconds = 60\naction = deny')"
CUSTOS_CONF=$ACONF timeout 90 "$PYTHON" "$TEST_PY" alert > "$LOGS/alert.log" 2>&1 &
apid=$!
for _ in $(seq 600); do
    [ -e "$STATE/alert-ready" ] || ! kill -0 "$apid" 2>/dev/null || { sleep 0.05; continue; }
    break
done
if [ ! -e "$STATE/alert-ready" ]; then
    mask_stream < "$LOGS/alert.log"
    fail "the alert phase did not get ready"
fi
# Only an admin may clear.
cli "$ACONF" clear-alerts --user aud --pin-file "$SECRETS/aud.pin"; keep clear-alerts-aud
[ "$RC" -eq 1 ] || fail "clear-alerts by the audit user: exit $RC, expected 1"
expect 'aud: the user has no role that permits this' "clear-alerts refused for a non-admin"
cli "$ACONF" clear-alerts --user so --pin-file "$SECRETS/so.pin"; keep clear-alerts-so
[ "$RC" -eq 0 ] || fail "clear-alerts by the admin: exit $RC"
expect '^alerts cleared' "clear-alerts by the admin"
touch "$STATE/alert-cleared"
wait "$apid"
rc=$?
mask_stream < "$LOGS/alert.log" | sed 's/^/    | /'
[ "$rc" -eq 0 ] || fail "the alert phase failed (exit $rc)"
export_to "$CUSTOS_CONF" "$LOGS/export-alert.jsonl"
py_ok check-alert "$LOGS/export-alert.jsonl" "$STATE/alert.json"

# ---- 4. bad input and fail-closed -------------------------------------------------------------------
log "part 4: unknown user, wrong PIN, disabled user, refused role operations"
py_ok badinput
# The CLI: a clear error (exit 1) and a record for each.
cli "$CUSTOS_CONF" verify --user nosuchuser --pin-file "$SECRETS/aud.pin"; keep cli-unknown
[ "$RC" -eq 1 ] || fail "verify as an unknown user: exit $RC, expected 1"
expect '^custos audit: nosuchuser: .*\(CKR_[A-Z_]+\)' "verify as an unknown user: clear error"
cli "$CUSTOS_CONF" verify --user aud --pin-file "$SECRETS/wrong.pin"; keep cli-wrong
[ "$RC" -eq 1 ] || fail "verify with a wrong PIN: exit $RC, expected 1"
expect 'aud: wrong PIN \(CKR_PIN_INCORRECT\)' "verify with a wrong PIN: clear error"
cli "$CUSTOS_CONF" verify --user off --pin-file "$SECRETS/off.pin"; keep cli-disabled
[ "$RC" -eq 1 ] || fail "verify as a disabled user: exit $RC, expected 1"
expect 'off: PIN locked or user disabled \(CKR_PIN_LOCKED\)' "verify as a disabled user: clear error"
cli "$CUSTOS_CONF" verify --user dec --pin-file "$SECRETS/dec.pin"; keep cli-role
[ "$RC" -eq 1 ] || fail "verify as a decrypt-only user: exit $RC, expected 1"
expect 'dec: the user has no role that permits this \(CKR_ACTION_PROHIBITED\)' \
    "verify without the audit role"
export_to "$CUSTOS_CONF" "$LOGS/export-bad.jsonl"
py_ok check-badinput "$LOGS/export-bad.jsonl" "$STATE/badinput.json"
# The CLI's refusals are records too.
for want in 'nosuchuser:CKR_' 'aud:CKR_PIN_INCORRECT' 'off:CKR_PIN_LOCKED' 'dec:CKR_ACTION_PROHIBITED'; do
    n=$(grep '"function":"custos audit verify"' "$LOGS/export-bad.jsonl" |
        grep "\"token_user\":\"${want%%:*}\"" | grep "\"rv\":\"${want#*:}" | grep -c '"decision":"denied')
    [ "$n" -ge 1 ] || fail "no denied 'custos audit verify' record for ${want%%:*} with ${want#*:}"
    log "record: custos audit verify by ${want%%:*}: ${want#*:}..., denied ($n)"
done

# The fail-closed checks below make the module reopen its files by forking (it closes them around
# fork()); first, on its own: the parent's first call after a fork is a C_FindObjectsInit.
py fork-find
keep fork-find
if [ "$RC" -ne 0 ]; then
    [ "$RC" -eq 139 ] && RC="$RC: SIGSEGV"
    defer_fail "module bug: the parent process failed (exit $RC) at its first C_FindObjectsInit" \
        "after fork()"
fi

# A process that dies without C_Finalize: the records of the key it made and the key it destroyed
# were committed with those changes (the token's audit outbox, docs/audit.md) and reach the chain
# when the next process opens the token.
py killed
keep killed
[ "$RC" -eq 0 ] || fail "audit_trail_test.py killed failed (exit $RC)"
pending=$(sqlite3 "$IT_STORE/token-0.db" 'SELECT count(*) FROM audit_outbox')
[ "$pending" -ge 2 ] || fail "after the killed process: $pending records in the token's outbox, expected 2 or more"
log "killed process: $pending records wait in the token's outbox"
verify_ok "$CUSTOS_CONF" after-kill
export_to "$CUSTOS_CONF" "$LOGS/export-kill.jsonl"
for want in 'C_GenerateKey:killed-gen' 'C_GenerateKey:killed-del' 'C_DestroyObject:killed-del'; do
    n=$(grep "\"function\":\"${want%%:*}\"" "$LOGS/export-kill.jsonl" |
        grep "\"key_label\":\"${want#*:}\"" | grep -c '"rv":"CKR_OK"')
    [ "$n" -eq 1 ] || fail "killed process: $n CKR_OK records of ${want%%:*} of ${want#*:}, expected 1"
    log "record: ${want%%:*} of ${want#*:} by the killed process, chained once"
done
pending=$(sqlite3 "$IT_STORE/token-0.db" 'SELECT count(*) FROM audit_outbox')
[ "$pending" -eq 0 ] || fail "the token's outbox still holds $pending records after verify"

log "part 4: fail-closed ([audit] required = yes) against going on without it"
for mode in required optional; do
    d=$IT_TMP/fc-$mode
    mkdir -p "$d/store"
    cp -p "$IT_STORE"/token-0.* "$d/store/"
    extra='[audit]'$'\n''required = no'
    [ "$mode" = required ] && extra='[audit]'$'\n''required = yes'
    conf_with "$d/custos.conf" "$d/store" "$extra"
    verify_ok "$d/custos.conf" "fc-$mode-before"
    n_before=$RECORDS
    # Unwritable before the module opens it: a directory where the audit file should be (works as
    # root, where file modes do not).
    mkdir "$d/aside"
    mv "$d/store/token-0.audit.db" "$d/aside/"
    mkdir "$d/store/token-0.audit.db"
    exec_cmd env CUSTOS_CONF="$d/custos.conf" IT_STORE="$d/store" \
        "$PYTHON" "$TEST_PY" failclosed "$mode" open
    keep "fc-$mode-open"
    [ "$RC" -eq 0 ] || fail "fail-closed ($mode, audit file unusable at open) failed"
    rmdir "$d/store/token-0.audit.db"
    mv "$d/aside/token-0.audit.db" "$d/store/"
    rmdir "$d/aside"
    # It breaks while a process is working (the module reconnects after fork(); the test forks).
    exec_cmd env CUSTOS_CONF="$d/custos.conf" IT_STORE="$d/store" \
        "$PYTHON" "$TEST_PY" failclosed "$mode" mid
    keep "fc-$mode-mid"
    [ "$RC" -eq 0 ] ||
        defer_fail "fail-closed ($mode, audit file broke mid-run): $(grep -E '^FAIL' <<<"$OUT" | tr '\n' ' ')"
    verify_ok "$d/custos.conf" "fc-$mode-after"
    [ "$RECORDS" -gt "$n_before" ] || fail "fc-$mode: $RECORDS records after, $n_before before"
    log "fc-$mode: no committed record lost: $n_before records before, $RECORDS after, chain intact"
done

# ---- 5. no secret anywhere ------------------------------------------------------------------------
log "part 5: the syslog mirror ([audit] syslog = yes)"
SCONF=$IT_TMP/syslog.conf
conf_with "$SCONF" "$IT_STORE" \
    "$(printf '[audit]\nsyslog = yes\n[alerts]\ndecrypt_per_user = 10\naction = log')"
SYSLOG_OUT=$LOGS/syslog-capture.log
# No syslog daemon is assumed: in a private mount namespace /dev becomes a tmpfs of links to the
# real /dev plus this test's own /dev/log socket, where the module's mirror sends (docs/audit.md).
if unshare --mount --propagation private true 2>/dev/null; then
    # shellcheck disable=SC2016  # the script's $1, $e... expand in the namespace's bash
    exec_cmd timeout 60 unshare --mount --propagation private bash -c '
        set -e
        mkdir -p "$1/olddev"
        mount --rbind /dev "$1/olddev"
        mount -t tmpfs -o mode=0755,size=1m custos-it-dev /dev
        for e in "$1"/olddev/* "$1"/olddev/.[!.]*; do
            [ -e "$e" ] || [ -L "$e" ] || continue
            ln -s "$e" "/dev/${e##*/}"
        done
        shift
        exec "$@"' _ "$IT_TMP" env CUSTOS_CONF="$SCONF" "$PYTHON" "$TEST_PY" syslog-run "$SYSLOG_OUT"
    keep syslog-run
    [ "$RC" -eq 0 ] || fail "the syslog phase failed (exit $RC)"
    export_to "$CUSTOS_CONF" "$LOGS/export-syslog.jsonl"
    py_ok check-syslog "$SYSLOG_OUT" "$LOGS/export-syslog.jsonl"
else
    log "SKIP (syslog mirror only): cannot make a private mount namespace here (unshare --mount" \
        "needs root or CAP_SYS_ADMIN), so /dev/log cannot be captured"
fi

log "part 5: searching for the test's keys, PINs, IVs and plaintexts"
verify_ok "$CUSTOS_CONF" final
export_to "$CUSTOS_CONF" "$LOGS/export-final.jsonl"
files=()
for f in "$AUDIT_DB" "$AUDIT_DB-wal" "$STATE"/snapshot-audit.db* "$IT_TMP"/fc-*/store/token-0.audit.db \
    "$LOGS"/*; do
    [ -f "$f" ] && files+=("$f")
done
# Under `make check` the harness's own log of this test so far.
HLOG=$CUSTOS_BUILDDIR/tests/integration/audit_trail.log
[ -f "$HLOG" ] && [ "$HLOG" -nt "$CUSTOS_CONF" ] && files+=("$HLOG")
[ -f "$STATE/snapshot-audit.db-wal" ] ||
    fail "no -wal snapshot of the audit file was taken while a writer had it open"
py_ok search "$STATE/search.json" "${files[@]}"
printf '%s\n' "$OUT" | grep '^# searched' | sed 's/^/    /'
py_ok control "$LOGS/export-final.jsonl"
[ "${#DEFERRED[@]}" -eq 0 ] || fail "${#DEFERRED[@]} failure(s) above: $(printf '%s; ' "${DEFERRED[@]}")"
log "all checks passed; records in the trail: $RECORDS; load $load_secs s;" \
    "total run time $((SECONDS - T0)) s"
