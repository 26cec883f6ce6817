#!/bin/bash
# tests/integration/p11kit.sh: p11-kit (0.24, Debian 12) finds the built module through a module
# file and shows the token pkcs11-tool initialised; then pkcs11-tool works through the p11-kit proxy,
# which uses only the 2.40 function list (INTEROP.md). The module file is removed on any exit.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need p11-kit pkcs11-tool

LABEL="it-p11kit-$$"
NAME=custos-test
# As root p11-kit reads module files only from /etc/pkcs11/modules (INTEROP.md); a user's own
# modules come from ~/.config/pkcs11/modules.
if [ "$(id -u)" -eq 0 ]; then
    MODDIR=/etc/pkcs11/modules
else
    MODDIR=${XDG_CONFIG_HOME:-$HOME/.config}/pkcs11/modules
fi
MODFILE=$MODDIR/$NAME.module
made=()
d=$MODDIR
while [ ! -d "$d" ]; do made=("$d" "${made[@]}"); d=$(dirname "$d"); done
on_cleanup 'rm -f "$MODFILE"'
on_cleanup 'for ((i = ${#made[@]} - 1; i >= 0; i--)); do rmdir "${made[i]}" 2>/dev/null; done'
mkdir -p "$MODDIR" || fail "cannot create $MODDIR"

init_token "$LABEL"

printf 'module: %s\ncritical: no\n' "$CUSTOS_MODULE" > "$MODFILE" || fail "cannot write $MODFILE"
chmod 644 "$MODFILE"
log "wrote $MODFILE"

run p11-kit list-modules
expect "^$NAME: $CUSTOS_MODULE\$" "p11-kit list-modules shows the module and its path"
# The lines after our module's header, up to the next module.
ours=$(printf '%s\n' "$OUT" | awk -v h="$NAME:" 'index($0, h) == 1 { on = 1; next } /^[^ ]/ { on = 0 } on')
printf '%s\n' "$ours" | grep -Eq "^    token: $LABEL\$" ||
    fail "p11-kit list-modules does not show token '$LABEL' under $NAME"
printf '%s\n' "$ours" | grep -Eq '^ +token-initialized$' ||
    fail "p11-kit list-modules does not show the token-initialized flag under $NAME"
printf '%s\n' "$ours" | grep -Eq '^    library-description: .+' ||
    fail "p11-kit list-modules shows no library description for $NAME"

# ---- through the p11-kit proxy ------------------------------------------------------------------
PROXY=$(pkg-config --variable=proxy_module p11-kit-1 2>/dev/null)
[ -n "$PROXY" ] && [ -f "$PROXY" ] || PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
if [ ! -f "$PROXY" ]; then
    log "p11-kit-proxy.so is not installed: proxy checks not run"
    exit 0
fi
X=(pkcs11-tool --module "$PROXY" --token-label "$LABEL")
run pkcs11-tool --module "$PROXY" --list-slots
expect "token label[[:space:]]*: $LABEL\$" "the proxy lists the token"
run "${X[@]}" --login --pin "$USER_PIN" --keygen --key-type AES:32 --label proxy-kek --id 21 \
    --private --sensitive --usage-wrap
expect 'Secret Key Object; AES length 32' "key generation through the proxy"
run "${X[@]}" --login --pin "$USER_PIN" --keygen --key-type AES:32 --label proxy-dek --id 22 \
    --private --sensitive --extractable
run "${X[@]}" --login --pin "$USER_PIN" --wrap -m AES-KEY-WRAP --id 21 --application-id 22 \
    -o "$IT_TMP/w.bin"
[ "$(filesize "$IT_TMP/w.bin")" -eq 40 ] || fail "wrap through the proxy: expected 40 bytes"
run "${X[@]}" --login --pin "$USER_PIN" --list-objects --type secrkey
expect 'label:[[:space:]]+proxy-kek$' "the proxy lists the new key"
expect_not 'VALUE:' "no key value through the proxy"
printf 'abc' > "$IT_TMP/abc"
run "${X[@]}" --hash -m SHA256 -i "$IT_TMP/abc" -o "$IT_TMP/abc.h"
[ "$(hexof "$IT_TMP/abc.h")" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ] ||
    fail "SHA-256('abc') through the proxy: got $(hexof "$IT_TMP/abc.h")"

log "all p11-kit checks passed"
