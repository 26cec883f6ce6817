#!/usr/bin/python3
# tests/integration/audit_trail_test.py: the audit trail (docs/audit.md) proven on the built module with
# PyKCS11 and ctypes (C_LoginUser and the "Vendor Custos" user management, which PyKCS11 cannot call).
# audit_trail.sh runs the phases and the CLI (`custos audit verify|export|clear-alerts`); this file
# drives the module, counts what it did, and checks the exported trail against those counts.
# Prints names, counts and verdicts, never a PIN, key, IV or plaintext: those go only to files in
# $IT_SECRET_DIR, which the "search" phase looks for in everything else the test wrote.
#
# Phases (argv[1]): setup LABEL | worker TAG ROUNDS | check-counts EXPORT RESULT... | alert |
#   check-alert EXPORT RESULT | badinput | check-badinput EXPORT RESULT | failclosed MODE WHEN |
#   fork-find | killed | syslog-run OUT | syslog-recv OUT | check-syslog OUT EXPORT | search REPORT FILE... |
#   control FILE
# Environment: CUSTOS_MODULE, CUSTOS_CONF, IT_STATE (a directory), IT_SECRET_DIR, IT_LABEL, the PINs
# IT_SO_PIN IT_USER_PIN IT_WRONG_PIN IT_DEC_PIN IT_GEN_PIN IT_AUD_PIN IT_OFF_PIN, IT_STORE.
import base64
import collections
import ctypes
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import traceback

from PyKCS11 import (
    AES_GCM_Mechanism, Mechanism, PyKCS11Error, PyKCS11Lib, CKR, CK_TRUE, CK_FALSE,
    CKA_CLASS, CKA_DECRYPT, CKA_ENCRYPT, CKA_EXTRACTABLE, CKA_ID, CKA_KEY_TYPE, CKA_LABEL,
    CKA_PRIVATE, CKA_SENSITIVE, CKA_SIGN, CKA_TOKEN, CKA_UNWRAP, CKA_VALUE, CKA_VALUE_LEN,
    CKA_VERIFY, CKA_WRAP, CKF_RW_SESSION, CKF_SERIAL_SESSION, CKF_TOKEN_INITIALIZED, CKK_AES,
    CKK_GENERIC_SECRET, CKM_AES_KEY_GEN, CKM_SHA256_HMAC, CKO_DATA, CKO_SECRET_KEY, CKU_SO,
    CKU_USER,
)

# PKCS#11 3.0 values PyKCS11 1.5.12 does not name.
CKR_ACTION_PROHIBITED = 0x1B
CKR_DEVICE_ERROR = 0x30
CKR_DEVICE_MEMORY = 0x31
CKR_OK = 0
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_LOCKED = 0xA4
CKR_ENCRYPTED_DATA_INVALID = 0x40
CKM_AES_KEY_WRAP_KWP = 0x210B
# custos.h
ROLE_ADMIN, ROLE_GENERATE, ROLE_DECRYPT, ROLE_AUDIT = 0x1, 0x2, 0x4, 0x8

MODULE = os.environ["CUSTOS_MODULE"]
STATE = os.environ.get("IT_STATE", "")
SECRET_DIR = os.environ.get("IT_SECRET_DIR", "")
LABEL = os.environ.get("IT_LABEL", "")
PIN = {k: os.environ.get("IT_%s_PIN" % k.upper(), "")
       for k in ("so", "user", "wrong", "dec", "dec2", "gen", "aud", "off")}
AADS = [b"tenant=%d,table=orders" % i for i in range(4)]
# Data operations, aggregated (docs/audit.md): encrypt, decrypt, sign, verify,
# and the session-key path of envelopes (a DEK generated, wrapped, unwrapped).
DATA_FUNCTIONS = ("C_Encrypt", "C_Decrypt", "C_Sign", "C_Verify", "C_GenerateKey", "C_WrapKey",
                  "C_UnwrapKey", "C_DestroyObject")

failures = []


def check(cond, what, expected="", got=""):
    if cond:
        print("ok   - " + what)
    else:
        print("FAIL - %s: expected %s, got %s" % (what, expected, got))
        failures.append(what)
    return cond


def rv_name(rv):
    names = {CKR_ACTION_PROHIBITED: "CKR_ACTION_PROHIBITED"}
    return names.get(rv) or CKR.get(rv, "0x%08X" % rv)


def call_rv(fn, *args):
    """(rv, result) of fn(*args): CKR_OK and the result, or the error's rv and None."""
    try:
        return CKR_OK, fn(*args)
    except PyKCS11Error as e:
        return e.value, None


def finish():
    print("# %d failure(s)" % len(failures))
    sys.exit(1 if failures else 0)


# ---- the module: PyKCS11 for the standard API, ctypes for C_LoginUser and "Vendor Custos" -------

class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_INTERFACE(ctypes.Structure):
    _fields_ = [("pInterfaceName", ctypes.c_char_p), ("pFunctionList", ctypes.c_void_p),
                ("flags", ctypes.c_ulong)]


UL = ctypes.c_ulong
P = ctypes.c_char_p
LOGIN_USER_T = ctypes.CFUNCTYPE(UL, UL, UL, P, UL, P, UL)


class CK_FUNCTION_LIST_3_0_HEAD(ctypes.Structure):
    # The 68 functions of 2.40, then C_GetInterfaceList, C_GetInterface, C_LoginUser (3.0 sec. 5.4).
    _fields_ = [("version", CK_VERSION)] + [("f%d" % i, ctypes.c_void_p) for i in range(70)] + \
        [("C_LoginUser", LOGIN_USER_T)]


class CK_CUSTOS_USER_INFO(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 64), ("roles", UL), ("flags", UL), ("failures", UL)]


class CK_CUSTOS_FUNCTION_LIST(ctypes.Structure):
    _fields_ = [("version", CK_VERSION),
                ("C_CustosUserAdd", ctypes.CFUNCTYPE(UL, UL, P, UL, UL, P, UL)),
                ("C_CustosUserRemove", ctypes.CFUNCTYPE(UL, UL, P, UL)),
                ("C_CustosUserSetRoles", ctypes.CFUNCTYPE(UL, UL, P, UL, UL)),
                ("C_CustosUserSetPIN", ctypes.CFUNCTYPE(UL, UL, P, UL, P, UL)),
                ("C_CustosUserEnable", ctypes.CFUNCTYPE(UL, UL, P, UL, ctypes.c_ubyte)),
                ("C_CustosUserList", ctypes.CFUNCTYPE(UL, UL, ctypes.POINTER(CK_CUSTOS_USER_INFO),
                                                      ctypes.POINTER(UL)))]


class Ext:
    """C_LoginUser and the Custos user management, through C_GetInterface on the module that
    PyKCS11 loaded (dlopen of the same path gives the same instance, so session handles agree)."""

    def __init__(self):
        self.dll = ctypes.CDLL(MODULE)
        gi = self.dll.C_GetInterface
        gi.restype = UL
        gi.argtypes = [P, ctypes.POINTER(CK_VERSION), ctypes.POINTER(ctypes.POINTER(CK_INTERFACE)),
                       UL]
        iface = ctypes.POINTER(CK_INTERFACE)()
        rv = gi(b"PKCS 11", ctypes.byref(CK_VERSION(3, 0)), ctypes.byref(iface), 0)
        if rv != CKR_OK:
            raise RuntimeError("C_GetInterface(PKCS 11, 3.0): %s" % rv_name(rv))
        fl = ctypes.cast(iface.contents.pFunctionList,
                         ctypes.POINTER(CK_FUNCTION_LIST_3_0_HEAD)).contents
        # The list's C_GetInterface must be the exported one: the layout above is right.
        if fl.f69 != ctypes.cast(gi, ctypes.c_void_p).value:
            raise RuntimeError("CK_FUNCTION_LIST_3_0 layout mismatch")
        self.c_login_user = fl.C_LoginUser
        rv = gi(b"Vendor Custos", ctypes.byref(CK_VERSION(1, 0)), ctypes.byref(iface), 0)
        if rv != CKR_OK:
            raise RuntimeError("C_GetInterface(Vendor Custos, 1.0): %s" % rv_name(rv))
        self.v = ctypes.cast(iface.contents.pFunctionList,
                             ctypes.POINTER(CK_CUSTOS_FUNCTION_LIST)).contents

    def login_user(self, s, user_type, pin, name):
        p, n = pin.encode(), name.encode()
        return self.c_login_user(handle(s), user_type, p, len(p), n, len(n))

    def user_add(self, s, name, roles, pin):
        n, p = name.encode(), pin.encode()
        return self.v.C_CustosUserAdd(handle(s), n, len(n), roles, p, len(p))

    def user_enable(self, s, name, enabled):
        n = name.encode()
        return self.v.C_CustosUserEnable(handle(s), n, len(n), 1 if enabled else 0)

    def user_list(self, s):
        count = UL(0)
        rv = self.v.C_CustosUserList(handle(s), None, ctypes.byref(count))
        if rv != CKR_OK:
            return rv, []
        arr = (CK_CUSTOS_USER_INFO * count.value)()
        rv = self.v.C_CustosUserList(handle(s), arr, ctypes.byref(count))
        return rv, [(u.name.decode(), u.roles, u.flags) for u in arr[:count.value]]


def handle(s):
    return int(s.session.value())


def load():
    lib = PyKCS11Lib()
    lib.load(MODULE)
    return lib


def slot_by_label(lib, label):
    for slot in lib.getSlotList(tokenPresent=True):
        rv, ti = call_rv(lib.getTokenInfo, slot)
        if rv == CKR_OK and ti.flags & CKF_TOKEN_INITIALIZED and \
                ti.label.rstrip(" \x00") == label:
            return slot
    raise RuntimeError("token %s not found" % label)


def open_rw(lib):
    return lib.openSession(slot_by_label(lib, LABEL), CKF_SERIAL_SESSION | CKF_RW_SESSION)


def find_key(s, label):
    found = s.findObjects([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, label)])
    if len(found) != 1:
        raise RuntimeError("key %s: %d found" % (label, len(found)))
    return found[0]


def count_label(s, label):
    return len(s.findObjects([(CKA_LABEL, label)]))


def hmac_mech():
    return Mechanism(CKM_SHA256_HMAC, None)


def session_key_template(label):
    return [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
            (CKA_TOKEN, CK_FALSE), (CKA_SENSITIVE, CK_TRUE), (CKA_EXTRACTABLE, CK_TRUE),
            (CKA_ENCRYPT, CK_TRUE), (CKA_DECRYPT, CK_TRUE), (CKA_LABEL, label)]


def token_key_template(label):
    t = session_key_template(label)
    t[3] = (CKA_TOKEN, CK_TRUE)
    return t


def finalize(lib):
    lib.lib.C_Finalize()


# ---- secrets: written only to $IT_SECRET_DIR --------------------------------------------------

def secret_path(name):
    return os.path.join(SECRET_DIR, name)


def put_secret(name, data):
    fd = os.open(secret_path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def plaintexts(tag, n=256):
    """n random plaintexts of 16..64 bytes, kept (length-prefixed) as pts-TAG.bin."""
    pts = [os.urandom(random.randint(16, 64)) for _ in range(n)]
    put_secret("pts-%s.bin" % tag, b"".join(struct.pack(">H", len(p)) + p for p in pts))
    return pts


def read_secrets():
    """Every secret of the run as (kind, bytes)."""
    out = []
    for name in sorted(os.listdir(SECRET_DIR)):
        with open(secret_path(name), "rb") as f:
            data = f.read()
        if name.endswith(".key"):
            out.append(("key", data))
        elif name.startswith("ivs-"):
            out += [("iv", data[i:i + 12]) for i in range(0, len(data), 12)]
        elif name.startswith("pts-"):
            i = 0
            while i < len(data):
                n = struct.unpack(">H", data[i:i + 2])[0]
                out.append(("plaintext", data[i + 2:i + 2 + n]))
                i += 2 + n
    out += [("pin", p.encode()) for p in PIN.values() if p]
    return out


def gcm(iv, aad):
    return AES_GCM_Mechanism(iv, aad, 128)


# ---- setup ---------------------------------------------------------------------------------------

def phase_setup(label):
    lib = load()
    slot = None
    for sl in lib.getSlotList(tokenPresent=True):
        if not lib.getTokenInfo(sl).flags & CKF_TOKEN_INITIALIZED:
            slot = sl
            break
    lib.initToken(slot, PIN["so"], label.ljust(32))
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(PIN["so"], user_type=CKU_SO)
    s.initPin(PIN["user"])
    ext = Ext()
    for name, roles in (("dec", ROLE_DECRYPT), ("dec2", ROLE_DECRYPT), ("gen", ROLE_GENERATE),
                        ("aud", ROLE_AUDIT), ("off", ROLE_DECRYPT)):
        rv = ext.user_add(s, name, roles, PIN[name])
        check(rv == CKR_OK, "C_CustosUserAdd %s (roles 0x%x)" % (name, roles), "CKR_OK", rv_name(rv))
    rv = ext.user_enable(s, "off", False)
    check(rv == CKR_OK, "C_CustosUserEnable off FALSE", "CKR_OK", rv_name(rv))
    rv, users = ext.user_list(s)
    print("# users: " + ", ".join("%s(roles 0x%x flags 0x%x)" % u for u in users))
    s.logout()
    s.login(PIN["user"])
    # The test's known keys: imported so that their bytes can be searched for.
    aes, mac = os.urandom(32), os.urandom(32)
    put_secret("aes.key", aes)
    put_secret("hmac.key", mac)
    h_aes = s.createObject([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, CK_TRUE),
                    (CKA_PRIVATE, CK_TRUE), (CKA_SENSITIVE, CK_TRUE), (CKA_EXTRACTABLE, CK_FALSE),
                    (CKA_ENCRYPT, CK_TRUE), (CKA_DECRYPT, CK_TRUE), (CKA_WRAP, CK_TRUE),
                    (CKA_UNWRAP, CK_TRUE), (CKA_LABEL, "it-aes"), (CKA_ID, b"\xa1"),
                    (CKA_VALUE, aes)])
    h_mac = s.createObject([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    (CKA_TOKEN, CK_TRUE), (CKA_PRIVATE, CK_TRUE), (CKA_SENSITIVE, CK_TRUE),
                    (CKA_EXTRACTABLE, CK_FALSE), (CKA_SIGN, CK_TRUE), (CKA_VERIFY, CK_TRUE),
                    (CKA_LABEL, "it-hmac"), (CKA_ID, b"\xa2"), (CKA_VALUE, mac)])
    print("# imported it-aes (AES-256) and it-hmac (256-bit generic secret)")
    # The handles the client got, for check-counts: the records of these creations (written
    # through the token's audit outbox) must name exactly these.
    with open(os.path.join(STATE, "setup-handles.json"), "w") as f:
        json.dump({"it-aes": int(h_aes.value()), "it-hmac": int(h_mac.value())}, f)
    s.logout()
    s.closeSession()
    finalize(lib)
    finish()


# ---- 1. the mixed load -----------------------------------------------------------------------------

def expect_fail(fn, want, *args):
    rv, _ = call_rv(fn, *args)
    if rv != want:
        raise RuntimeError("%s: expected %s, got %s" % (fn.__name__, rv_name(want), rv_name(rv)))


def phase_worker(tag, rounds):
    """One process's share of the load: per round a GCM encrypt and decrypt (AAD, fresh IV) and an
    HMAC sign and verify; every 250 rounds a session key generated, wrapped and unwrapped with KWP and
    both destroyed; every 1000 rounds a wrong PIN, a login as the decrypt-only user who decrypts,
    is refused encrypt/sign/token-key generation and fails one GCM tag, and a login back."""
    lib = load()
    s = open_rw(lib)
    s.login(PIN["user"])
    ext = Ext()
    k_aes, k_mac = find_key(s, "it-aes"), find_key(s, "it-hmac")
    pts = plaintexts(tag)
    ivs = bytearray()
    n = collections.Counter(login_ok=1)
    kwp = Mechanism(CKM_AES_KEY_WRAP_KWP, None)
    hm = hmac_mech()
    t0 = time.monotonic()
    saved = None
    for i in range(rounds):
        pt = pts[i & 255]
        aad = AADS[i & 3]
        iv = os.urandom(12)
        ivs += iv
        m = gcm(iv, aad)
        ct = s.encrypt(k_aes, pt, m)
        back = s.decrypt(k_aes, ct, m)
        sig = s.sign(k_mac, pt, hm)
        good = s.verify(k_mac, pt, sig, hm)
        if bytes(back) != pt or not good:
            raise RuntimeError("round %d: GCM round trip or HMAC verify failed" % i)
        n["C_Encrypt"] += 1
        n["C_Decrypt"] += 1
        n["C_Sign"] += 1
        n["C_Verify"] += 1
        if saved is None:
            saved = (bytes(ct), iv, aad, pt)
        if i % 250 == 249:
            k = s.generateKey(session_key_template("w%s-dek" % tag), Mechanism(CKM_AES_KEY_GEN))
            wrapped = s.wrapKey(k_aes, k, kwp)
            k2 = s.unwrapKey(k_aes, wrapped, session_key_template("w%s-dek2" % tag), kwp)
            s.destroyObject(k2)
            s.destroyObject(k)
            n["C_GenerateKey"] += 1
            n["C_WrapKey"] += 1
            n["C_UnwrapKey"] += 1
            n["C_DestroyObject"] += 2
        if i % 1000 == 999:
            # The last operation before the logout is the very decrypt user dec does next: the
            # records must still split by user (a run is one user's).
            sct, siv, saad, spt = saved
            if bytes(s.decrypt(k_aes, sct, gcm(siv, saad))) != spt:
                raise RuntimeError("user: decrypt gave other bytes")
            n["C_Decrypt"] += 1
            s.logout()
            rv = ext.login_user(s, CKU_USER, PIN["wrong"], "user")
            if rv != CKR_PIN_INCORRECT:
                raise RuntimeError("wrong PIN for user: %s" % rv_name(rv))
            n["login_wrong"] += 1
            rv = ext.login_user(s, CKU_USER, PIN["dec"], "dec")
            if rv != CKR_OK:
                raise RuntimeError("C_LoginUser dec: %s" % rv_name(rv))
            n["login_ok"] += 1
            # Object handles are not promised across logins (PKCS#11 3.2 sec. 2.4): find again.
            k_aes, k_mac = find_key(s, "it-aes"), find_key(s, "it-hmac")
            sct, siv, saad, spt = saved
            for _ in range(20):
                if bytes(s.decrypt(k_aes, sct, gcm(siv, saad))) != spt:
                    raise RuntimeError("dec: decrypt gave other bytes")
                n["C_Decrypt"] += 1
            # dec2 has the same roles: the same decrypt right after dec's is still dec2's record.
            s.logout()
            if ext.login_user(s, CKU_USER, PIN["dec2"], "dec2") != CKR_OK:
                raise RuntimeError("C_LoginUser dec2 failed")
            k_aes = find_key(s, "it-aes")
            for _ in range(5):
                if bytes(s.decrypt(k_aes, sct, gcm(siv, saad))) != spt:
                    raise RuntimeError("dec2: decrypt gave other bytes")
                n["C_Decrypt"] += 1
            s.logout()
            if ext.login_user(s, CKU_USER, PIN["dec"], "dec") != CKR_OK:
                raise RuntimeError("C_LoginUser dec failed")
            n["login_ok"] += 2
            k_aes, k_mac = find_key(s, "it-aes"), find_key(s, "it-hmac")
            expect_fail(s.encrypt, CKR_ACTION_PROHIBITED, k_aes, spt, gcm(os.urandom(12), saad))
            expect_fail(s.encrypt, CKR_ACTION_PROHIBITED, k_aes, spt, gcm(os.urandom(12), saad))
            expect_fail(s.sign, CKR_ACTION_PROHIBITED, k_mac, spt, hm)
            expect_fail(s.generateKey, CKR_ACTION_PROHIBITED, token_key_template("w%s-refused" % tag),
                        Mechanism(CKM_AES_KEY_GEN))
            n["refused"] += 4
            expect_fail(s.decrypt, CKR_ENCRYPTED_DATA_INVALID, k_aes, sct, gcm(siv, b"other aad"))
            n["gcm_bad"] += 1
            s.logout()
            s.login(PIN["user"])
            n["login_ok"] += 1
            k_aes, k_mac = find_key(s, "it-aes"), find_key(s, "it-hmac")
    s.logout()
    s.closeSession()
    finalize(lib)
    secs = time.monotonic() - t0
    put_secret("ivs-%s.bin" % tag, bytes(ivs))
    total = sum(n.values())
    result = {"tag": tag, "pid": os.getpid(), "counts": dict(n), "total": total,
              "seconds": round(secs, 2)}
    with open(os.path.join(STATE, "worker-%s.json" % tag), "w") as f:
        json.dump(result, f)
    print("# worker %s (pid %d): %d operations in %.1f s (%s)" %
          (tag, os.getpid(), total, secs, ", ".join("%s %d" % kv for kv in sorted(n.items()))))
    finish()


def load_export(path):
    recs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    return recs


def phase_check_counts(export, result_files):
    recs = load_export(export)
    results = []
    for rf in result_files:
        with open(rf) as f:
            results.append(json.load(f))
    total_ops = sum(r["total"] for r in results)
    data_ops = sum(r["counts"].get(fn, 0) for r in results for fn in DATA_FUNCTIONS)
    pids = {r["pid"] for r in results}
    mine = [r for r in recs if r["pid"] in pids]
    with open(os.path.join(STATE, "setup-handles.json")) as f:
        made = json.load(f)
    for label, h in sorted(made.items()):
        got = [r["key_handle"] for r in recs if r["function"] == "C_CreateObject" and
               r["rv"] == "CKR_OK" and r["key_label"] == label]
        check(got == [h], "the C_CreateObject record of %s names the handle the client got "
              "(0x%x, via the outbox)" % (label, h), [h], got)
    data = [r for r in mine if r["kind"] == "data"]
    print("# export: %d records; the workers' (pids %s): %d, of them %d data records "
          "(aggregates) standing for %d data operations" %
          (len(recs), sorted(pids), len(mine), len(data), sum(r["count"] for r in data)))
    check(total_ops >= 100000, "the workers performed at least 100,000 operations", ">= 100000",
          total_ops)
    check(sum(r["count"] for r in data) == data_ops,
          "sum of count over data records == data operations performed (%d)" % data_ops,
          data_ops, sum(r["count"] for r in data))
    bad = [r["seq"] for r in data if r["rv"] != "CKR_OK" or r["decision"] != "allowed"]
    check(not bad, "every data record is CKR_OK / allowed", "none other", bad[:5])
    seqs = [r["seq"] for r in recs]
    check(seqs == list(range(1, len(recs) + 1)), "export seq runs 1..%d without a gap" % len(recs),
          "contiguous", "gaps")
    for res in results:
        pid, c = res["pid"], res["counts"]
        rs = [r for r in recs if r["pid"] == pid]
        for fn in DATA_FUNCTIONS:
            got = sum(r["count"] for r in rs if r["kind"] == "data" and r["function"] == fn)
            check(got == c.get(fn, 0), "worker %s: %s count sum" % (res["tag"], fn), c.get(fn, 0), got)
        agg = [r for r in rs if r["kind"] == "data" and r["count"] > 1]
        check(len(agg) > 0 and len([r for r in rs if r["kind"] == "data"]) < c["C_Encrypt"],
              "worker %s: data operations were aggregated (%d data records)" %
              (res["tag"], len([r for r in rs if r["kind"] == "data"])), "aggregates", "none")

        def nrec(pred):
            return sum(r["count"] for r in rs if pred(r))
        for fn in ("C_GenerateKey", "C_WrapKey", "C_UnwrapKey", "C_DestroyObject"):
            got = nrec(lambda r, fn=fn: r["function"] == fn and r["rv"] == "CKR_OK")
            check(got == c.get(fn, 0), "worker %s: %s records (CKR_OK)" % (res["tag"], fn),
                  c.get(fn, 0), got)
        got = nrec(lambda r: r["function"] == "C_LoginUser" and r["rv"] == "CKR_PIN_INCORRECT"
                   and r["decision"].startswith("denied"))
        check(got == c.get("login_wrong", 0), "worker %s: wrong-PIN records" % res["tag"],
              c.get("login_wrong", 0), got)
        got = nrec(lambda r: r["function"] in ("C_Login", "C_LoginUser") and r["rv"] == "CKR_OK")
        check(got == c.get("login_ok", 0), "worker %s: successful login records" % res["tag"],
              c.get("login_ok", 0), got)
        got = nrec(lambda r: r["rv"] == "CKR_ACTION_PROHIBITED" and r["decision"].startswith("denied")
                   and r["token_user"] == "dec")
        check(got == c.get("refused", 0), "worker %s: refusals of the decrypt-only user" % res["tag"],
              c.get("refused", 0), got)
        got = nrec(lambda r: r["function"] == "C_Decrypt" and r["rv"] == "CKR_ENCRYPTED_DATA_INVALID")
        check(got == c.get("gcm_bad", 0), "worker %s: failed GCM tag records" % res["tag"],
              c.get("gcm_bad", 0), got)
        # Which key: a data record of a token key, or a failed tag, names the key by its label
        # and CKA_ID (the names are copied into a record only when it is written).
        named = {"C_Encrypt": ("it-aes", "a1"), "C_Decrypt": ("it-aes", "a1"),
                 "C_Sign": ("it-hmac", "a2"), "C_Verify": ("it-hmac", "a2")}
        wrong = [r["seq"] for r in rs if r["function"] in named and r["key_handle"] != 0 and
                 (r["key_label"], r["key_id"]) != named[r["function"]]]
        check(not wrong, "worker %s: data and failed-tag records name their key (label, id)" %
              res["tag"], "all", wrong[:5])
        unnamed = [r["seq"] for r in rs if r["function"] in named and r["key_handle"] == 0]
        check(not unnamed, "worker %s: data records carry the key handle" % res["tag"], "all",
              unnamed[:5])
        dec = sum(r["count"] for r in rs if r["kind"] == "data" and r["token_user"] == "dec")
        check(dec == 20 * c.get("login_wrong", 0), "worker %s: decrypts recorded for user dec" %
              res["tag"], 20 * c.get("login_wrong", 0), dec)
        dec2 = sum(r["count"] for r in rs if r["kind"] == "data" and r["token_user"] == "dec2")
        check(dec2 == 5 * c.get("login_wrong", 0), "worker %s: decrypts recorded for user dec2 "
              "(same roles, same key and resource as dec's just before)" % res["tag"],
              5 * c.get("login_wrong", 0), dec2)
    spans = [(min(r["first_us"] for r in recs if r["pid"] == res["pid"]),
              max(r["last_us"] for r in recs if r["pid"] == res["pid"])) for res in results]
    check(max(a for a, _ in spans) < min(b for _, b in spans),
          "the workers' records overlap in time (the processes ran at once)", "overlap", spans)
    print("# figures: %d operations by %d processes, %d data operations in %d data records" %
          (total_ops, len(results), data_ops, len([r for r in recs if r["kind"] == "data"
                                                    and r["pid"] in pids])))
    finish()


# ---- 3. the decrypt-spike alert ---------------------------------------------------------------------

def phase_alert():
    """60 decrypts by `user` under decrypt_per_user = 50, action = deny; then wait for the shell to
    run `custos audit clear-alerts` and decrypt again."""
    lib = load()
    s = open_rw(lib)
    s.login(PIN["user"])
    k = find_key(s, "it-aes")
    pt = plaintexts("alert", 1)[0]
    iv = os.urandom(12)
    put_secret("ivs-alert.bin", iv)
    ct = bytes(s.encrypt(k, pt, gcm(iv, AADS[0])))
    rvs = [call_rv(s.decrypt, k, ct, gcm(iv, AADS[0]))[0] for _ in range(60)]
    allowed = sum(1 for rv in rvs if rv == CKR_OK)
    first_refused = next((i + 1 for i, rv in enumerate(rvs) if rv != CKR_OK), None)
    print("# 60 decrypts: %d allowed, first refusal at decrypt %s (%s)" %
          (allowed, first_refused, rv_name(rvs[-1])))
    check(allowed == 50 and all(rv == CKR_ACTION_PROHIBITED for rv in rvs[50:]),
          "decrypts 1-50 allowed, 51-60 refused with CKR_ACTION_PROHIBITED", "50 then refused",
          [rv_name(rv) for rv in rvs[48:53]])
    # Still refused a second later (the window is 60 s).
    time.sleep(1.1)
    rv = call_rv(s.decrypt, k, ct, gcm(iv, AADS[0]))[0]
    check(rv == CKR_ACTION_PROHIBITED, "a decrypt 1 s later is still refused", "CKR_ACTION_PROHIBITED",
          rv_name(rv))
    refused = 10 + 1
    # The audit file's -wal while a writer has it open: kept for the secret search.
    for suffix in ("", "-wal"):
        src = os.path.join(os.environ["IT_STORE"], "token-0.audit.db" + suffix)
        if os.path.exists(src):
            with open(src, "rb") as f, open(os.path.join(STATE, "snapshot-audit.db" + suffix),
                                              "wb") as g:
                g.write(f.read())
    open(os.path.join(STATE, "alert-ready"), "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(STATE, "alert-cleared")) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(os.path.exists(os.path.join(STATE, "alert-cleared")), "the shell cleared the alerts",
          "alert-cleared", "timeout")
    # Processes look for a clearing at most once a second while they refuse.
    t0 = time.monotonic()
    rv = None
    while time.monotonic() - t0 < 5:
        rv = call_rv(s.decrypt, k, ct, gcm(iv, AADS[0]))[0]
        if rv == CKR_OK:
            break
        refused += 1
        time.sleep(0.1)
    lifted = time.monotonic() - t0
    check(rv == CKR_OK, "after clear-alerts decrypts are allowed again (after %.2f s)" % lifted,
          "CKR_OK", rv_name(rv))
    more = [call_rv(s.decrypt, k, ct, gcm(iv, AADS[0]))[0] for _ in range(20)]
    check(all(r == CKR_OK for r in more), "20 more decrypts after clearing are allowed", "CKR_OK",
          sorted({rv_name(r) for r in more}))
    s.logout()
    s.closeSession()
    finalize(lib)
    with open(os.path.join(STATE, "alert.json"), "w") as f:
        json.dump({"pid": os.getpid(), "allowed": allowed + 1 + 20, "refused": refused}, f)
    finish()


def phase_check_alert(export, result):
    recs = load_export(export)
    with open(result) as f:
        res = json.load(f)
    rs = [r for r in recs if r["pid"] == res["pid"]]
    alerts = [r for r in rs if r["kind"] == "alert"]
    for r in alerts:
        print("# alert record %d: token_user %s, rv %s, decision '%s'" %
              (r["seq"], r["token_user"], r["rv"], r["decision"]))
    check(len(alerts) == 1 and alerts[0]["token_user"] == "user" and
          alerts[0]["decision"].startswith("denied: decrypt rate above 50 per 60 s") and
          alerts[0]["rv"] == "CKR_ACTION_PROHIBITED",
          "one alert record (kind alert) for user 'user': denied, above 50 per 60 s", 1, len(alerts))
    refusals = [r for r in rs if r["kind"] == "event" and r["rv"] == "CKR_ACTION_PROHIBITED"
                and r["function"] == "C_DecryptInit"]
    check(sum(r["count"] for r in refusals) == res["refused"] and
          all(r["decision"].startswith("denied") for r in refusals),
          "each refused decrypt is a denied C_DecryptInit record", res["refused"],
          sum(r["count"] for r in refusals))
    allowed = sum(r["count"] for r in rs if r["kind"] == "data" and r["function"] == "C_Decrypt")
    check(allowed == res["allowed"], "allowed decrypts counted", res["allowed"], allowed)
    cleared = [r for r in recs if r["function"] == "custos audit clear-alerts"]
    check(any(r["token_user"] == "so" and r["rv"] == "CKR_OK" and "admin" in r["roles"]
              for r in cleared), "an event record names the admin who cleared the alerts",
          "so, CKR_OK", [(r["token_user"], r["rv"]) for r in cleared])
    if alerts and cleared:
        check(alerts[0]["seq"] < cleared[-1]["seq"], "the clearing comes after the alert",
              "later", "earlier")
    finish()


# ---- 4. bad input ------------------------------------------------------------------------------------

def phase_badinput():
    lib = load()
    s = open_rw(lib)
    ext = Ext()
    cases = []

    def expect_rv(what, want, rv, function, user):
        check(rv == want, what, rv_name(want), rv_name(rv))
        cases.append({"what": what, "function": function, "rv": rv_name(want), "user": user})

    # The correct PIN of `user` under another name is still no login.
    expect_rv("C_LoginUser of an unknown user -> CKR_PIN_INCORRECT", CKR_PIN_INCORRECT,
              ext.login_user(s, CKU_USER, PIN["user"], "nosuchuser"), "C_LoginUser", "nosuchuser")
    rv, _ = call_rv(s.login, PIN["wrong"])
    expect_rv("C_Login with a wrong PIN -> CKR_PIN_INCORRECT", CKR_PIN_INCORRECT, rv, "C_Login", None)
    expect_rv("C_LoginUser dec with a wrong PIN -> CKR_PIN_INCORRECT", CKR_PIN_INCORRECT,
              ext.login_user(s, CKU_USER, PIN["wrong"], "dec"), "C_LoginUser", "dec")
    expect_rv("C_LoginUser of the disabled user off -> CKR_PIN_LOCKED", CKR_PIN_LOCKED,
              ext.login_user(s, CKU_USER, PIN["off"], "off"), "C_LoginUser", "off")
    rv, _ = call_rv(s.login, PIN["off"])
    expect_rv("C_Login with the disabled user's PIN -> CKR_PIN_LOCKED", CKR_PIN_LOCKED, rv,
              "C_Login", None)

    rv = ext.login_user(s, CKU_USER, PIN["dec"], "dec")
    check(rv == CKR_OK, "C_LoginUser dec", "CKR_OK", rv_name(rv))
    k, h = find_key(s, "it-aes"), find_key(s, "it-hmac")
    iv = os.urandom(12)
    put_secret("ivs-badinput.bin", iv)
    pt = plaintexts("badinput", 1)[0]
    rv, _ = call_rv(s.encrypt, k, pt, gcm(iv, AADS[1]))
    expect_rv("decrypt-only user: C_EncryptInit -> CKR_ACTION_PROHIBITED", CKR_ACTION_PROHIBITED,
              rv, "C_EncryptInit", "dec")
    rv, _ = call_rv(s.sign, h, pt, hmac_mech())
    expect_rv("decrypt-only user: C_SignInit -> CKR_ACTION_PROHIBITED", CKR_ACTION_PROHIBITED, rv,
              "C_SignInit", "dec")
    s.logout()
    rv = ext.login_user(s, CKU_USER, PIN["gen"], "gen")
    check(rv == CKR_OK, "C_LoginUser gen", "CKR_OK", rv_name(rv))
    k = find_key(s, "it-aes")
    ct = bytes(s.encrypt(k, pt, gcm(iv, AADS[1])))
    rv, _ = call_rv(s.decrypt, k, ct, gcm(iv, AADS[1]))
    expect_rv("generate-only user: C_DecryptInit -> CKR_ACTION_PROHIBITED", CKR_ACTION_PROHIBITED,
              rv, "C_DecryptInit", "gen")
    s.logout()
    s.login(PIN["so"], user_type=CKU_SO)
    k = find_key(s, "it-aes")
    rv, _ = call_rv(s.encrypt, k, pt, gcm(os.urandom(12), AADS[1]))
    expect_rv("admin: C_EncryptInit -> CKR_ACTION_PROHIBITED", CKR_ACTION_PROHIBITED, rv,
              "C_EncryptInit", "so")
    s.logout()
    s.closeSession()
    finalize(lib)
    with open(os.path.join(STATE, "badinput.json"), "w") as f:
        json.dump({"pid": os.getpid(), "cases": cases}, f)
    finish()


def phase_check_badinput(export, result):
    recs = load_export(export)
    with open(result) as f:
        res = json.load(f)
    rs = [r for r in recs if r["pid"] == res["pid"]]
    used = set()
    for c in res["cases"]:
        hit = [r for r in rs if r["seq"] not in used and r["function"] == c["function"] and
               r["rv"] == c["rv"] and r["decision"].startswith("denied") and
               (c["user"] is None or r["token_user"] == c["user"])]
        if check(len(hit) >= 1, "record: %s (function %s, rv %s, decision denied)" %
                 (c["what"], c["function"], c["rv"]), "a record", "none"):
            used.add(hit[0]["seq"])
            print("#   record %d: token_user '%s', decision '%s'" %
                  (hit[0]["seq"], hit[0]["token_user"], hit[0]["decision"]))
    finish()


# ---- 4b. fail closed ---------------------------------------------------------------------------------

def audit_file():
    return os.path.join(os.environ["IT_STORE"], "token-0.audit.db")


def break_audit_file():
    """Replace the audit file by a directory of the same name (root cannot be kept out of a
    file by its mode, but nobody can open a directory as an SQLite database)."""
    aside = os.path.join(os.environ["IT_STORE"], "aside")
    os.makedirs(aside, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(audit_file() + suffix):
            os.rename(audit_file() + suffix, os.path.join(aside, "token-0.audit.db" + suffix))
    os.mkdir(audit_file())


def mend_audit_file():
    aside = os.path.join(os.environ["IT_STORE"], "aside")
    os.rmdir(audit_file())
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(aside, "token-0.audit.db" + suffix)):
            os.rename(os.path.join(aside, "token-0.audit.db" + suffix), audit_file() + suffix)


def fork_cycle():
    """fork(): the module closes its audit connections around it (each reconnects on next use)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def phase_failclosed(mode, when):
    """mode required|optional; when open (the audit file is a directory before the module opens
    it: the shell did that) or mid (it turns into one while the process works)."""
    required = mode == "required"
    refused = (CKR_DEVICE_ERROR, CKR_DEVICE_MEMORY)
    lib = load()
    s = open_rw(lib)
    iv = os.urandom(12)
    put_secret("ivs-fc-%s-%s.bin" % (mode, when), iv)
    pt = plaintexts("fc-%s-%s" % (mode, when), 1)[0]
    if when == "open":
        rv, _ = call_rv(s.login, PIN["user"])
        if required:
            check(rv in refused, "required, audit file unusable: C_Login refused (%s)" % rv_name(rv),
                  "CKR_DEVICE_ERROR or CKR_DEVICE_MEMORY", rv_name(rv))
            rv, _ = call_rv(s.createObject, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, CK_FALSE),
                                             (CKA_PRIVATE, CK_FALSE), (CKA_LABEL, "fc-data"),
                                             (CKA_VALUE, b"x")])
            check(rv in refused, "required, audit file unusable: C_CreateObject (public data) "
                  "refused (%s)" % rv_name(rv), "CKR_DEVICE_ERROR or CKR_DEVICE_MEMORY", rv_name(rv))
        else:
            check(rv == CKR_OK, "not required, audit file unusable: C_Login goes on", "CKR_OK",
                  rv_name(rv))
            k = find_key(s, "it-aes")
            ct = bytes(s.encrypt(k, pt, gcm(iv, AADS[2])))
            back = bytes(s.decrypt(k, ct, gcm(iv, AADS[2])))
            check(back == pt, "not required, audit file unusable: GCM encrypt and decrypt go on",
                  "round trip", "different")
            s.logout()
        s.closeSession()
        finalize(lib)
        finish()
    s.login(PIN["user"])
    k = find_key(s, "it-aes")
    for _ in range(5):
        ct = bytes(s.encrypt(k, pt, gcm(iv, AADS[2])))
        s.decrypt(k, ct, gcm(iv, AADS[2]))
    print("# 5 encrypts and 5 decrypts before the audit file broke (aggregated, pending)")
    fork_cycle()
    # Touch the token store first: a C_FindObjectsInit as the first store use after fork() is
    # checked on its own (phase fork-find); here the subject is the audit file.
    lib.getTokenInfo(slot_by_label(lib, LABEL))
    break_audit_file()
    rv, obj = call_rv(s.generateKey, token_key_template("fc-gen"), Mechanism(CKM_AES_KEY_GEN))
    if required:
        check(rv in refused, "required, audit file broke mid-run: C_GenerateKey (token key) refused "
              "(%s)" % rv_name(rv),
              "CKR_DEVICE_ERROR or CKR_DEVICE_MEMORY", rv_name(rv))
        rv2, _ = call_rv(s.encrypt, k, pt, gcm(os.urandom(12), AADS[2]))
        check(rv2 in refused, "required, audit file broke mid-run: then C_EncryptInit refused (%s)"
              % rv_name(rv2),
              "CKR_DEVICE_ERROR or CKR_DEVICE_MEMORY", rv_name(rv2))
        rv3, _ = call_rv(s.decrypt, k, ct, gcm(iv, AADS[2]))
        check(rv3 in refused, "required, audit file broke mid-run: then C_DecryptInit refused (%s)"
              % rv_name(rv3),
              "CKR_DEVICE_ERROR or CKR_DEVICE_MEMORY", rv_name(rv3))
    else:
        check(rv == CKR_OK, "not required, audit file broke mid-run: C_GenerateKey goes on",
              "CKR_OK", rv_name(rv))
        ct2 = bytes(s.encrypt(k, pt, gcm(iv, AADS[3])))
        check(bytes(s.decrypt(k, ct2, gcm(iv, AADS[3]))) == pt,
              "not required, audit file broke mid-run: GCM goes on", "round trip", "different")
    mend_audit_file()
    # A refused C_GenerateKey must have made no key: a refusal that still creates the token key
    # tells the caller it failed while an unrecorded key stays on the token.
    n = count_label(s, "fc-gen")
    check(n == (0 if required else 1), "after the audit file is back: %d token key(s) labelled "
          "fc-gen (%s)" % (n, "the refused C_GenerateKey made none" if required else
                            "the one C_GenerateKey made"), 0 if required else 1, n)
    ct3 = bytes(s.encrypt(k, pt, gcm(iv, AADS[2])))
    check(bytes(s.decrypt(k, ct3, gcm(iv, AADS[2]))) == pt,
          "audit file back: operations go on (%s)" % mode, "round trip", "different")
    # Once more, with a login as the first call after the break: a refused C_Login must leave the
    # session logged out.
    s.logout()
    fork_cycle()
    lib.getTokenInfo(slot_by_label(lib, LABEL))
    break_audit_file()
    rv, _ = call_rv(s.login, PIN["user"])
    state = s.getSessionInfo().state2text()
    mend_audit_file()
    if required:
        check(rv in refused and state == "CKS_RW_PUBLIC_SESSION",
              "required, audit file broke: C_Login refused (%s) and the session stays logged out "
              "(%s)" % (rv_name(rv), state), "refused and CKS_RW_PUBLIC_SESSION",
              "%s and %s" % (rv_name(rv), state))
        if state == "CKS_RW_PUBLIC_SESSION":
            rv, _ = call_rv(s.login, PIN["user"])
            check(rv == CKR_OK, "audit file back: C_Login", "CKR_OK", rv_name(rv))
    else:
        check(rv == CKR_OK and state == "CKS_RW_USER_FUNCTIONS",
              "not required, audit file broke: C_Login goes on", "CKR_OK, CKS_RW_USER_FUNCTIONS",
              "%s, %s" % (rv_name(rv), state))
    s.logout()
    s.closeSession()
    finalize(lib)
    finish()


def phase_fork_find():
    """The parent goes on after fork() (module-behaviour: "the parent is unaffected"): its first
    call after the fork is a C_FindObjectsInit."""
    lib = load()
    s = open_rw(lib)
    s.login(PIN["user"])
    before = count_label(s, "it-aes")
    fork_cycle()
    print("# forked; the parent calls C_FindObjectsInit", flush=True)
    after = count_label(s, "it-aes")
    check(before == after == 1, "C_FindObjects in the parent after fork() finds it-aes", 1, after)
    s.logout()
    s.closeSession()
    finalize(lib)
    finish()


def phase_killed():
    """A process makes a token key and destroys another, then dies without C_Finalize (as under
    SIGKILL): the records of both are durable in the token's outbox with the changes, and the next
    process to open the token (here `custos audit verify`) chains them."""
    lib = load()
    s = open_rw(lib)
    s.login(PIN["user"])
    gone = s.generateKey(token_key_template("killed-del"), Mechanism(CKM_AES_KEY_GEN))
    s.destroyObject(gone)
    s.generateKey(token_key_template("killed-gen"), Mechanism(CKM_AES_KEY_GEN))
    print("# made killed-gen, made and destroyed killed-del; exiting without C_Finalize", flush=True)
    os._exit(0)


# ---- 5. syslog mirror and the secret search -------------------------------------------------------

def phase_syslog_recv(out):
    """The stand-in syslog daemon, a process of its own as a real one is: bind /dev/log, say
    "ready", keep every datagram until standard input closes, write them to out."""
    import select
    if os.path.exists("/dev/log"):
        os.unlink("/dev/log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    got = []
    print("ready", flush=True)
    done = False
    while True:
        r, _, _ = select.select([sock, sys.stdin], [], [], 0.2 if done else None)
        if sock in r:
            got.append(sock.recv(65536))
        elif done:
            break
        if sys.stdin in r and not done:
            if not sys.stdin.readline():
                done = True   # drain what is queued, then stop
    sock.close()
    os.unlink("/dev/log")
    with open(out, "wb") as f:
        f.write(b"\n".join(got) + b"\n")


def phase_syslog_run(out):
    """Inside a private mount namespace where /dev/log is the socket of a receiver process (the
    shell set the namespace up): logins, GCM, HMAC, KWP, a refusal and a decrypt-rate alert
    (action = log) with [audit] syslog = yes; the receiver keeps every datagram the module sent."""
    recv = subprocess.Popen([sys.executable, os.path.abspath(__file__), "syslog-recv", out],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if recv.stdout.readline().strip() != b"ready":
        raise RuntimeError("the syslog receiver did not start")
    try:
        lib = load()
        s = open_rw(lib)
        ext = Ext()
        call_rv(s.login, PIN["wrong"])
        ext.login_user(s, CKU_USER, PIN["wrong"], "dec")
        s.login(PIN["user"])
        k, h = find_key(s, "it-aes"), find_key(s, "it-hmac")
        pts = plaintexts("syslog", 16)
        ivs = bytearray()
        # One AAD: an aggregate flush then writes 4 rows at once, under the 10 datagrams a Unix
        # socket queues by default (net.unix.max_dgram_qlen); the mirror drops what does not fit
        # rather than stall (docs/audit.md), which is not what this part tests.
        for i in range(16):
            iv = os.urandom(12)
            ivs += iv
            ct = s.encrypt(k, pts[i], gcm(iv, AADS[0]))
            s.decrypt(k, ct, gcm(iv, AADS[0]))
            s.verify(h, pts[i], s.sign(h, pts[i], hmac_mech()), hmac_mech())
        put_secret("ivs-syslog.bin", bytes(ivs))
        kwp = Mechanism(CKM_AES_KEY_WRAP_KWP, None)
        dek = s.generateKey(session_key_template("syslog-dek"), Mechanism(CKM_AES_KEY_GEN))
        s.unwrapKey(k, s.wrapKey(k, dek, kwp), session_key_template("syslog-dek2"), kwp)
        s.logout()
        ext.login_user(s, CKU_USER, PIN["dec"], "dec")
        call_rv(s.encrypt, k, pts[0], gcm(os.urandom(12), AADS[0]))
        s.logout()
        s.closeSession()
        finalize(lib)
    finally:
        recv.stdin.close()
        recv.wait(timeout=10)
    with open(out, "rb") as f:
        n = len([ln for ln in f.read().split(b"\n") if ln])
    with open(out + ".pid", "w") as f:
        f.write(str(os.getpid()))
    print("# syslog: %d datagrams received on /dev/log" % n)
    finish()


def phase_check_syslog(out, export):
    with open(out, "rb") as f:
        lines = [ln for ln in f.read().split(b"\n") if ln]
    with open(out + ".pid") as f:
        pid = int(f.read())
    recs = [r for r in load_export(export) if r["pid"] == pid]
    info, warn, other = [], [], []
    for ln in lines:
        # <PRI>TIMESTAMP custos[PID]: MESSAGE; PRI = LOG_AUTHPRIV (10 << 3) | severity.
        head, _, msg = ln.partition(b": ")
        if head.startswith(b"<86>") and head.endswith(b"custos[%d]" % pid):
            info.append(json.loads(msg))
        elif head.startswith(b"<84>") and head.endswith(b"custos[%d]" % pid):
            warn.append(msg)
        else:
            other.append(ln[:60])
    print("# syslog: %d info records, %d warnings, %d other; the export has %d records of pid %d" %
          (len(info), len(warn), len(other), len(recs), pid))
    sent = {m["seq"] for m in info}
    for r in recs:
        if r["seq"] not in sent:
            print("#   not mirrored: record %d (%s %s, count %d)" % (r["seq"], r["kind"],
                                                                  r["function"], r["count"]))
    check(not other, "every datagram is <86> (authpriv.info) or <84> (authpriv.warning) from "
          "custos[pid]", "none other", other[:3])
    check(sorted(r["seq"] for r in info) == sorted(r["seq"] for r in recs) and len(recs) > 0,
          "the mirror sent each record of the process, by seq", len(recs), len(info))
    byseq = {r["seq"]: r for r in recs}
    same = all(byseq.get(m["seq"], {}).get("mac") == m.get("mac") for m in info)
    check(same, "mirrored records carry the same mac as the file", "equal", "different")
    alerts = [r for r in recs if r["kind"] == "alert"]
    check(len(alerts) == 1 and len(warn) == 1 and b"decrypt rate above 10 per 60 s" in warn[0],
          "the decrypt-rate alert (action = log) is one alert record and one authpriv.warning",
          "1 and 1", "%d and %d" % (len(alerts), len(warn)))
    finish()


def b64_forms(s):
    """s in base64 as it would appear standing alone, or inside a longer base64 text at any of the
    three alignments (the characters that depend only on s), standard and URL-safe."""
    forms = set()
    for k in range(3):
        e = base64.b64encode(b"\0" * k + s)
        full = (k + len(s)) // 3 * 4
        forms.add(e[[0, 2, 3][k]:full])
    forms.add(base64.b64encode(s).rstrip(b"="))
    forms |= {f.replace(b"+", b"-").replace(b"/", b"_") for f in forms}
    return {f for f in forms if len(f) >= 8}


def grep_hits(patterns, files, workdir, ignore_case):
    """(file, offset, match) of every pattern in files: one GNU grep -F (Aho-Corasick over all
    patterns at once), the patterns file in workdir."""
    pf = os.path.join(workdir, "search.patterns")
    with open(pf, "wb") as f:
        f.write(b"\n".join(sorted(patterns)) + b"\n")
    cmd = ["grep", "-a", "-H", "-o", "-b", "-F", "-f", pf] + (["-i"] if ignore_case else []) + \
        ["--"] + list(files)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, env=dict(os.environ, LC_ALL="C"))
    os.unlink(pf)
    if p.returncode not in (0, 1):
        raise RuntimeError("grep failed (exit %d)" % p.returncode)
    hits = []
    for ln in p.stdout.split(b"\n"):
        if ln:
            name, off, m = ln.split(b":", 2)
            hits.append((name.decode(), int(off), m))
    return hits


def search(files, secrets, workdir):
    """Where any secret appears in files raw, as hex (either case) or as base64: [(file, form,
    kind, offset)]."""
    kinds = {}
    hexes, b64s = set(), set()
    for kind, s in secrets:
        h = s.hex().encode()
        hexes.add(h)
        kinds.setdefault(h, kind)
        for f in b64_forms(s):
            b64s.add(f)
            kinds.setdefault(f, kind)
    found = []
    # Raw bytes: each file as hex text, hex patterns at byte boundaries (even offsets).
    dumps = {}
    for i, path in enumerate(files):
        hx = os.path.join(workdir, "search-%d.hex" % i)
        with open(path, "rb") as f, open(hx, "wb") as g:
            g.write(f.read().hex().encode())
        dumps[hx] = path
    for name, off, m in grep_hits(hexes, dumps, workdir, False):
        if off % 2 == 0:
            found.append((dumps[name], "raw", kinds.get(m, "?"), off // 2))
    for hx in dumps:
        os.unlink(hx)
    for name, off, m in grep_hits(hexes, files, workdir, True):
        found.append((name, "hex", kinds.get(m.lower(), "?"), off))
    for name, off, m in grep_hits(b64s, files, workdir, False):
        found.append((name, "base64", kinds.get(m, "?"), off))
    return found


def phase_search(report, files):
    secrets = read_secrets()
    by_kind = collections.Counter(k for k, _ in secrets)
    sizes = sum(os.path.getsize(p) for p in files)
    t0 = time.monotonic()
    found = search(files, secrets, STATE)
    print("# searched %d files (%d bytes) for %s in raw, hex and base64 forms in %.1f s" %
          (len(files), sizes, ", ".join("%d %s(s)" % (n, k) for k, n in sorted(by_kind.items())),
           time.monotonic() - t0))
    for p in files:
        print("#   %s: %d bytes" % (os.path.basename(p), os.path.getsize(p)))
    with open(report, "w") as f:
        json.dump({"files": len(files), "bytes": sizes, "secrets": dict(by_kind)}, f)
    for path, form, kind, off in found[:20]:
        print("FOUND: a %s (%s form) in %s at offset %d" % (kind, form, os.path.basename(path), off))
    check(not found, "no key, PIN, IV or plaintext in any searched file", "0 hits", len(found))
    for kind in ("key", "pin", "iv", "plaintext"):
        check(by_kind[kind] > 0, "the search covered %ss (%d)" % (kind, by_kind[kind]), "> 0", 0)
    finish()


def phase_control(base):
    """Positive control: plant secrets in a copy of an export and the search must find each."""
    secrets = read_secrets()
    pick = {}
    for kind, s in secrets:
        pick.setdefault(kind, s)
    with open(base, "rb") as f:
        data = f.read()
    planted = os.path.join(STATE, "control.bin")
    half = len(data) // 2
    blob = (data[:half] + pick["iv"] + b"x" + pick["key"].hex().upper().encode() + b"\n" +
            b'{"note":"' + base64.b64encode(b"ab" + pick["plaintext"]) + b'"}\n' +
            pick["pin"] + data[half:])
    with open(planted, "wb") as f:
        f.write(blob)
    found = search([planted], secrets, STATE)
    got = sorted({(form, kind) for _, form, kind, _ in found})
    print("# control: planted an IV (raw), the AES key (upper-case hex), a plaintext (base64 at "
          "offset 2) and a PIN in a %d-byte copy of the export; found %s" % (len(blob), got))
    for want in (("raw", "iv"), ("hex", "key"), ("base64", "plaintext"), ("raw", "pin")):
        check(want in got, "the search finds a planted %s in %s form" % (want[1], want[0]),
              "found", "missed")
    os.unlink(planted)
    finish()


def main():
    phase = sys.argv[1]
    args = sys.argv[2:]
    try:
        if phase == "setup":
            phase_setup(args[0])
        elif phase == "worker":
            phase_worker(args[0], int(args[1]))
        elif phase == "check-counts":
            phase_check_counts(args[0], args[1:])
        elif phase == "alert":
            phase_alert()
        elif phase == "check-alert":
            phase_check_alert(args[0], args[1])
        elif phase == "badinput":
            phase_badinput()
        elif phase == "check-badinput":
            phase_check_badinput(args[0], args[1])
        elif phase == "failclosed":
            phase_failclosed(args[0], args[1])
        elif phase == "fork-find":
            phase_fork_find()
        elif phase == "killed":
            phase_killed()
        elif phase == "syslog-recv":
            phase_syslog_recv(args[0])
        elif phase == "syslog-run":
            phase_syslog_run(args[0])
        elif phase == "check-syslog":
            phase_check_syslog(args[0], args[1])
        elif phase == "search":
            phase_search(args[0], args[1:])
        elif phase == "control":
            phase_control(args[0])
        else:
            raise SystemExit("unknown phase %s" % phase)
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        print("FAIL - phase %s stopped: %s" % (phase, sys.exc_info()[1]))
        sys.exit(1)


if __name__ == "__main__":
    main()
