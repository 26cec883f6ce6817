#!/usr/bin/python3
# tests/integration/robustness_test.py: the two store promises robustness.sh proves, driven through
# PyKCS11 (Debian python3-pykcs11). Crash safety: writer children create durable token keys and
# report each after CKR_OK; they are SIGKILLed at random moments; a fresh process finds every
# reported key. Damage: a damaged token file answers CKR_TOKEN_NOT_RECOGNIZED / CKR_DEVICE_ERROR for
# its slot only, while the other token works. Prints labels, counts and verdicts, never a PIN or key.
#
# Phases (argv[1]): init LABEL | writer PREFIX | crash ROUND CHILDREN | verify ROUND |
#                   damage-init | damage-check VARIANT
# Environment: CUSTOS_MODULE, CUSTOS_CONF, IT_SO_PIN, IT_USER_PIN, IT_LABEL, IT_STATE (a directory).
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback

import PyKCS11
from PyKCS11 import (
    AES_GCM_Mechanism, Mechanism, PyKCS11Error, PyKCS11Lib, CKR, CK_TRUE, CK_FALSE,
    CKA_CLASS, CKA_DECRYPT, CKA_ENCRYPT, CKA_EXTRACTABLE, CKA_KEY_TYPE, CKA_LABEL, CKA_PRIVATE,
    CKA_SENSITIVE, CKA_TOKEN, CKA_VALUE_LEN, CKF_RW_SESSION, CKF_SERIAL_SESSION,
    CKF_TOKEN_INITIALIZED, CKF_TOKEN_PRESENT, CKK_AES, CKM_AES_KEY_GEN, CKO_SECRET_KEY, CKU_SO,
)

MODULE = os.environ["CUSTOS_MODULE"]
SO_PIN = os.environ["IT_SO_PIN"]
USER_PIN = os.environ["IT_USER_PIN"]
STATE = os.environ["IT_STATE"]
RECORD = b'{"id":7,"note":"robustness record"}'
AAD = b"robustness"
# A damaged token may answer only these (PKCS#11 3.2 sec. 5.1: the token is not recognised / the
# device failed); anything else, CKR_OK above all, is a failure.
DAMAGE_RVS = (PyKCS11.CKR_TOKEN_NOT_RECOGNIZED, PyKCS11.CKR_DEVICE_ERROR)

failures = []


def check(cond, what, expected="", got=""):
    if cond:
        print("ok   - " + what)
    else:
        print("FAIL - %s: expected %s, got %s" % (what, expected, got))
        failures.append(what)
    return cond


def rv_name(rv):
    return CKR.get(rv, "0x%08X" % rv)


def call_rv(fn, *args):
    """(rv, result) of fn(*args): CKR_OK and the result, or the error's rv and None."""
    try:
        return PyKCS11.CKR_OK, fn(*args)
    except PyKCS11Error as e:
        return e.value, None


def load():
    lib = PyKCS11Lib()
    lib.load(MODULE)
    return lib


def slot_by_label(lib, label):
    for slot in lib.getSlotList(tokenPresent=True):
        rv, ti = call_rv(lib.getTokenInfo, slot)
        if rv == PyKCS11.CKR_OK and ti.flags & CKF_TOKEN_INITIALIZED and \
                ti.label.rstrip(" \x00") == label:
            return slot
    return None


def empty_slot(lib):
    for slot in lib.getSlotList(tokenPresent=True):
        rv, ti = call_rv(lib.getTokenInfo, slot)
        if rv == PyKCS11.CKR_OK and not ti.flags & CKF_TOKEN_INITIALIZED:
            return slot
    return None


def key_template(label):
    return [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
            (CKA_TOKEN, CK_TRUE), (CKA_PRIVATE, CK_TRUE), (CKA_SENSITIVE, CK_TRUE),
            (CKA_EXTRACTABLE, CK_FALSE), (CKA_ENCRYPT, CK_TRUE), (CKA_DECRYPT, CK_TRUE),
            (CKA_LABEL, label)]


def user_session(lib, slot):
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(USER_PIN)
    return s


def new_token(lib, label):
    """Initialise the uninitialised token as label, set the user PIN; its slot."""
    slot = empty_slot(lib)
    if slot is None:
        raise RuntimeError("no uninitialised token")
    # C_InitToken reads 32 bytes of label (PKCS#11 3.2 sec. 5.6): pad it.
    lib.initToken(slot, SO_PIN, label.ljust(32))
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(SO_PIN, user_type=CKU_SO)
    s.initPin(USER_PIN)
    s.logout()
    s.closeSession()
    return slot


def gcm_round_trip(s, key, what):
    iv = os.urandom(12)
    ct = bytes(s.encrypt(key, RECORD, AES_GCM_Mechanism(iv, AAD, 128)))
    back = bytes(s.decrypt(key, ct, AES_GCM_Mechanism(iv, AAD, 128)))
    return check(back == RECORD and len(ct) == len(RECORD) + 16, what + ": GCM round trip",
                 "the record back", "%d-byte ciphertext, %s" %
                 (len(ct), "equal" if back == RECORD else "different"))


# ---- crash safety ------------------------------------------------------------------------------

def phase_init(label):
    lib = load()
    slot = new_token(lib, label)
    print("token %s initialised in slot %d" % (label, slot))
    lib.lib.C_Finalize()


def phase_writer(prefix):
    """Create token keys as fast as possible; after each CKR_OK write its label (one write(2) of a
    whole line, so a kill never leaves half a label). Runs until killed."""
    lib = load()
    s = user_session(lib, slot_by_label(lib, os.environ["IT_LABEL"]))
    mech = Mechanism(CKM_AES_KEY_GEN, None)
    i = 0
    while True:
        label = "%s-%06d" % (prefix, i)
        try:
            s.generateKey(key_template(label), mech)
        except PyKCS11Error as e:
            sys.stderr.write("writer %s: C_GenerateKey of %s: %s\n" % (prefix, label, rv_name(e.value)))
            sys.exit(3)
        os.write(1, (label + "\n").encode())
        i += 1


def round_file(rnd):
    return os.path.join(STATE, "round-%d.json" % rnd)


def phase_crash(rnd, nchildren):
    """Start nchildren writers on the same token; once each has reported a key, SIGKILL each at its
    own random moment 0.3-1.0 s later. Keeps what each reported in round-<rnd>.json."""
    children = []
    for c in range(nchildren):
        prefix = "r%d%s" % (rnd, "abcdefgh"[c])
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "writer", prefix],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ch = {"prefix": prefix, "proc": p, "lines": [], "err": b""}

        def reader(ch=ch):
            # Only whole lines count: what reached the pipe before the kill.
            for line in ch["proc"].stdout:
                if line.endswith(b"\n"):
                    ch["lines"].append(line[:-1].decode())

        def err_reader(ch=ch):
            ch["err"] = ch["proc"].stderr.read()
        ch["threads"] = [threading.Thread(target=reader), threading.Thread(target=err_reader)]
        for t in ch["threads"]:
            t.start()
        children.append(ch)

    deadline = time.monotonic() + 20
    while any(not ch["lines"] and ch["proc"].poll() is None for ch in children) and \
            time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    for ch in children:
        ch["kill_at"] = started + random.uniform(0.3, 1.0)
    for ch in sorted(children, key=lambda c: c["kill_at"]):
        time.sleep(max(0.0, ch["kill_at"] - time.monotonic()))
        if ch["proc"].poll() is None:
            ch["proc"].send_signal(signal.SIGKILL)
            ch["killed_after"] = time.monotonic() - started
    out = []
    for ch in children:
        ch["proc"].wait()
        for t in ch["threads"]:
            t.join()
        rc = ch["proc"].returncode
        ok = check(rc == -signal.SIGKILL,
                   "writer %s was writing until SIGKILLed %.2f s after its first key"
                   % (ch["prefix"], ch.get("killed_after", -1)),
                   "killed by SIGKILL", "exit %s, stderr: %s"
                   % (rc, ch["err"].decode(errors="replace").strip()))
        if ok:
            check(len(ch["lines"]) > 0, "writer %s reported keys" % ch["prefix"], "> 0", 0)
        print("# writer %s: %d keys reported before the kill" % (ch["prefix"], len(ch["lines"])))
        out.append({"prefix": ch["prefix"], "labels": ch["lines"]})
    with open(round_file(rnd), "w") as f:
        json.dump(out, f)


def phase_verify(rnd):
    """A fresh process: the token opens, every key reported in rounds 1..rnd is found exactly once,
    at most the one key each writer was creating when killed is there unreported, and the last
    reported key of each writer of this round encrypts and decrypts."""
    rounds = []
    for r in range(1, rnd + 1):
        with open(round_file(r)) as f:
            rounds.append((r, json.load(f)))
    lib = load()
    slots = lib.getSlotList(tokenPresent=True)
    check(len(slots) > 0, "C_GetSlotList after the crash", "slots", "none")
    bad = [(slot, rv_name(call_rv(lib.getTokenInfo, slot)[0])) for slot in slots]
    bad = [b for b in bad if b[1] != "CKR_OK"]
    check(not bad, "C_GetTokenInfo of every slot after the crash", "CKR_OK", bad)
    slot = slot_by_label(lib, os.environ["IT_LABEL"])
    if not check(slot is not None, "C_GetTokenInfo: the token opens after the crash",
                 "CKR_OK with its label", "not found"):
        return
    s = user_session(lib, slot)

    # Every token key, by label (to spot unreported or duplicated ones).
    on_token = {}
    for o in s.findObjects([(CKA_CLASS, CKO_SECRET_KEY), (CKA_TOKEN, CK_TRUE)]):
        label = s.getAttributeValue(o, [CKA_LABEL])[0]
        on_token[label] = on_token.get(label, 0) + 1
    total_reported = total_found = 0
    for r, children in rounds:
        for ch in children:
            missing = []
            found = 0
            for label in ch["labels"]:
                got = s.findObjects([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, label)])
                if len(got) == 1:
                    found += 1
                else:
                    missing.append("%s (%d objects)" % (label, len(got)))
            total_reported += len(ch["labels"])
            total_found += found
            check(not missing, "round %d writer %s: %d keys reported, %d found by C_FindObjects"
                  % (r, ch["prefix"], len(ch["labels"]), found), "all",
                  "missing or duplicated: " + ", ".join(missing[:10]))
            mine = sorted(l for l in on_token if l.startswith(ch["prefix"] + "-"))
            extra = sorted(set(mine) - set(ch["labels"]))
            # The writer numbers its keys 0, 1, ...: the one in flight follows the last reported.
            last = int(ch["labels"][-1].rsplit("-", 1)[1]) if ch["labels"] else -1
            in_flight = "%s-%06d" % (ch["prefix"], last + 1)
            check(extra in ([], [in_flight]),
                  "round %d writer %s: no key on the token beyond those reported but the one "
                  "in flight at the kill (%s)" % (r, ch["prefix"],
                                                  "present" if extra else "absent"),
                  "[] or [%s]" % in_flight, extra[:10])
            dup = [l for l in mine if on_token[l] != 1]
            check(not dup, "round %d writer %s: no label twice on the token" % (r, ch["prefix"]),
                  "none", dup[:10])
            if r == rnd and ch["labels"]:
                got = s.findObjects([(CKA_LABEL, ch["labels"][-1])])
                if got:
                    gcm_round_trip(s, got[0], "the last key %s reported" % ch["labels"][-1])
    print("# after round %d: %d keys reported, %d found; %d keys on the token"
          % (rnd, total_reported, total_found, sum(on_token.values())))
    # The token still takes writes after the crash.
    k = s.generateKey(key_template("after-round-%d" % rnd), Mechanism(CKM_AES_KEY_GEN, None))
    gcm_round_trip(s, k, "a key created after the crash")
    s.logout()
    s.closeSession()
    check(lib.lib.C_Finalize() == PyKCS11.CKR_OK, "C_Finalize", "CKR_OK", "an error")


# ---- damaged store ------------------------------------------------------------------------------

def token_labels():
    return ["it-rob-0", "it-rob-1"]


def phase_damage_init():
    """Two tokens (slots 0 and 1), each with one AES token key and a record encrypted under it."""
    lib = load()
    st = {}
    for want, label in enumerate(token_labels()):
        slot = new_token(lib, label)
        check(slot == want, "token %s is in slot %d" % (label, want), want, slot)
        s = user_session(lib, slot)
        key = s.generateKey(key_template("key-%d" % want), Mechanism(CKM_AES_KEY_GEN, None))
        iv = os.urandom(12)
        ct = bytes(s.encrypt(key, RECORD, AES_GCM_Mechanism(iv, AAD, 128)))
        st[str(slot)] = {"iv": iv.hex(), "ct": ct.hex()}
        s.logout()
        s.closeSession()
    with open(os.path.join(STATE, "damage.json"), "w") as f:
        json.dump(st, f)
    check(lib.lib.C_Finalize() == PyKCS11.CKR_OK, "C_Finalize", "CKR_OK", "an error")


def token_works(lib, slot, st):
    """The token in slot logs in, finds its key, decrypts the record made before and does a GCM
    round trip."""
    label = token_labels()[slot]
    rv, ti = call_rv(lib.getTokenInfo, slot)
    if not check(rv == PyKCS11.CKR_OK and ti.label.rstrip(" \x00") == label,
                 "slot %d: C_GetTokenInfo" % slot, "CKR_OK, label " + label,
                 rv_name(rv) if rv else ti.label.rstrip(" \x00")):
        return
    s = user_session(lib, slot)
    got = s.findObjects([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, "key-%d" % slot)])
    if check(len(got) == 1, "slot %d: C_FindObjects finds key-%d" % (slot, slot), 1, len(got)):
        rec = st[str(slot)]
        back = bytes(s.decrypt(got[0], bytes.fromhex(rec["ct"]),
                               AES_GCM_Mechanism(bytes.fromhex(rec["iv"]), AAD, 128)))
        check(back == RECORD, "slot %d: key-%d decrypts the record made before" % (slot, slot),
              "the record", "different bytes")
        gcm_round_trip(s, got[0], "slot %d: key-%d" % (slot, slot))
    s.logout()
    s.closeSession()


def expect_damage_rv(what, fn, *args):
    rv, _ = call_rv(fn, *args)
    return check(rv in DAMAGE_RVS, "%s -> %s" % (what, rv_name(rv)),
                 " or ".join(rv_name(r) for r in DAMAGE_RVS), rv_name(rv))


def phase_damage_check(variant):
    """A fresh process on a store whose token-1.db is damaged (variant 'intact': the control)."""
    with open(os.path.join(STATE, "damage.json")) as f:
        st = json.load(f)
    lib = load()
    rv, slots = call_rv(lib.getSlotList, True)
    if not check(rv == PyKCS11.CKR_OK and 0 in slots and 1 in slots,
                 "C_GetSlotList lists slots 0 and 1", "CKR_OK with 0 and 1",
                 rv_name(rv) if rv else slots):
        return
    rv, si = call_rv(lib.getSlotInfo, 1)
    check(rv == PyKCS11.CKR_OK and si.flags & CKF_TOKEN_PRESENT, "slot 1: C_GetSlotInfo",
          "CKR_OK, token present", rv_name(rv))
    if variant == "intact":
        token_works(lib, 1, st)
    else:
        expect_damage_rv("damaged slot 1: C_GetTokenInfo", lib.getTokenInfo, 1)
        expect_damage_rv("damaged slot 1: C_OpenSession (R/W)", lib.openSession, 1,
                         CKF_SERIAL_SESSION | CKF_RW_SESSION)
        expect_damage_rv("damaged slot 1: C_OpenSession (R/O)", lib.openSession, 1,
                         CKF_SERIAL_SESSION)
        # The SO PIN cannot be checked against a damaged file, so C_InitToken must not replace it.
        rv, _ = call_rv(lib.initToken, 1, SO_PIN, "it-rob-replaced".ljust(32))
        check(rv != PyKCS11.CKR_OK, "damaged slot 1: C_InitToken is refused",
              "an error", rv_name(rv))
    token_works(lib, 0, st)
    if variant != "intact":
        expect_damage_rv("damaged slot 1: C_GetTokenInfo again, after slot 0 was used",
                         lib.getTokenInfo, 1)
    check(lib.lib.C_Finalize() == PyKCS11.CKR_OK, "C_Finalize", "CKR_OK", "an error")


PHASES = {
    "init": (phase_init, str),
    "writer": (phase_writer, str),
    "crash": (phase_crash, int, int),
    "verify": (phase_verify, int),
    "damage-init": (phase_damage_init,),
    "damage-check": (phase_damage_check, str),
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in PHASES or \
            len(sys.argv) != len(PHASES[sys.argv[1]]) + 1:
        print("usage: robustness_test.py " + " | ".join(PHASES), file=sys.stderr)
        return 2
    fn, *types = PHASES[sys.argv[1]]
    try:
        fn(*(t(a) for t, a in zip(types, sys.argv[2:])))
    except PyKCS11Error as e:
        print("FAIL - unexpected %s" % rv_name(e.value))
        traceback.print_exc(file=sys.stdout)
        failures.append("exception")
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
