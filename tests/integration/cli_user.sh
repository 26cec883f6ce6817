#!/bin/bash
# tests/integration/cli_user.sh: `custos user` (tools/cmd_user.c) drives the built module's "Vendor
# Custos" interface on a throwaway token made with pkcs11-tool: users of every role added and listed
# (table and JSON lines), refusals with their one-line messages and exit codes, a PIN reset that
# pkcs11-tool then logs in with, disable/enable, remove, and a non-admin PIN that cannot manage users.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need pkcs11-tool "$PYTHON" timeout
[ "$IT_REFERENCE" -eq 0 ] || skip "custos user needs the Custos module's vendor interface"

CUSTOS=$CUSTOS_BUILDDIR/tools/custos
[ -x "$CUSTOS" ] || fail "$CUSTOS not built"
LABEL="it-user-$$"
W=$IT_TMP/work
mkdir -p "$W"
ALL=$W/all-output.txt   # every command's output, searched for PINs at the end

# PINs in files (mode 600 by the umask), never on a command line of custos.
pinfile() { secret "$2"; printf '%s\n' "$2" > "$W/$1.pin"; }
pinfile so "$SO_PIN"
pinfile user "$USER_PIN"
pinfile wrong "$WRONG_PIN"
GEN_PIN=$(gen_pin); pinfile gen "$GEN_PIN"
GEN2_PIN=$(gen_pin); pinfile gen2 "$GEN2_PIN"
DEC_PIN=$(gen_pin); pinfile dec "$DEC_PIN"
AUD_PIN=$(gen_pin); pinfile aud "$AUD_PIN"
ADM_PIN=$(gen_pin); pinfile adm "$ADM_PIN"
printf 'abc\n' > "$W/short.pin"

keep() { printf '%s\n' "$OUT" >> "$ALL"; }
ok() { run "$@"; keep; }
# code N CMD...: the command must exit with status N.
code() {
    local want=$1
    shift
    exec_cmd "$@"
    keep
    [ "$RC" -eq "$want" ] || fail "expected exit $want, got $RC from: $(printf '%q ' "$@")"
}

# ---- help -------------------------------------------------------------------------------------------
ok "$CUSTOS" --help
expect '^  user ' "custos --help lists user"
ok "$CUSTOS" help user
expect 'add NAME --roles R' "custos help user documents add"
expect 'admin, generate, decrypt, audit' "custos help user names the roles"
ok "$CUSTOS" user --help
expect -- '--new-pin-file FILE' "custos user --help documents --new-pin-file"

init_token "$LABEL"
U=("$CUSTOS" user --module "$CUSTOS_MODULE" --token "$LABEL")
A=("${U[@]}" --pin-file "$W/so.pin")

# ---- usage errors: exit 2, nothing sent to the token -------------------------------------------------------
code 2 "$CUSTOS" user
code 2 "${A[@]}" frobnicate
expect "unknown action 'frobnicate'" "an unknown action is named"
code 2 "${A[@]}" add --roles generate --new-pin-file "$W/gen.pin"
expect "give the user's NAME" "add without a name"
code 2 "${A[@]}" add gen --new-pin-file "$W/gen.pin"
expect 'give --roles' "add without --roles"
code 2 "${A[@]}" add bad --roles generate,frobnicate --new-pin-file "$W/gen.pin"
expect "custos user: --roles: unknown role 'frobnicate' \(admin, generate, decrypt, audit\)" "a bad role"
code 2 "${A[@]}" add bad --roles admin,decrypt --new-pin-file "$W/gen.pin"
expect 'admin takes no other role' "admin with another role"
code 2 "${A[@]}" add 'a,b' --roles decrypt --new-pin-file "$W/gen.pin"
expect "bad user name 'a,b'" "a name with a comma"
code 2 "${A[@]}" remove gen --roles decrypt
expect 'remove takes no --roles' "--roles where it does not belong"
code 2 "${A[@]}" list extra
expect "unexpected argument 'extra'" "list takes no name"

# ---- add a user of each role, list them ----------------------------------------------------------------------
ok "${A[@]}" add gen --roles generate --new-pin-file "$W/gen.pin"
expect '^added user gen with roles generate$' "add gen"
ok "${A[@]}" add dec --roles decrypt --new-pin-file "$W/dec.pin"
ok "${A[@]}" add aud --roles audit --new-pin-file "$W/aud.pin"
ok "${A[@]}" add adm --roles admin --new-pin-file "$W/adm.pin"
expect '^added user adm with roles admin$' "add an admin"

ok "${A[@]}" list
expect '^NAME +ROLES +STATE +FAILURES$' "the table has a header"
expect '^so +admin +enabled +0$' "the SO of C_InitToken is an admin"
expect '^user +generate,decrypt +enabled +0$' "the user of C_InitPIN has generate and decrypt"
expect '^gen +generate +enabled +0$' "gen is listed"
expect '^dec +decrypt +enabled +0$' "dec is listed"
expect '^aud +audit +enabled +0$' "aud is listed"
expect '^adm +admin +enabled +0$' "adm is listed"
expect_not '^bad ' "a refused add added nobody"

ok "${A[@]}" list --json
printf '%s\n' "$OUT" > "$W/list.json"
"$PYTHON" - "$W/list.json" <<'EOF' || fail "custos user list --json does not parse or is wrong"
import json, sys
users = {}
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert set(o) == {"name", "roles", "state", "disabled", "locked", "failures"}, o
    users[o["name"]] = o
want = {"so": ["admin"], "user": ["generate", "decrypt"], "gen": ["generate"],
        "dec": ["decrypt"], "aud": ["audit"], "adm": ["admin"]}
assert {n: u["roles"] for n, u in users.items()} == want, users
assert all(u["state"] == "enabled" and u["failures"] == 0 and not u["disabled"] and not u["locked"]
           for u in users.values()), users
print("json users:", len(users))
EOF

# ---- refusals by the token: exit 1, one line with the CKR name ----------------------------------------------
code 1 "${A[@]}" add gen --roles decrypt --new-pin-file "$W/aud.pin"
expect '^custos user: add gen: a user of that name exists already \(CKR_ACTION_PROHIBITED\)$' \
    "a duplicate name"
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ] || fail "the duplicate-name error is not one line"
code 1 "${A[@]}" add twin --roles decrypt --new-pin-file "$W/dec.pin"
expect "add twin: the PIN is already another user's \(CKR_PIN_INVALID\)" "a PIN in use"
code 1 "${A[@]}" add shorty --roles decrypt --new-pin-file "$W/short.pin"
expect 'CKR_PIN_LEN_RANGE' "a too short PIN"
code 1 "${A[@]}" remove nosuch
expect 'remove nosuch: no such user \(CKR_ARGUMENTS_BAD\)' "removing an unknown user"
code 1 "${A[@]}" disable so
expect 'an admin cannot disable or enable themself \(CKR_ACTION_PROHIBITED\)' "disabling oneself"
code 1 "${A[@]}" remove so
expect 'an admin cannot remove themself \(CKR_ACTION_PROHIBITED\)' "removing oneself"
code 1 "${A[@]}" roles gen --roles admin
expect 'roles cannot cross between admin and non-admin; remove the user and add it again \(CKR_ACTION_PROHIBITED\)' "roles across the admin line"
ok "${A[@]}" list
expect_not '^(twin|shorty) ' "refused adds added nobody"

# ---- the admin login: wrong PINs, user PINs, a named admin ---------------------------------------------------
code 1 "${U[@]}" --pin-file "$W/wrong.pin" list
expect '^custos user: admin login: the PIN is wrong or is not an admin.s \(CKR_PIN_INCORRECT\)$' \
    "a wrong admin PIN"
code 1 "${U[@]}" --pin-file "$W/gen.pin" add intruder --roles generate --new-pin-file "$W/wrong.pin"
expect 'admin login: the PIN is wrong or is not an admin.s \(CKR_PIN_INCORRECT\)' \
    "a generate user's PIN cannot manage users"
code 1 "${U[@]}" --pin-file "$W/aud.pin" --admin aud list
expect 'admin login as aud: .*\(CKR_PIN_INCORRECT\)' "an audit user named as admin cannot manage users"
ok "${U[@]}" --pin-file "$W/adm.pin" --admin adm list
expect '^gen +generate ' "a second admin, named (C_LoginUser), lists the users"
ok "${U[@]}" --pin-file "$W/adm.pin" list
expect '^adm +admin ' "a second admin, selected by its PIN, lists the users"
ok "${A[@]}" list
expect_not '^intruder ' "the refused admin login added nobody"

# ---- passwd: the new PIN logs in, the old one does not ---------------------------------------------------------
ok "${A[@]}" passwd gen --new-pin-file "$W/gen2.pin"
expect 'set a new PIN for gen' "passwd gen"
ok "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$GEN2_PIN" -O
exec_cmd "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$GEN_PIN" -O
keep
[ "$RC" -ne 0 ] || fail "the old PIN of gen still logs in"
expect 'CKR_PIN_INCORRECT' "the old PIN of gen is refused"
code 1 "${U[@]}" --pin-file "$W/gen2.pin" --admin gen list
expect 'CKR_PIN_INCORRECT' "gen's new PIN is still not an admin's"
code 1 "${A[@]}" passwd gen --new-pin-file "$W/dec.pin"
expect "passwd gen: the PIN is already another user's \(CKR_PIN_INVALID\)" "passwd to a PIN in use"

# ---- roles ---------------------------------------------------------------------------------------------------
ok "${A[@]}" roles gen --roles generate,decrypt
expect '^gen now has roles generate,decrypt$' "roles gen"
ok "${A[@]}" list
expect '^gen +generate,decrypt +enabled' "the new roles are listed"
ok "${A[@]}" roles gen --roles generate

# ---- disable, enable ----------------------------------------------------------------------------------------------
ok "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$DEC_PIN" -O
ok "${A[@]}" disable dec
expect 'disabled dec' "disable dec"
ok "${A[@]}" list
expect '^dec +decrypt +disabled +0$' "dec is listed as disabled"
exec_cmd "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$DEC_PIN" -O
keep
[ "$RC" -ne 0 ] || fail "a disabled user logged in"
expect 'CKR_PIN_LOCKED' "a disabled user's login is CKR_PIN_LOCKED"
ok "${A[@]}" list --json
expect '"name":"dec","roles":\["decrypt"\],"state":"disabled","disabled":true' "JSON shows disabled"
ok "${A[@]}" enable dec
expect 'enabled dec' "enable dec"
ok "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$DEC_PIN" -O
ok "${A[@]}" list
expect '^dec +decrypt +enabled' "dec is enabled again"

# ---- remove -------------------------------------------------------------------------------------------------------
ok "${A[@]}" remove dec
expect '^removed user dec$' "remove dec"
ok "${A[@]}" list
expect_not '^dec ' "dec is gone"
exec_cmd "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$DEC_PIN" -O
keep
[ "$RC" -ne 0 ] || fail "a removed user logged in"
ok "${A[@]}" add dec --roles decrypt --new-pin-file "$W/dec.pin"
expect 'added user dec' "a removed user's name and PIN can be used again"

# ---- locked: wrong PINs for a named user (custos audit counts them as the module does) ---------------------------
for _ in 1 2 3 4 5 6 7 8 9 10; do
    code 1 "$CUSTOS" audit tail --token "$LABEL" --user aud --pin-file "$W/wrong.pin"
done
ok "${A[@]}" list
expect '^aud +audit +locked +10$' "after 10 wrong PINs aud is listed as locked"
ok "${A[@]}" list --json
expect '"name":"aud","roles":\["audit"\],"state":"locked","disabled":false,"locked":true,"failures":10' \
    "JSON shows locked"
AUD2_PIN=$(gen_pin); pinfile aud2 "$AUD2_PIN"
ok "${A[@]}" passwd aud --new-pin-file "$W/aud2.pin"
ok "${A[@]}" list
expect '^aud +audit +enabled +0$' "passwd lifts the lockout"

# ---- no terminal, no PIN file: no PIN from anywhere else ------------------------------------------------------------
if command -v setsid >/dev/null 2>&1; then
    code 1 setsid -w "${U[@]}" list
    expect 'no terminal to ask for the PIN' "without a terminal the PIN is not guessed from elsewhere"
fi

# ---- the changes are in the audit trail; no PIN was printed anywhere --------------------------------------------------
ok "$CUSTOS" audit export --token "$LABEL" --user aud --pin-file "$W/aud2.pin"
expect 'C_CustosUserAdd' "the audit trail records C_CustosUserAdd"
expect 'C_CustosUserEnable' "the audit trail records C_CustosUserEnable"
for p in "$SO_PIN" "$USER_PIN" "$WRONG_PIN" "$GEN_PIN" "$GEN2_PIN" "$DEC_PIN" "$AUD_PIN" "$AUD2_PIN" "$ADM_PIN"; do
    if grep -qF -- "$p" "$ALL"; then fail "a PIN appears in the output"; fi
done
log "no PIN in $(wc -l < "$ALL") lines of output"
