#!/usr/bin/env bash
# bench_smoke.sh: `custos bench` as a one-second smoke run on the built module. Checks that the
# tool runs, that its table and its JSON lines parse, and that bad input (a file that is not a
# PKCS#11 module, an unknown workload, a wrong PIN) gives one clear line and a non-zero exit.
# A benchmark is not a timed test: nothing here asserts a speed.
. "$(dirname "$0")/lib.sh"
need "$PYTHON"

CUSTOS=$CUSTOS_BUILDDIR/tools/custos
[ -x "$CUSTOS" ] || fail "$CUSTOS not built"

# ---- the command table ----------------------------------------------------------------------------
run "$CUSTOS" --help
expect '^  bench ' "custos --help lists bench"
run "$CUSTOS" help bench
expect -- '--raw-openssl' "custos help bench shows the options"
run "$CUSTOS" bench --help
expect -- '--vs PATH' "custos bench --help shows the options"
run "$CUSTOS" bench --list
expect '^gcm-enc-4k ' "--list names gcm-enc-4k"
expect '^find-label ' "--list names find-label"
run_fails "$CUSTOS" nosuchcommand
expect "unknown command 'nosuchcommand'" "an unknown command is named"

# ---- a table run: Custos and raw OpenSSL side by side ------------------------------------------------
WORK=$IT_TMP/bench
run "$CUSTOS" bench --module "$CUSTOS_MODULE" --raw-openssl --rounds 1 --seconds 0.1 --quiet \
    --workdir "$WORK" --workload gcm-enc-4k,wrap-kwp,session-open-close
printf '%s\n' "$OUT" > "$IT_TMP/table.txt"
"$PYTHON" - "$IT_TMP/table.txt" <<'EOF' || fail "the table does not parse"
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if not f or f[0] == "workload" or f[1] == "ratio":
        continue
    w, t = f[0], f[1]
    if f[4] == "-":
        rows[(w, t)] = None
        continue
    ops, med, p99 = float(f[4]), float(f[5]), float(f[6])
    assert ops > 0 and 0 < med <= p99, line
    rows[(w, t)] = ops
for w in ("gcm-enc-4k", "wrap-kwp", "session-open-close"):
    assert rows.get((w, "custos")), "no custos row for " + w
assert rows.get(("gcm-enc-4k", "openssl")), "no openssl row"
assert ("session-open-close", "openssl") in rows, "openssl row of a token-only workload"
print("table rows:", len(rows))
EOF
expect 'gcm-enc-4k +ratio custos/other: +openssl [0-9.]+x' "a ratio line per workload"

# ---- JSON lines, two threads, the kept token is reused -----------------------------------------------
run "$CUSTOS" bench --module "$CUSTOS_MODULE" --json --seconds 0.1 --threads 1,2 --quiet \
    --workdir "$WORK" --workload gcm-dec-64,keygen-session,chacha-enc-4k,login-logout
printf '%s\n' "$OUT" > "$IT_TMP/json.txt"
"$PYTHON" - "$IT_TMP/json.txt" <<'EOF' || fail "the JSON lines do not parse"
import json, sys
seen = {}
for line in open(sys.argv[1]):
    o = json.loads(line)
    seen.setdefault(o["type"], []).append(o)
    if o["type"] == "result":
        assert o["ops"] > 0 and o["ops_per_s"] > 0 and o["median_us"] <= o["p99_us"], o
        assert o["threads"] in (1, 2) and o["processes"] == 1, o
        if o["workload"] == "gcm-dec-64":
            assert "mb_per_s" in o, o
for w in ("gcm-dec-64", "keygen-session"):
    assert {o["threads"] for o in seen["result"] if o["workload"] == w} == {1, 2}, w
assert [o for o in seen["result"] if o["workload"] == "login-logout"], "login-logout ran"
assert any(o["workload"] == "chacha-enc-4k" for o in seen.get("skip", []) + seen["result"])
assert all(o["reason"] == "mechanism not listed" for o in seen.get("skip", [])), seen.get("skip")
assert seen.get("scaling"), "a scaling line for --threads 1,2"
assert not seen.get("error"), seen.get("error")
print("json lines:", sum(len(v) for v in seen.values()))
EOF

# ---- the PKCS#11 3.0 message API: Custos runs it (a decrypt that checks its tag, and an encrypt);
# SoftHSM2 2.6, which has no 3.0 function list, is skipped with the reason ---------------------------
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
VS=()
[ -r "$SOFTHSM" ] && VS=(--vs "$SOFTHSM")
run "$CUSTOS" bench --module "$CUSTOS_MODULE" "${VS[@]}" --raw-openssl --json --rounds 1 \
    --seconds 0.1 --quiet --workload gcm-msg-dec-64,gcm-msg-enc-4k
printf '%s\n' "$OUT" > "$IT_TMP/msg.txt"
"$PYTHON" - "$IT_TMP/msg.txt" "${#VS[@]}" <<'EOF' || fail "the message API rows"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
res = {(o["workload"], o["target"]) for o in rows if o["type"] == "result"}
for w in ("gcm-msg-dec-64", "gcm-msg-enc-4k"):
    assert (w, "custos") in res and (w, "openssl") in res, (w, res)
assert not [o for o in rows if o["type"] == "error"], rows
if sys.argv[2] != "0":
    skips = [o for o in rows if o["type"] == "skip" and o["target"] == "softhsm2"]
    assert len(skips) == 2 and all("3.0 function list" in o["reason"] for o in skips), skips
print("message API rows:", len(res))
EOF

# ---- bad input: one clear line, non-zero, no crash ------------------------------------------------------
run_fails "$CUSTOS" bench --module /etc/hostname --seconds 0.1
expect 'not a PKCS#11 module' "a file that is not a module"
[ "$RC" -lt 128 ] || fail "crashed (exit $RC) on a file that is not a module"
run_fails "$CUSTOS" bench --module "$CUSTOS_MODULE" --workload gcm-enc-4k,no-such-workload
expect "unknown workload 'no-such-workload'" "an unknown workload"
[ "$RC" -lt 128 ] || fail "crashed (exit $RC) on an unknown workload"
run_fails "$CUSTOS" bench --module "$CUSTOS_MODULE" --seconds abc
expect -- "--seconds: 'abc'" "a bad number"

# --token with the kept token: the right PIN from a file works, a wrong one is refused clearly.
secret "$(head -n1 "$WORK/custos/pin")"
printf '%s\n' "$WRONG_PIN" > "$IT_TMP/wrong.pin"
run_fails env CUSTOS_CONF="$WORK/custos/custos.conf" "$CUSTOS" bench --module "$CUSTOS_MODULE" \
    --token custos-bench --pin-file "$IT_TMP/wrong.pin" --workload session-open-close --seconds 0.1
expect 'CKR_PIN_INCORRECT' "a wrong PIN"
[ "$RC" -lt 128 ] || fail "crashed (exit $RC) on a wrong PIN"
[ "$(printf '%s\n' "$OUT" | grep -c .)" -eq 1 ] || fail "a wrong PIN gives one line"
run env CUSTOS_CONF="$WORK/custos/custos.conf" "$CUSTOS" bench --module "$CUSTOS_MODULE" --quiet \
    --token custos-bench --pin-file "$WORK/custos/pin" --workload session-open-close --seconds 0.1
expect '^session-open-close +custos ' "the kept token by --token and --pin-file"
expect_not "$WRONG_PIN" "no PIN in the output"
exit 0
