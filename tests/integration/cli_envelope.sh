#!/bin/bash
# tests/integration/cli_envelope.sh: the envelope and key commands of `custos` (tools/cmd_envelope.c,
# tools/cmd_key.c) end to end on a throwaway token: a key family created, a few MiB sealed (binary and
# text), three rotations after which the first envelope still opens byte-identical, rewrap to the
# newest version, every kind of bad input refused with one line and no output file, DEK files,
# pkcs11: URIs, roles, suspend/resume, and a round trip with SoftHSM2 as the token.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need pkcs11-tool timeout od cmp head tail
[ "$IT_REFERENCE" -eq 0 ] || skip "key families are Custos's (the SoftHSM2 round trip is part of this test)"

CUSTOS=$CUSTOS_BUILDDIR/tools/custos
[ -x "$CUSTOS" ] || fail "$CUSTOS not built"
LABEL="it-env-$$"
W=$IT_TMP/work
mkdir -p "$W"
ALL=$W/all-output.txt   # every command's output, searched for PINs at the end

pinfile() { secret "$2"; printf '%s\n' "$2" > "$W/$1.pin"; }
pinfile so "$SO_PIN"
pinfile user "$USER_PIN"
READER_PIN=$(gen_pin); pinfile reader "$READER_PIN"

keep() { printf '%s\n' "$OUT" >> "$ALL"; }
ok() { run "$@"; keep; }
# bad CMD...: must fail with exit 1 and exactly one line on stderr.
bad() {
    exec_cmd "$@"
    keep
    [ "$RC" -eq 1 ] || fail "expected exit 1, got $RC from: $(printf '%q ' "$@")"
    [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "expected one line of error, got: $OUT"
}
# to_file FILE CMD...: standard output into FILE, standard error into $OUT, exit code in $RC.
to_file() {
    local f=$1
    shift
    log "\$ $(printf '%q ' "$@") > $(basename "$f")"
    OUT=$(timeout "$IT_TIMEOUT" "$@" 2>&1 > "$f")
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT" | mask_stream | sed 's/^/    | /'
    keep
    [ "$RC" -ne 124 ] || fail "timed out: $(printf '%q ' "$@")"
}
no_file() { [ ! -e "$1" ] || fail "$2: $1 exists"; }
no_temp() {
    local f
    for f in "$1"/.*.tmp-*; do
        [ -e "$f" ] && fail "a temporary file was left in $1"
    done
    return 0
}
# set_bytes FILE OFFSET HEX...: overwrite bytes in place.
set_bytes() {
    local f=$1 off=$2 b
    shift 2
    for b in "$@"; do
        # shellcheck disable=SC2059
        printf "\\$(printf '%03o' $((16#$b)))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
        off=$((off + 1))
    done
}
json_field() { printf '%s\n' "$OUT" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# ---- help ---------------------------------------------------------------------------------------------
ok "$CUSTOS" --help
for c in key encrypt decrypt rewrap inspect dek; do expect "^  $c " "custos --help lists $c"; done
ok "$CUSTOS" encrypt --help
expect -- '--context C' "encrypt --help documents --context"
ok "$CUSTOS" help key
expect 'rotate --due' "key --help documents rotate --due"
ok "$CUSTOS" rewrap --help
expect 'already' "rewrap --help documents the summary"

init_token "$LABEL"
T=(--module "$CUSTOS_MODULE" --token "$LABEL")
K=("$CUSTOS" key "${T[@]}" --pin-file "$W/so.pin")
E=(--module "$CUSTOS_MODULE" --token "$LABEL" --pin-file "$W/user.pin")

# ---- usage errors: exit 2 --------------------------------------------------------------------------------
exec_cmd "$CUSTOS" encrypt "${E[@]}" --context x; [ "$RC" -eq 2 ] || fail "encrypt without --key: exit $RC"
expect 'give --key' "encrypt without a key"
exec_cmd "$CUSTOS" key "${T[@]}" create 'a:b'; [ "$RC" -eq 2 ] || fail "bad family name: exit $RC"
expect "a family name has no ':'" "a family name with ':'"
exec_cmd "$CUSTOS" key "${T[@]}" create fam --period 9x; [ "$RC" -eq 2 ] || fail "bad period: exit $RC"
expect -- '--period: not a period' "a bad period"
exec_cmd "$CUSTOS" decrypt "${E[@]}" --key fam; [ "$RC" -eq 2 ] || fail "decrypt --key: exit $RC"
exec_cmd "$CUSTOS" rewrap "${E[@]}" a b; [ "$RC" -eq 2 ] || fail "rewrap of two without --in-place: exit $RC"
expect 'give --in-place or --out-dir' "rewrap of several needs a destination"

# ---- a family, a few MiB sealed as binary and as text -------------------------------------------------
ok "${K[@]}" create tenant42 --period 90d
expect '^created tenant42: version 1, aes-256, rotation every 90d' "key create"
bad "${K[@]}" create tenant42
expect 'exists already' "a family is created once"
PT=$W/plain.bin
head -c $((3 * 1024 * 1024 + 4321)) /dev/urandom > "$PT"
CTX="tenant=42,table=users,column=ssn"
ok "$CUSTOS" encrypt "${E[@]}" --key tenant42 --context "$CTX" -o "$W/e1.bin" "$PT"
ok "$CUSTOS" encrypt "${E[@]}" --key tenant42 --context "$CTX" --text -o "$W/e1.txt" "$PT"
[ "$(head -c 5 "$W/e1.txt")" = "cus1:" ] || fail "--text does not write the cus1: form"
no_temp "$W"
ok "$CUSTOS" inspect "$W/e1.bin"
expect '^family: +tenant42$' "inspect: family"
expect '^kek version: +1$' "inspect: version 1"
expect "^context: +$CTX\$" "inspect: context"
expect 'CKM_AES_KEY_WRAP_KWP' "inspect: wrap mechanism"
expect 'AES-256-GCM' "inspect: algorithm"
expect "$(filesize "$PT") bytes of plaintext" "inspect: plaintext size"
NONCE=$(od -An -tx1 -j 8 -N 12 "$W/e1.bin" | tr -d ' \n')
expect_not "$NONCE" "inspect never shows the nonce"
ok "$CUSTOS" inspect --json "$W/e1.txt"
expect '"kind":"envelope","form":"text"' "inspect --json of the text form"
expect '"kek_version":1,' "inspect --json: version"

# ---- three rotations; the first envelopes still open, byte-identical ------------------------------------
for v in 2 3 4; do
    ok "${K[@]}" rotate tenant42
    expect "^tenant42: now version $v\$" "rotation to version $v"
done
ok "${K[@]}" list
expect '^tenant42 +1 +decrypt-only +aes ' "version 1 is decrypt-only"
expect '^tenant42 +4 +active +aes .* 90d ' "version 4 is active with the period"
ok "${K[@]}" list --json
expect '"family":"tenant42","current_version":4,"rotation_period":7776000' "list --json"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/d1.bin" "$W/e1.bin"
cmp -s "$PT" "$W/d1.bin" || fail "the first envelope does not decrypt byte-identical after 3 rotations"
to_file "$W/d1t.bin" "$CUSTOS" decrypt "${E[@]}" --context "$CTX" "$W/e1.txt"
[ "$RC" -eq 0 ] || fail "decrypt of the text form failed: $OUT"
cmp -s "$PT" "$W/d1t.bin" || fail "the text envelope does not decrypt byte-identical"

# ---- rewrap moves them to version 4, the body untouched -----------------------------------------------
cp "$W/e1.bin" "$W/e1.orig"
HL=$(od -An -tu1 -j 20 -N 2 "$W/e1.bin" | awk '{ print $1 * 256 + $2 }')   # ctx_len
ok "$CUSTOS" rewrap "${E[@]}" --in-place "$W/e1.bin" "$W/e1.txt"
expect '^2 rewrapped, 0 already current, 0 failed$' "rewrap summary"
ok "$CUSTOS" inspect --json "$W/e1.bin"
expect '"kek_version":4,' "the binary envelope is under version 4"
HDR=$(json_field header_len)
cmp -s <(tail -c +$((HDR + 1)) "$W/e1.bin") <(tail -c +$((HDR + 1)) "$W/e1.orig") ||
    fail "rewrap changed the body"
cmp -s <(head -c $((22 + HL)) "$W/e1.bin") <(head -c $((22 + HL)) "$W/e1.orig") ||
    fail "rewrap changed the data header"
ok "$CUSTOS" inspect "$W/e1.txt"
expect '^kek version: +4$' "the text envelope is under version 4"
ok "$CUSTOS" rewrap "${E[@]}" --in-place "$W/e1.bin" "$W/e1.txt"
expect '^0 rewrapped, 2 already current, 0 failed$' "a second rewrap has nothing to do"
ok "$CUSTOS" decrypt "${E[@]}" --context "$CTX" -o "$W/d2.bin" "$W/e1.bin"
cmp -s "$PT" "$W/d2.bin" || fail "the rewrapped envelope does not decrypt byte-identical"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/d2t.bin" "$W/e1.txt"
cmp -s "$PT" "$W/d2t.bin" || fail "the rewrapped text envelope does not decrypt byte-identical"
ok "$CUSTOS" rewrap "${E[@]}" "$W/e1.orig" -o "$W/e1.new"
expect '^1 rewrapped, 0 already current, 0 failed$' "rewrap -o"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/d3.bin" "$W/e1.new"
cmp -s "$PT" "$W/d3.bin" || fail "rewrap -o output does not decrypt"

# ---- a flipped byte, a wrong context: a clear line, no output file -----------------------------------
SIZE=$(filesize "$W/e1.bin")
flip_byte "$W/e1.bin" 200000 "$W/flip.bin"
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/flip.out" "$W/flip.bin"
expect 'envelope data failed authentication: chunk 3 ' "a flipped body byte names its chunk"
no_file "$W/flip.out" "a failed decrypt wrote its output file"
no_temp "$W"
# On standard output only the chunks before the damaged one are released.
to_file "$W/flip.stdout" "$CUSTOS" decrypt "${E[@]}" "$W/flip.bin"
[ "$RC" -eq 1 ] || fail "decrypt of a flipped envelope to stdout: exit $RC"
[ "$(filesize "$W/flip.stdout")" -eq $((3 * 65536)) ] || fail "unverified data reached standard output"
cmp -s "$W/flip.stdout" <(head -c $((3 * 65536)) "$PT") || fail "released chunks differ"
flip_byte "$W/e1.bin" 30 "$W/fliph.bin"   # a context byte: the header digest changes
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/fliph.out" "$W/fliph.bin"
expect 'failed authentication' "a flipped header byte"
no_file "$W/fliph.out" "a failed decrypt wrote its output file"
bad "$CUSTOS" decrypt "${E[@]}" --context "tenant=43,table=users,column=ssn" -o "$W/ctx.out" "$W/e1.bin"
expect 'context does not match' "a wrong context"
no_file "$W/ctx.out" "a wrong context wrote its output file"

# ---- garbage, truncated, oversized, unknown versions --------------------------------------------------
head -c 5000 /dev/urandom > "$W/garbage.bin"
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/g.out" "$W/garbage.bin"
expect 'not a Custos envelope' "garbage"
no_file "$W/g.out" "garbage wrote an output file"
bad "$CUSTOS" inspect "$W/garbage.bin"
expect 'not a Custos envelope' "inspect of garbage"
printf 'cus1:this is not base64!' > "$W/garbage.txt"
bad "$CUSTOS" decrypt "${E[@]}" "$W/garbage.txt"
expect 'malformed text form' "garbage text"
head -c 60 "$W/e1.bin" > "$W/short.bin"
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/s.out" "$W/short.bin"
expect 'truncated' "a header cut short"
head -c $((SIZE - 100)) "$W/e1.bin" > "$W/trunc.bin"
to_file "$W/trunc.stdout" "$CUSTOS" decrypt "${E[@]}" "$W/trunc.bin"
[ "$RC" -eq 1 ] || fail "a truncated envelope: exit $RC"
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "a truncated envelope: more than one line"
expect 'failed authentication|truncated' "a stream cut short ends with an error"
[ "$(filesize "$W/trunc.stdout")" -lt "$(filesize "$PT")" ] || fail "a cut stream released everything"
head -c $((HDR + 2 * 65552)) "$W/e1.bin" > "$W/trunc2.bin"   # cut at a chunk boundary
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/t2.out" "$W/trunc2.bin"
expect 'chunk 1 ' "a stream cut at a chunk boundary fails at its last chunk"
no_file "$W/t2.out" "a truncated envelope wrote its output file"
cp "$W/e1.bin" "$W/bigctx.bin"; set_bytes "$W/bigctx.bin" 20 ff ff   # ctx_len 65535 > 1024
bad "$CUSTOS" decrypt "${E[@]}" "$W/bigctx.bin"
expect 'malformed envelope field' "an oversized context length"
{ printf 'cus1:'; head -c $((65 * 1024 * 1024)) /dev/zero | tr '\0' 'A'; } > "$W/huge.txt"
bad "$CUSTOS" decrypt "${E[@]}" "$W/huge.txt"
expect 'larger than 64 MiB' "an oversized text envelope"
cp "$W/e1.bin" "$W/v2.bin"; set_bytes "$W/v2.bin" 4 02
bad "$CUSTOS" decrypt "${E[@]}" "$W/v2.bin"
expect 'unsupported envelope format version' "an unknown format version"
bad "$CUSTOS" inspect "$W/v2.bin"
expect 'unsupported envelope format version' "inspect of an unknown format version"
KV=$((22 + HL + 2 + 8))   # kek_version of family "tenant42"
cp "$W/e1.bin" "$W/kv.bin"; set_bytes "$W/kv.bin" "$KV" 00 00 00 63
bad "$CUSTOS" decrypt "${E[@]}" "$W/kv.bin"
expect 'key not found: family "tenant42" version 99' "an unknown key version"
no_temp "$W"

# ---- roles, suspend and resume, a destroyed key -------------------------------------------------------
ok "$CUSTOS" user "${T[@]}" --pin-file "$W/so.pin" add reader --roles decrypt --new-pin-file "$W/reader.pin"
R=(--module "$CUSTOS_MODULE" --token "$LABEL" --pin-file "$W/reader.pin")
ok "$CUSTOS" decrypt "${R[@]}" -o "$W/r.bin" "$W/e1.bin"
cmp -s "$PT" "$W/r.bin" || fail "a decrypt-only user cannot decrypt"
bad "$CUSTOS" encrypt "${R[@]}" --key tenant42 -o "$W/r.env" "$PT"
expect 'lacks a role' "a decrypt-only user cannot encrypt"
ok "${K[@]}" suspend tenant42
expect '^tenant42:v4: suspended$' "suspend every version"
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/sus.out" "$W/e1.bin"
expect 'CKR_KEY_FUNCTION_NOT_PERMITTED' "a suspended family does not decrypt"
ok "${K[@]}" resume tenant42
expect '^tenant42:v4: active$' "resume makes the newest version active"
expect '^tenant42:v1: decrypt-only$' "resume makes older versions decrypt-only"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/res.out" "$W/e1.bin"
bad "${K[@]}" suspend tenant42:v9
expect 'family tenant42 has no version 9' "suspending a version that does not exist"
ok "${K[@]}" create doomed
ok "$CUSTOS" encrypt "${E[@]}" --key doomed -o "$W/doomed.env" "$W/garbage.bin"
ok "${P11TOOL[@]}" --token-label "$LABEL" --login --login-type so --so-pin "$SO_PIN" \
    --delete-object --type secrkey --label doomed
bad "$CUSTOS" decrypt "${E[@]}" -o "$W/doomed.out" "$W/doomed.env"
expect 'key not found: family "doomed" version 1 \(destroyed' "a destroyed key"
no_file "$W/doomed.out" "a destroyed key wrote an output file"
mkdir -p "$W/outd"
exec_cmd "$CUSTOS" rewrap "${E[@]}" --out-dir "$W/outd" "$W/e1.bin" "$W/doomed.env"
keep
[ "$RC" -eq 1 ] || fail "rewrap with a failure: exit $RC"
expect 'doomed.env: key not found' "rewrap names the envelope whose key is gone"
expect '^0 rewrapped, 1 already current, 1 failed$' "rewrap summary with a failure"
cmp -s "$W/e1.bin" "$W/outd/e1.bin" || fail "rewrap --out-dir of a current envelope is not a copy"
no_file "$W/outd/doomed.env" "a failed rewrap wrote its output"
no_temp "$W/outd"

# ---- DEK files -----------------------------------------------------------------------------------------
ok "$CUSTOS" dek "${E[@]}" new tenant42 -o "$W/ds.dek"
ok "$CUSTOS" inspect "$W/ds.dek"
expect '^kind: +dek-file' "inspect of a DEK file"
ok "$CUSTOS" dek "${E[@]}" new tenant42 --text -o "$W/ds.dektxt"
[ "$(head -c 6 "$W/ds.dektxt")" = "cusk1:" ] || fail "dek new --text"
for d in ds.dek ds.dektxt; do
    ok "$CUSTOS" encrypt "${E[@]}" --dek "$W/$d" --context "$CTX" -o "$W/$d.env1" "$PT"
    ok "$CUSTOS" encrypt "${E[@]}" --dek "$W/$d" --key tenant42 -o "$W/$d.env2" "$W/garbage.bin"
    ok "$CUSTOS" decrypt "${E[@]}" --context "$CTX" -o "$W/$d.pt1" "$W/$d.env1"
    cmp -s "$PT" "$W/$d.pt1" || fail "encrypt --dek $d does not round-trip"
    ok "$CUSTOS" decrypt "${E[@]}" -o "$W/$d.pt2" "$W/$d.env2"
    cmp -s "$W/garbage.bin" "$W/$d.pt2" || fail "a second envelope under $d does not round-trip"
done
bad "$CUSTOS" decrypt "${E[@]}" "$W/ds.dek"
expect 'a DEK file, not an envelope' "decrypt of a DEK file"

# ---- XChaCha20-Poly1305 (--aead) -------------------------------------------------------------------------
ok "$CUSTOS" encrypt "${E[@]}" --key tenant42 --aead xchacha20-poly1305 --context "$CTX" -o "$W/xc.env" "$PT"
ok "$CUSTOS" inspect "$W/xc.env"
expect '^algorithm: +XChaCha20-Poly1305$' "--aead xchacha20-poly1305 seals with XChaCha20-Poly1305"
ok "$CUSTOS" decrypt "${E[@]}" --context "$CTX" -o "$W/xc.pt" "$W/xc.env"
cmp -s "$PT" "$W/xc.pt" || fail "an XChaCha20-Poly1305 envelope does not round-trip"
ok "$CUSTOS" dek "${E[@]}" new tenant42 --aead XChaCha20-Poly1305 -o "$W/xc.dek"
ok "$CUSTOS" inspect "$W/xc.dek"
expect '^algorithm: +XChaCha20-Poly1305$' "dek new --aead makes an XChaCha20-Poly1305 DEK file"
ok "$CUSTOS" encrypt "${E[@]}" --dek "$W/xc.dek" -o "$W/xcd.env" "$W/garbage.bin"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/xcd.pt" "$W/xcd.env"
cmp -s "$W/garbage.bin" "$W/xcd.pt" || fail "an XChaCha20-Poly1305 DEK file does not round-trip"
bad "$CUSTOS" encrypt "${E[@]}" --dek "$W/xc.dek" --aead aes-256-gcm -o "$W/xcbad.env" "$W/garbage.bin"
no_file "$W/xcbad.env" "a DEK file and --aead that disagree"
exec_cmd "$CUSTOS" encrypt "${E[@]}" --key tenant42 --aead chacha20 -o "$W/xcbad.env" "$W/garbage.bin"
[ "$RC" -eq 2 ] || fail "an unknown --aead: exit $RC"
expect "--aead: unknown algorithm 'chacha20'" "an unknown --aead"
exec_cmd "$CUSTOS" decrypt "${E[@]}" --aead aes-256-gcm -o "$W/xcbad.pt" "$W/xc.env"
[ "$RC" -eq 2 ] || fail "decrypt --aead: exit $RC"
expect '--aead does not apply here' "decrypt takes no --aead"
ok "${K[@]}" rotate tenant42
ok "$CUSTOS" rewrap "${E[@]}" --in-place "$W/ds.dek" "$W/ds.dektxt"
expect '^2 rewrapped' "DEK files are rewrapped"
ok "$CUSTOS" inspect --json "$W/ds.dek"
expect '"kind":"dek-file".*"kek_version":5,' "the DEK file is under version 5"
ok "$CUSTOS" encrypt "${E[@]}" --dek "$W/ds.dek" -o "$W/ds5.env" "$W/garbage.bin"
ok "$CUSTOS" decrypt "${E[@]}" -o "$W/ds5.pt" "$W/ds5.env"
cmp -s "$W/garbage.bin" "$W/ds5.pt" || fail "a rewrapped DEK file does not round-trip"
ok "${K[@]}" rotate --due
expect '^0 families rotated$' "nothing is due"
ok "${K[@]}" create short --period 1 --users user
expect '^created short: version 1, aes-256, rotation every 1s, users user$' "create with --period and --users"
sleep 2
ok "${K[@]}" rotate --due
expect '^short: now version 2$' "rotate --due names the rotated family"
expect '^1 family rotated$' "rotate --due counts"
ok "${K[@]}" list
expect '^short +2 +active +aes .* 1s +[0-9]+ +user$' "list shows the period and the users"
ok "${K[@]}" create c20 --type chacha20
bad "$CUSTOS" encrypt "${E[@]}" --key c20 -o "$W/c20.env" "$W/garbage.bin"
expect 'need an AES KEK' "a chacha20 family cannot wrap envelope keys"

# ---- pkcs11: URIs (RFC 7512) ----------------------------------------------------------------------------
ok "$CUSTOS" encrypt --module "$CUSTOS_MODULE" --pin-file "$W/user.pin" \
    --key "pkcs11:token=$LABEL;object=tenant42;type=secret-key" -o "$W/uri.env" "$W/garbage.bin"
ok "$CUSTOS" decrypt --module "$CUSTOS_MODULE" --token "pkcs11:token=$LABEL?pin-source=file:$W/user.pin" \
    -o "$W/uri.pt" "$W/uri.env"
cmp -s "$W/garbage.bin" "$W/uri.pt" || fail "pkcs11: URI round trip"
ok "$CUSTOS" encrypt --module "$CUSTOS_MODULE" --pin-file "$W/user.pin" --token "pkcs11:token=$LABEL" \
    --key "pkcs11:id=tenant42%3Av5" -o "$W/uri5.env" "$W/garbage.bin"
ok "$CUSTOS" inspect "$W/uri5.env"
expect '^kek version: +5$' "a key named by CKA_ID in a URI"
ok "$CUSTOS" key --module "$CUSTOS_MODULE" --token "pkcs11:token=$LABEL" --pin-file "$W/so.pin" list
expect '^tenant42 +5 +active' "key list on a token named by URI"
bad "$CUSTOS" decrypt --module "$CUSTOS_MODULE" --token "pkcs11:token=no-such-token" --pin-file "$W/user.pin" \
    "$W/uri.env"
expect 'no initialised token matches' "a URI naming no token"
bad "$CUSTOS" decrypt --module "$CUSTOS_MODULE" --token "pkcs11:token=$LABEL;bogus=1" "$W/uri.env"
expect 'attribute this tool does not know' "an unknown URI attribute"
bad "$CUSTOS" decrypt --module "$CUSTOS_MODULE" --token "pkcs11:token=$LABEL?pin-value=1234" "$W/uri.env"
expect 'pin-value would put the PIN on the command line' "pin-value is refused"

# ---- SoftHSM2 as the token: the library speaks plain PKCS#11 ------------------------------------------
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
if [ -f "$SOFTHSM" ] && command -v softhsm2-util >/dev/null 2>&1; then
    mkdir -p "$IT_TMP/softhsm"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$IT_TMP/softhsm" > "$IT_TMP/softhsm2.conf"
    export SOFTHSM2_CONF=$IT_TMP/softhsm2.conf
    ok softhsm2-util --init-token --free --label soft --so-pin "$SO_PIN" --pin "$USER_PIN"
    ok pkcs11-tool --module "$SOFTHSM" --token-label soft --login --pin "$USER_PIN" --keygen \
        --key-type AES:32 --label kek --usage-wrap --usage-decrypt --sensitive
    S=(--module "$SOFTHSM" --token soft --pin-file "$W/user.pin")
    ok "$CUSTOS" encrypt "${S[@]}" --key kek --context "$CTX" -o "$W/soft.env" "$PT"
    ok "$CUSTOS" inspect "$W/soft.env"
    expect '^family: +kek$' "a SoftHSM2 envelope names the key label"
    expect 'kek version: +0 ' "a plain KEK has no version"
    ok "$CUSTOS" decrypt "${S[@]}" --context "$CTX" -o "$W/soft.pt" "$W/soft.env"
    cmp -s "$PT" "$W/soft.pt" || fail "the SoftHSM2 round trip is not byte-identical"
    ok "$CUSTOS" encrypt --module "$SOFTHSM" --pin-file "$W/user.pin" --text \
        --key "pkcs11:token=soft;object=kek" -o "$W/soft.txt" "$W/garbage.bin"
    ok "$CUSTOS" decrypt --module "$SOFTHSM" --token "pkcs11:token=soft" --pin-file "$W/user.pin" \
        -o "$W/soft2.pt" "$W/soft.txt"
    cmp -s "$W/garbage.bin" "$W/soft2.pt" || fail "the SoftHSM2 URI round trip"
    flip_byte "$W/soft.env" 100000 "$W/soft.flip"
    bad "$CUSTOS" decrypt "${S[@]}" -o "$W/soft.flip.out" "$W/soft.flip"
    expect 'failed authentication' "SoftHSM2: a flipped byte"
    no_file "$W/soft.flip.out" "SoftHSM2: a failed decrypt wrote its output"
    bad "$CUSTOS" key "${S[@]}" list
    expect 'not the Custos module' "key families need Custos"
    bad "$CUSTOS" decrypt "${E[@]}" -o "$W/x.out" "$W/soft.env"
    expect 'key not found: family "kek" version 0' "a SoftHSM2 envelope on the Custos token"
else
    log "SoftHSM2 is not installed: its round trip is skipped"
fi

# ---- no PIN anywhere in the output -----------------------------------------------------------------------
for p in "$SO_PIN" "$USER_PIN" "$READER_PIN"; do
    if grep -qF -- "$p" "$ALL"; then fail "a PIN appears in the output"; fi
done
log "no PIN in $(wc -l < "$ALL") lines of output"
