#!/bin/bash
# tests/integration/store_blob.sh: a stolen store is a harmless blob. Puts secret keys with known
# bytes into a token (C_CreateObject through PyKCS11, pkcs11-tool --write-object of a raw key file,
# and a generated key whose bytes are learned by wrapping it out), then searches every file of the
# store (.db, -wal, -shm, -journal) for the key bytes and the PINs: once while the new data sits
# only in the WAL, once after a checkpoint moved it into the main database. A positive control
# shows the search finds the bytes where they are. Never prints a key or a PIN.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
need pkcs11-tool od
[ -x "$PYTHON" ] || skip "$PYTHON is not installed"
"$PYTHON" -c 'import PyKCS11, sqlite3' 2>/dev/null || skip "python3-pykcs11 is not installed"

LABEL="it-blob-$$"
init_token "$LABEL"

# A key imported by pkcs11-tool from a raw key file; committed (and checkpointed when the tool exits)
# before the Python part starts.
head -c 32 /dev/urandom > "$IT_TMP/k-tool.bin"
secret "$(hexof "$IT_TMP/k-tool.bin")"
run "${P11TOOL[@]}" --token-label "$LABEL" --login --pin "$USER_PIN" --write-object "$IT_TMP/k-tool.bin" \
    --type secrkey --key-type AES:32 --label blob-tool-key --id 31 --sensitive --private
expect 'Secret Key Object; AES length 32' "--write-object of a raw AES key"
expect_not 'VALUE:' "the written key's value is not shown"

cat > "$IT_TMP/blob.py" <<'PYEOF'
# Runs inside store_blob.sh; prints names, sizes and verdicts, never a key or PIN.
import base64, glob, os, sqlite3, sys
import PyKCS11
from PyKCS11 import *

E = os.environ
STORE, TMP, REFERENCE = E["IT_STORE"], E["IT_TMP"], E["IT_REFERENCE"] == "1"
failures = []


def check(cond, what, detail=""):
    print(("ok   - " if cond else "FAIL - ") + what + ("" if cond else ": " + detail))
    if not cond:
        failures.append(what)


def needles(secrets):
    """(name, bytes) pairs to search for: each secret raw, as hex (both cases), base64, and for
    keys each 16-byte half (a store that kept part of a key is not a blob)."""
    out = []
    for name, s in secrets:
        forms = [("raw", s), ("hex", s.hex().encode()), ("HEX", s.hex().upper().encode()),
                 ("base64", base64.b64encode(s))]
        if len(s) >= 32:
            forms += [("first half", s[:16]), ("second half", s[16:])]
        out += [("%s (%s)" % (name, f), b) for f, b in forms]
    return out


def store_files():
    return sorted(p for p in glob.glob(os.path.join(STORE, "**", "*"), recursive=True)
                  if os.path.isfile(p))


def search(paths, secrets):
    """[(needle name, file, offset)] for every needle found in the files."""
    hits = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        for name, b in needles(secrets):
            i = data.find(b)
            if i >= 0:
                hits.append((name, os.path.basename(p), i))
    return hits


def scan(stage, secrets, markers):
    files = store_files()
    print("# %s: %s" % (stage, ", ".join("%s (%d bytes)" % (os.path.basename(p),
                                                           os.path.getsize(p)) for p in files)))
    check(files, stage + ": the store has files to search", "none found")
    hits = search(files, secrets)
    check(not hits, stage + ": no key or PIN bytes in any store file",
          "; ".join("%s in %s at offset %d" % h for h in hits))
    for marker, where in markers:
        found = [os.path.basename(p) for p in files
                 if where(p) and marker[1] in open(p, "rb").read()]
        check(found, "%s: control: %s found in the expected file" % (stage, marker[0]),
              "not found: the search did not see the new data")


def is_wal(p):
    return p.endswith("-wal")


def is_db(p):
    return p.endswith(".db")


user_pin, so_pin = E["IT_USER_PIN"].encode(), E["IT_SO_PIN"].encode()
secrets = [("user PIN", user_pin), ("SO PIN", so_pin),
           ("user PIN bytes", bytes.fromhex(user_pin.decode())),
           ("SO PIN bytes", bytes.fromhex(so_pin.decode()))]
with open(os.path.join(TMP, "k-tool.bin"), "rb") as f:
    secrets.append(("key written by pkcs11-tool", f.read()))
tag = os.urandom(6).hex()
label_marker = ("the label of a new key", ("blob-created-" + tag).encode())

# Hold a read transaction on each token database while the module writes: a checkpoint cannot
# move frames past a reader's snapshot, so everything written now stays in the -wal file.
readers = []
for db in glob.glob(os.path.join(STORE, "*.db")):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, isolation_level=None)
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    readers.append(con)
if not REFERENCE:
    check(readers, "the token database exists", "no *.db in the store")

lib = PyKCS11Lib()
lib.load(E["CUSTOS_MODULE"])
slot = [s for s in lib.getSlotList(tokenPresent=True)
        if lib.getTokenInfo(s).label.rstrip(" \x00") == E["IT_LABEL"]][0]
s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
s.login(E["IT_USER_PIN"])


def create(key_type, value, label, extra=()):
    return s.createObject([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, key_type),
                           (CKA_VALUE, value), (CKA_TOKEN, CK_TRUE), (CKA_PRIVATE, CK_TRUE),
                           (CKA_SENSITIVE, CK_TRUE), (CKA_LABEL, label)] + list(extra))


k_aes, k_gen = os.urandom(32), os.urandom(32)
create(CKK_AES, k_aes, "blob-created-" + tag, [(CKA_EXTRACTABLE, CK_FALSE), (CKA_ENCRYPT, CK_TRUE)])
create(CKK_GENERIC_SECRET, k_gen, "blob-generic", [(CKA_SIGN, CK_TRUE)])
secrets += [("imported AES key", k_aes), ("imported generic secret", k_gen)]

# A key generated in the token: learn its bytes by wrapping it out under a session KEK and
# unwrapping that as a non-sensitive session key, whose value may be read.
gen = s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
                     (CKA_TOKEN, CK_TRUE), (CKA_PRIVATE, CK_TRUE), (CKA_SENSITIVE, CK_TRUE),
                     (CKA_EXTRACTABLE, CK_TRUE), (CKA_ENCRYPT, CK_TRUE),
                     (CKA_LABEL, "blob-generated")])
kek = s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
                     (CKA_TOKEN, CK_FALSE), (CKA_WRAP, CK_TRUE), (CKA_UNWRAP, CK_TRUE)])
mech = Mechanism(CKM_AES_KEY_WRAP, None)
wrapped = s.wrapKey(kek, gen, mech)
clear = s.unwrapKey(kek, wrapped, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                                   (CKA_TOKEN, CK_FALSE), (CKA_SENSITIVE, CK_FALSE),
                                   (CKA_EXTRACTABLE, CK_TRUE)], mech)
k_generated = bytes(s.getAttributeValue(clear, [CKA_VALUE], allAsBinary=True)[0])
check(len(k_generated) == 32, "the generated key's bytes are known (wrapped out)",
      "%d bytes" % len(k_generated))
secrets.append(("generated key", k_generated))

# Stage 1: module still open, new rows only in the WAL. (SoftHSM2 encrypts a private object whole,
# label included, so the label control applies to Custos only.)
wal_markers = [] if REFERENCE else [(label_marker, is_wal)]
scan("in the WAL, module open", secrets, wal_markers)

s.logout()
s.closeSession()
# C_Finalize: the module closes its database (sessions and handles above still refer to lib, so
# `del lib` alone would not unload it yet).
check(lib.lib.C_Finalize() == CKR_OK, "C_Finalize", "an error")

# Stage 2: module closed; our readers kept its close from checkpointing.
scan("in the WAL, module closed", secrets, wal_markers)

# Stage 3: let go and checkpoint everything into the main database.
for con in readers:
    con.execute("COMMIT")
    con.close()
if not REFERENCE:
    for db in glob.glob(os.path.join(STORE, "*.db")):
        con = sqlite3.connect(db, isolation_level=None)
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        con.close()
        check(busy == 0, "checkpoint of %s completed" % os.path.basename(db), "busy")
    wal_left = [p for p in store_files() if is_wal(p) and os.path.getsize(p) > 0]
    check(not wal_left, "the WAL is empty after the checkpoint", ", ".join(wal_left))
    scan("in the main database, after checkpoint", secrets,
         [(label_marker, is_db), (("the SQLite header", b"SQLite format 3\0"), is_db)])
else:
    scan("reference store", secrets, [])

# Positive control: the same search finds the same needles where they are.
ctl = os.path.join(TMP, "control")
os.makedirs(ctl)
with open(os.path.join(ctl, "raw.bin"), "wb") as f:
    f.write(os.urandom(4096) + k_generated + os.urandom(4096))
with open(os.path.join(ctl, "hex.txt"), "wb") as f:
    f.write(b"x" * 100 + k_aes.hex().encode() + b"\n")
with open(os.path.join(ctl, "pin.txt"), "wb") as f:
    f.write(b"pin=" + user_pin + b"\n")
with open(os.path.join(ctl, "half.bin"), "wb") as f:
    f.write(os.urandom(999) + k_gen[16:] + os.urandom(999))
with open(os.path.join(ctl, "clean.bin"), "wb") as f:
    f.write(os.urandom(8192))
for name, want in (("raw.bin", "generated key (raw)"), ("hex.txt", "imported AES key (hex)"),
                   ("pin.txt", "user PIN (raw)"), ("half.bin", "imported generic secret (second half)")):
    hits = search([os.path.join(ctl, name)], secrets)
    check(any(h[0] == want for h in hits), "control: the search finds %s in %s" % (want, name),
          "found %s" % [h[0] for h in hits])
hits = search([os.path.join(ctl, "clean.bin")], secrets)
check(not hits, "control: the search finds nothing in random bytes", str([h[0] for h in hits]))

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
PYEOF

export IT_STORE IT_TMP IT_REFERENCE IT_LABEL=$LABEL IT_USER_PIN=$USER_PIN IT_SO_PIN=$SO_PIN
run "$PYTHON" "$IT_TMP/blob.py"
expect '^ok   - control: the search finds nothing in random bytes' "the blob search ran to its end"
log "no key or PIN bytes found in the store"
