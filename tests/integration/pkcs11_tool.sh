#!/bin/bash
# tests/integration/pkcs11_tool.sh: OpenSC's pkcs11-tool (0.23, Debian 12) drives the built module:
# info, slots and mechanisms, token and PIN set-up, AES key generation, listing, key wrap and unwrap
# (RFC 3394 and RFC 5649), wrong PIN, unreadable sensitive keys, deletion, random and digests.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need pkcs11-tool sha256sum sha512sum od timeout

LABEL="it-p11tool-$$"
W=$IT_TMP/work
mkdir -p "$W"

# ---- library, slots, mechanisms ---------------------------------------------------------------
run "${P11TOOL[@]}" --show-info
expect '^Cryptoki version [0-9]+\.[0-9]+' "--show-info prints the Cryptoki version"
expect '^Library ' "--show-info prints the library description"

run "${P11TOOL[@]}" --list-slots
expect '^Slot [0-9]+ \(0x[0-9a-f]+\)' "--list-slots lists a slot"
expect 'token state:[[:space:]]*uninitialized' "--list-slots shows the uninitialised token"

run "${P11TOOL[@]}" --list-mechanisms
for m in 'AES-KEY-GEN' 'AES-GCM' 'AES-KEY-WRAP' 'mechtype-0x210A' 'SHA256' 'SHA512' 'SHA256-HMAC' \
    'GENERIC-SECRET-KEY-GEN'; do
    expect "^  ${m}[,[:space:]]" "--list-mechanisms lists $m"
done
if [ "$IT_REFERENCE" -eq 0 ]; then
    expect '^  mechtype-0x210B[,[:space:]]' "--list-mechanisms lists CKM_AES_KEY_WRAP_KWP"
    # Legacy unauthenticated modes are off unless [policy] legacy_modes = yes.
    for m in 'AES-ECB' 'AES-CBC' 'AES-CBC-PAD' 'AES-CTR'; do
        expect_not "^  ${m}[,[:space:]]" "--list-mechanisms hides legacy $m by default"
    done
fi

# ---- token and PINs ----------------------------------------------------------------------------
init_token "$LABEL"
T=("${P11TOOL[@]}" --token-label "$LABEL")
run "${P11TOOL[@]}" --list-slots
expect "token label[[:space:]]*: $LABEL\$" "--list-slots shows the new token label"
expect 'token flags.*token initialized' "the new token is flagged initialised"
expect 'token flags.*PIN initialized' "the user PIN is flagged initialised"
if [ "$IT_REFERENCE" -eq 0 ]; then
    # Custos keeps one uninitialised token available at all times.
    expect 'token state:[[:space:]]*uninitialized' "a new uninitialised token appears"
fi

run "${T[@]}" --login --pin "$USER_PIN" --test
expect 'No errors' "--login --test"

run_fails "${T[@]}" --login --pin "$WRONG_PIN" --list-objects
expect 'CKR_PIN_INCORRECT' "login with a wrong PIN"

# ---- keys --------------------------------------------------------------------------------------
# pkcs11-tool 0.23 asks for CKA_ENCRYPT/CKA_DECRYPT by default and for CKA_WRAP/CKA_UNWRAP (only)
# with --usage-wrap; the token's defaults for usage flags are false.
run "${T[@]}" --login --pin "$USER_PIN" --keygen --key-type AES:32 --label kek --id 01 \
    --private --sensitive --usage-wrap
expect 'Secret Key Object; AES length 32' "KEK generated as a 32-byte AES key"
expect 'Usage:[[:space:]]+wrap, unwrap$' "KEK can wrap and unwrap, nothing else"
expect 'Access:.*never extractable' "KEK is never extractable"
expect_not 'VALUE:' "the KEK's value is not shown"

run "${T[@]}" --login --pin "$USER_PIN" --keygen --key-type AES:32 --label dek --id 02 \
    --extractable --sensitive --private
expect 'Secret Key Object; AES length 32' "DEK generated"
expect 'Access:.*sensitive.*extractable' "DEK is sensitive and extractable"
expect_not 'Access:.*never extractable' "DEK is extractable"
expect_not 'VALUE:' "the DEK's value is not shown"

run "${T[@]}" --login --pin "$USER_PIN" --list-objects --type secrkey
expect 'label:[[:space:]]+kek$' "-O lists the KEK"
expect 'label:[[:space:]]+dek$' "-O lists the DEK"
expect_not 'VALUE:' "-O shows no key value"
[ "$(printf '%s\n' "$OUT" | grep -c 'Secret Key Object')" -eq 2 ] ||
    fail "-O: expected exactly 2 secret keys on the new token"

run "${T[@]}" --list-objects --type secrkey
expect_not 'label:[[:space:]]+(kek|dek)$' "private keys are invisible before login"

# ---- wrap and unwrap ---------------------------------------------------------------------------
# wrap_as MECH FILE: wrap the DEK (id 02) under the KEK (id 01).
wrap_as() {
    rm -f "$2"
    run "${T[@]}" --login --pin "$USER_PIN" --wrap -m "$1" --id 01 --application-id "${3:-02}" -o "$2"
    expect 'Key wrapped' "--wrap -m $1"
    [ -s "$2" ] || fail "--wrap -m $1 wrote no output file"
}
wrap_as AES-KEY-WRAP "$W/kw.bin"
[ "$(filesize "$W/kw.bin")" -eq 40 ] ||
    fail "AES-KEY-WRAP of a 32-byte key: expected 40 bytes, got $(filesize "$W/kw.bin")"
wrap_as 0x210A "$W/pad.bin"
[ "$(filesize "$W/pad.bin")" -eq 40 ] ||
    fail "0x210A (RFC 5649) of a 32-byte key: expected 40 bytes, got $(filesize "$W/pad.bin")"
cmp -s "$W/kw.bin" "$W/pad.bin" &&
    fail "RFC 3394 and RFC 5649 wraps are identical (different integrity values expected)"
if [ "$IT_REFERENCE" -eq 0 ]; then
    # CKM_AES_KEY_WRAP_KWP and the deprecated CKM_AES_KEY_WRAP_PAD are both RFC 5649: same bytes.
    wrap_as 0x210B "$W/kwp.bin"
    cmp -s "$W/pad.bin" "$W/kwp.bin" || fail "0x210B and 0x210A wraps of the same key differ"
fi

# unwrap_as MECH FILE ID LABEL: unwrap FILE under the KEK as a new token key, then wrap the new key
# again and compare: the same bytes prove the unwrapped key is the DEK (both wraps are deterministic).
unwrap_as() {
    run "${T[@]}" --login --pin "$USER_PIN" --unwrap -m "$1" --id 01 -i "$2" --key-type AES: \
        --application-id "$3" --application-label "$4" --extractable --sensitive --private
    expect 'Key unwrapped' "--unwrap -m $1"
    expect_not 'VALUE:' "the unwrapped key's value is not shown"
    run "${T[@]}" --login --pin "$USER_PIN" --list-objects --type secrkey
    expect "label:[[:space:]]+$4\$" "the key unwrapped with $1 appears in -O"
    wrap_as "$1" "$W/rewrap.bin" "$3"
    cmp -s "$2" "$W/rewrap.bin" || fail "key unwrapped with $1 wraps to different bytes than the DEK"
}
unwrap_as AES-KEY-WRAP "$W/kw.bin" 11 dek-from-kw
unwrap_as 0x210A "$W/pad.bin" 12 dek-from-pad

# A damaged wrapped key must be refused, and no object created.
flip_byte "$W/kw.bin" 20 "$W/bad.bin"
run_fails "${T[@]}" --login --pin "$USER_PIN" --unwrap -m AES-KEY-WRAP --id 01 -i "$W/bad.bin" \
    --key-type AES: --application-id 13 --application-label dek-bad --extractable --sensitive --private
expect 'C_UnwrapKey' "a damaged wrapped key fails in C_UnwrapKey"
if [ "$IT_REFERENCE" -eq 0 ]; then
    expect 'CKR_WRAPPED_KEY_INVALID' "a damaged wrapped key is CKR_WRAPPED_KEY_INVALID"
fi
run "${T[@]}" --login --pin "$USER_PIN" --list-objects --type secrkey
expect_not 'label:[[:space:]]+dek-bad$' "a failed unwrap creates no object"

# The KEK is non-extractable: it cannot be wrapped out, even under another wrapping key.
run "${T[@]}" --login --pin "$USER_PIN" --keygen --key-type AES:32 --label kek2 --id 03 \
    --private --sensitive --usage-wrap
run_fails "${T[@]}" --login --pin "$USER_PIN" --wrap -m AES-KEY-WRAP --id 03 --application-id 01 \
    -o "$W/kek-out.bin"
expect 'CKR_KEY_UNEXTRACTABLE' "wrapping the non-extractable KEK"

# ---- sensitive values cannot be read --------------------------------------------------------------
for id in 01 02; do
    rm -f "$W/read.bin"
    run_fails "${T[@]}" --login --pin "$USER_PIN" --read-object --type secrkey --id "$id" -o "$W/read.bin"
    expect 'CKR_ATTRIBUTE_SENSITIVE' "--read-object of sensitive key id $id"
    [ ! -s "$W/read.bin" ] || fail "--read-object of sensitive key id $id wrote bytes"
done

# ---- delete ------------------------------------------------------------------------------------
run "${T[@]}" --login --pin "$USER_PIN" --delete-object --type secrkey --id 11
run "${T[@]}" --login --pin "$USER_PIN" --list-objects --type secrkey
expect_not 'label:[[:space:]]+dek-from-kw$' "the deleted key is gone"
expect 'label:[[:space:]]+dek-from-pad$' "the other keys stay"
expect 'label:[[:space:]]+kek$' "the KEK stays"

# ---- random and digests ------------------------------------------------------------------------
run "${T[@]}" --generate-random 32 -o "$W/r1.bin"
run "${T[@]}" --generate-random 32 -o "$W/r2.bin"
[ "$(filesize "$W/r1.bin")" -eq 32 ] || fail "--generate-random 32 gave $(filesize "$W/r1.bin") bytes"
cmp -s "$W/r1.bin" "$W/r2.bin" && fail "two --generate-random 32 outputs are equal"

printf 'The quick brown fox jumps over the lazy dog\n' > "$W/in.txt"
head -c 100000 /dev/urandom > "$W/big.bin"
for f in in.txt big.bin; do
    run "${T[@]}" --hash -m SHA256 -i "$W/$f" -o "$W/h256"
    want=$(sha256sum < "$W/$f" | cut -d' ' -f1)
    [ "$(hexof "$W/h256")" = "$want" ] ||
        fail "--hash -m SHA256 of $f: expected $want, got $(hexof "$W/h256")"
    run "${T[@]}" --hash -m SHA512 -i "$W/$f" -o "$W/h512"
    want=$(sha512sum < "$W/$f" | cut -d' ' -f1)
    [ "$(hexof "$W/h512")" = "$want" ] ||
        fail "--hash -m SHA512 of $f: expected $want, got $(hexof "$W/h512")"
done

log "all pkcs11-tool checks passed"
