#!/usr/bin/python3
# tests/integration/pykcs11_test.py: PyKCS11 (Debian python3-pykcs11) drives the built module: token
# and PIN set-up, a token KEK and a session DEK, AES-GCM with AAD, RFC 3394/5649 wrap and unwrap,
# digests and HMAC against Python's own, object search, and a token key that outlives the process.
# Run by pykcs11.sh with /usr/bin/python3; phase "main" first, then "reopen" in a fresh process.
# Prints lengths and verdicts only: never a PIN, a key or a wrapped key.
import hashlib
import hmac
import json
import os
import sys
import traceback

import PyKCS11
from PyKCS11 import (
    AES_GCM_Mechanism, Mechanism, PyKCS11Error, PyKCS11Lib, CKR, CK_TRUE, CK_FALSE,
    CKA_ALWAYS_SENSITIVE, CKA_CLASS, CKA_DECRYPT, CKA_ENCRYPT, CKA_EXTRACTABLE, CKA_ID,
    CKA_KEY_TYPE, CKA_LABEL, CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_PRIVATE, CKA_SENSITIVE,
    CKA_SIGN, CKA_TOKEN, CKA_UNWRAP, CKA_VALUE, CKA_VALUE_LEN, CKA_VERIFY, CKA_WRAP,
    CKF_RW_SESSION, CKF_SERIAL_SESSION, CKF_TOKEN_INITIALIZED, CKF_USER_PIN_INITIALIZED,
    CKK_AES, CKK_GENERIC_SECRET, CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP, CKM_SHA256, CKM_SHA512,
    CKM_SHA3_256, CKM_SHA256_HMAC, CKM_SHA512_HMAC, CKO_SECRET_KEY, CKU_SO, CKU_USER,
)

CKM_AES_KEY_WRAP_PAD = 0x210A   # deprecated name, RFC 5649 in 2.40-era tokens
CKM_AES_KEY_WRAP_KWP = 0x210B   # RFC 5649

MODULE = os.environ["CUSTOS_MODULE"]
SO_PIN = os.environ["IT_SO_PIN"]
USER_PIN = os.environ["IT_USER_PIN"]
WRONG_PIN = os.environ["IT_WRONG_PIN"]
LABEL = os.environ["IT_LABEL"]
STATE = os.environ["IT_STATE"]
# A run against SoftHSM2 checks the test itself: SoftHSM lacks KWP and SHA-3 and answers some
# failures with CKR_GENERAL_ERROR (INTEROP.md), so those checks are relaxed there, never for Custos.
REFERENCE = os.environ.get("IT_REFERENCE") == "1"

RECORD = b'{"id":42,"name":"Ada Lovelace","email":"ada@example.org"}'
AAD = b"tenant=42,table=users"

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


def expect_rv(what, want, fn, *args, reference_any=False):
    """fn(*args) must raise PyKCS11Error with rv want."""
    try:
        fn(*args)
    except PyKCS11Error as e:
        if REFERENCE and reference_any:
            return check(True, what + " (reference: %s)" % rv_name(e.value))
        return check(e.value == want, what, rv_name(want), rv_name(e.value))
    return check(False, what, rv_name(want), "success")


def find_slot(lib, label=None):
    """The slot of the uninitialised token (label None) or of the token labelled label."""
    for slot in lib.getSlotList(tokenPresent=True):
        ti = lib.getTokenInfo(slot)
        initialised = bool(ti.flags & CKF_TOKEN_INITIALIZED)
        if label is None and not initialised:
            return slot
        if label is not None and initialised and ti.label.rstrip(' \x00') == label:
            return slot
    return None


def value_is_unreadable(s, obj):
    """C_GetAttributeValue(CKA_VALUE) straight through the low-level binding: PyKCS11's high-level
    getAttributeValue turns CKR_ATTRIBUTE_SENSITIVE into None, which hides the return value."""
    tmpl = PyKCS11.LowLevel.ckattrlist(1)
    tmpl[0].SetType(CKA_VALUE)
    rv = s.lib.C_GetAttributeValue(s.session, obj, tmpl)
    return rv, rv == PyKCS11.CKR_ATTRIBUTE_SENSITIVE


def attrs(s, obj, types):
    return dict(zip(types, s.getAttributeValue(obj, types)))


def find(s, template):
    return s.findObjects(template)


def aes_template(label, token, extractable, **usage):
    t = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
         (CKA_TOKEN, CK_TRUE if token else CK_FALSE), (CKA_PRIVATE, CK_TRUE),
         (CKA_SENSITIVE, CK_TRUE), (CKA_EXTRACTABLE, CK_TRUE if extractable else CK_FALSE),
         (CKA_LABEL, label)]
    for name, attr in (("encrypt", CKA_ENCRYPT), ("decrypt", CKA_DECRYPT), ("wrap", CKA_WRAP),
                       ("unwrap", CKA_UNWRAP)):
        t.append((attr, CK_TRUE if usage.get(name) else CK_FALSE))
    return t


def import_key(s, key_type, value, label, **flags):
    t = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, key_type), (CKA_VALUE, value),
         (CKA_TOKEN, CK_FALSE), (CKA_LABEL, label)]
    for attr, on in flags.items():
        t.append((getattr(PyKCS11, attr), CK_TRUE if on else CK_FALSE))
    return s.createObject(t)


def unwrap_template(label):
    return [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, CK_FALSE),
            (CKA_SENSITIVE, CK_TRUE), (CKA_EXTRACTABLE, CK_FALSE), (CKA_ENCRYPT, CK_TRUE),
            (CKA_DECRYPT, CK_TRUE), (CKA_LABEL, label)]


def gcm(iv, aad, bits=128):
    return AES_GCM_Mechanism(iv, aad, bits)


def phase_main(lib):
    slot = find_slot(lib)
    if not check(slot is not None, "an uninitialised token is present", "a slot", "none"):
        return
    # C_InitToken reads exactly 32 bytes of label (PKCS#11 3.2 sec. 5.6): pad it, as PyKCS11
    # passes the string as given.
    lib.initToken(slot, SO_PIN, LABEL.ljust(32))
    slot = find_slot(lib, LABEL)
    if not check(slot is not None, "the initialised token is found by its label", LABEL, "none"):
        return
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(SO_PIN, user_type=CKU_SO)
    s.initPin(USER_PIN)
    s.logout()
    ti = lib.getTokenInfo(slot)
    check(ti.flags & CKF_USER_PIN_INITIALIZED, "CKF_USER_PIN_INITIALIZED after C_InitPIN",
          "set", "clear")
    expect_rv("login with a wrong user PIN", PyKCS11.CKR_PIN_INCORRECT, s.login, WRONG_PIN)
    s.login(USER_PIN)

    # ---- keys ------------------------------------------------------------------------------
    kek = s.generateKey(aes_template("kek", True, False, wrap=True, unwrap=True)
                        + [(CKA_ID, b"\x01")], Mechanism(CKM_AES_KEY_GEN, None))
    a = attrs(s, kek, [CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE,
                       CKA_ALWAYS_SENSITIVE, CKA_LOCAL, CKA_VALUE_LEN])
    check(a[CKA_TOKEN] and a[CKA_SENSITIVE] and not a[CKA_EXTRACTABLE]
          and a[CKA_NEVER_EXTRACTABLE] and a[CKA_ALWAYS_SENSITIVE] and a[CKA_LOCAL],
          "KEK: token, sensitive, never extractable, always sensitive, local",
          "all true but CKA_EXTRACTABLE", {PyKCS11.CKA[k]: v for k, v in a.items()
                                           if k != CKA_VALUE_LEN})
    check(a[CKA_VALUE_LEN] == 32, "KEK CKA_VALUE_LEN", 32, a[CKA_VALUE_LEN])
    rv, ok = value_is_unreadable(s, kek)
    check(ok, "KEK CKA_VALUE cannot be read", "CKR_ATTRIBUTE_SENSITIVE", rv_name(rv))

    dek = s.generateKey(aes_template("dek", False, True, encrypt=True, decrypt=True),
                        Mechanism(CKM_AES_KEY_GEN, None))
    rv, ok = value_is_unreadable(s, dek)
    check(ok, "DEK (sensitive, extractable) CKA_VALUE cannot be read",
          "CKR_ATTRIBUTE_SENSITIVE", rv_name(rv))

    # ---- AES-GCM with AAD ----------------------------------------------------------------------
    iv = os.urandom(12)
    ct = bytes(s.encrypt(dek, RECORD, gcm(iv, AAD)))
    check(len(ct) == len(RECORD) + 16, "GCM ciphertext is the record plus a 16-byte tag",
          len(RECORD) + 16, len(ct))
    check(RECORD not in ct, "GCM ciphertext does not contain the record", "absent", "present")
    back = bytes(s.decrypt(dek, ct, gcm(iv, AAD)))
    check(back == RECORD, "GCM decrypt with the same AAD gives the record back", "equal",
          "different")
    expect_rv("GCM decrypt with a different AAD", PyKCS11.CKR_ENCRYPTED_DATA_INVALID,
              s.decrypt, dek, ct, gcm(iv, b"tenant=43,table=users"), reference_any=True)
    bad = ct[:-1] + bytes([ct[-1] ^ 1])
    expect_rv("GCM decrypt with a damaged tag", PyKCS11.CKR_ENCRYPTED_DATA_INVALID,
              s.decrypt, dek, bad, gcm(iv, AAD), reference_any=True)
    bad = bytes([ct[0] ^ 0x80]) + ct[1:]
    expect_rv("GCM decrypt with a damaged ciphertext", PyKCS11.CKR_ENCRYPTED_DATA_INVALID,
              s.decrypt, dek, bad, gcm(iv, AAD), reference_any=True)
    back = bytes(s.decrypt(dek, ct, gcm(iv, AAD)))
    check(back == RECORD, "the DEK still decrypts after failed attempts", "equal", "different")

    # Known answer: McGrew & Viega, GCM spec, test case 16 (AES-256, 96-bit IV, with AAD).
    h = bytes.fromhex
    kat = import_key(s, CKK_AES, h("feffe9928665731c6d6a8f9467308308"
                                   "feffe9928665731c6d6a8f9467308308"), "gcm-kat",
                     CKA_ENCRYPT=True, CKA_DECRYPT=True)
    kat_p = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    kat_c = h("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
              "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662")
    kat_t = h("76fc6ece0f4e1768cddf8853bb2d551b")
    kat_iv, kat_a = h("cafebabefacedbaddecaf888"), h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    out = bytes(s.encrypt(kat, kat_p, gcm(kat_iv, kat_a)))
    check(out == kat_c + kat_t, "GCM known answer (test case 16)", "C||T", "different bytes")
    out = bytes(s.encrypt(kat, kat_p, gcm(kat_iv, kat_a, 96)))
    check(out == kat_c + kat_t[:12], "GCM known answer with a 96-bit tag", "C||T[:12]",
          "different bytes")
    out = bytes(s.decrypt(kat, kat_c + kat_t, gcm(kat_iv, kat_a)))
    check(out == kat_p, "GCM known-answer decrypt", "P", "different bytes")

    # ---- key wrap --------------------------------------------------------------------------------
    kwp = Mechanism(CKM_AES_KEY_WRAP_PAD if REFERENCE else CKM_AES_KEY_WRAP_KWP, None)
    wrapped = bytes(s.wrapKey(kek, dek, kwp))
    check(len(wrapped) == 40, "KWP wrap of a 32-byte DEK is 40 bytes", 40, len(wrapped))
    if not REFERENCE:
        pad = bytes(s.wrapKey(kek, dek, Mechanism(CKM_AES_KEY_WRAP_PAD, None)))
        check(pad == wrapped, "CKM_AES_KEY_WRAP_PAD (0x210A) equals KWP (RFC 5649 both)",
              "same bytes", "different bytes")
    kw = bytes(s.wrapKey(kek, dek, Mechanism(CKM_AES_KEY_WRAP, None)))
    check(len(kw) == 40 and kw != wrapped, "RFC 3394 wrap is 40 bytes and differs from RFC 5649",
          "40, different", "%d, %s" % (len(kw), "different" if kw != wrapped else "same"))

    dek2 = s.unwrapKey(kek, wrapped, unwrap_template("dek-unwrapped"), kwp)
    back = bytes(s.decrypt(dek2, ct, gcm(iv, AAD)))
    check(back == RECORD, "the unwrapped DEK decrypts what the original encrypted", "equal",
          "different")
    a = attrs(s, dek2, [CKA_VALUE_LEN, CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE])
    check(a[CKA_VALUE_LEN] == 32 or REFERENCE, "unwrapped DEK CKA_VALUE_LEN", 32,
          a[CKA_VALUE_LEN])
    check(not a[CKA_LOCAL] and not a[CKA_ALWAYS_SENSITIVE] and not a[CKA_NEVER_EXTRACTABLE],
          "unwrapped DEK: CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE false "
          "(PKCS#11 3.2 sec. 5.18 C_UnwrapKey)", "all false",
          {PyKCS11.CKA[k]: v for k, v in a.items() if k != CKA_VALUE_LEN})
    dek3 = s.unwrapKey(kek, kw, unwrap_template("dek-unwrapped-kw"),
                       Mechanism(CKM_AES_KEY_WRAP, None))
    back = bytes(s.decrypt(dek3, ct, gcm(iv, AAD)))
    check(back == RECORD, "the RFC 3394-unwrapped DEK decrypts too", "equal", "different")

    other = s.generateKey(aes_template("kek-other", False, False, wrap=True, unwrap=True),
                          Mechanism(CKM_AES_KEY_GEN, None))
    expect_rv("unwrap under the wrong KEK", PyKCS11.CKR_WRAPPED_KEY_INVALID, s.unwrapKey,
              other, wrapped, unwrap_template("dek-wrong"), kwp, reference_any=True)
    bad = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    expect_rv("unwrap of a damaged wrapped key", PyKCS11.CKR_WRAPPED_KEY_INVALID, s.unwrapKey,
              kek, bad, unwrap_template("dek-bad"), kwp, reference_any=True)
    check(len(find(s, [(CKA_LABEL, "dek-wrong")])) + len(find(s, [(CKA_LABEL, "dek-bad")])) == 0,
          "failed unwraps create no object", 0, "objects")
    expect_rv("wrap of the non-extractable KEK", PyKCS11.CKR_KEY_UNEXTRACTABLE, s.wrapKey,
              other, kek, kwp)

    # Known answers: RFC 3394 sec. 4.6 and RFC 5649 sec. 6 (SoftHSM2's 0x210A is not RFC 5649).
    kat_kek = import_key(s, CKK_AES, h("000102030405060708090a0b0c0d0e0f"
                                       "101112131415161718191a1b1c1d1e1f"), "kw-kat-kek",
                         CKA_WRAP=True, CKA_UNWRAP=True)
    kat_key = import_key(s, CKK_AES, h("00112233445566778899aabbccddeeff"
                                       "000102030405060708090a0b0c0d0e0f"), "kw-kat-key",
                         CKA_EXTRACTABLE=True, CKA_SENSITIVE=True)
    out = bytes(s.wrapKey(kat_kek, kat_key, Mechanism(CKM_AES_KEY_WRAP, None)))
    check(out == h("28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326"
                   "cbc7f0e71a99f43bfb988b9b7a02dd21"),
          "RFC 3394 sec. 4.6 known answer", "the RFC's bytes", "different bytes")
    kwp_kek = import_key(s, CKK_AES, h("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"),
                         "kwp-kat-kek", CKA_WRAP=True, CKA_UNWRAP=True)
    rfc5649 = () if REFERENCE else (
        (h("c37b7e6492584340bed12207808941155068f738"),
         h("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")),
        (h("466f7250617369"), h("afbeb0f07dfbf5419200f2ccb50bb24f")))
    for key, want in rfc5649:
        obj = import_key(s, CKK_GENERIC_SECRET, key, "kwp-kat-key", CKA_EXTRACTABLE=True,
                         CKA_SENSITIVE=True)
        out = bytes(s.wrapKey(kwp_kek, obj, kwp))
        check(out == want, "RFC 5649 sec. 6 known answer (%d-byte key)" % len(key),
              "the RFC's bytes", "different bytes")

    # ---- digests and HMAC ------------------------------------------------------------------------
    data = os.urandom(1000) + b"custos"
    digests = [(CKM_SHA256, hashlib.sha256), (CKM_SHA512, hashlib.sha512)]
    if not REFERENCE:
        digests.append((CKM_SHA3_256, hashlib.sha3_256))
    for mech, fn in digests:
        out = bytes(s.digest(data, Mechanism(mech, None)))
        check(out == fn(data).digest(), "digest %s equals hashlib" % PyKCS11.CKM[mech],
              fn(data).hexdigest(), out.hex())
    hkey = os.urandom(64)
    hk = import_key(s, CKK_GENERIC_SECRET, hkey, "hmac-key", CKA_SIGN=True, CKA_VERIFY=True)
    for mech, fn in ((CKM_SHA256_HMAC, hashlib.sha256), (CKM_SHA512_HMAC, hashlib.sha512)):
        mac = bytes(s.sign(hk, data, Mechanism(mech, None)))
        want = hmac.new(hkey, data, fn).digest()
        check(mac == want, "sign %s equals Python's hmac" % PyKCS11.CKM[mech], "equal",
              "different (%d bytes)" % len(mac))
        check(s.verify(hk, data, mac, Mechanism(mech, None)),
              "verify %s of the right MAC" % PyKCS11.CKM[mech], True, False)
        badmac = mac[:-1] + bytes([mac[-1] ^ 1])
        check(not s.verify(hk, data, badmac, Mechanism(mech, None)),
              "verify %s of a damaged MAC fails" % PyKCS11.CKM[mech], False, True)

    # ---- findObjects -----------------------------------------------------------------------------
    got = find(s, [(CKA_LABEL, "kek")])
    check(len(got) == 1 and got[0].value() == kek.value(), "findObjects by label 'kek'",
          "the KEK", "%d objects" % len(got))
    got = find(s, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, "dek")])
    check(len(got) == 1 and got[0].value() == dek.value(), "findObjects by class and label 'dek'",
          "the DEK", "%d objects" % len(got))
    got = find(s, [(CKA_LABEL, "no-such-label")])
    check(len(got) == 0, "findObjects of an unknown label", 0, len(got))
    got = find(s, [(CKA_TOKEN, CK_TRUE), (CKA_CLASS, CKO_SECRET_KEY)])
    check(len(got) == 1, "exactly one token key (the KEK)", 1, len(got))
    s.logout()
    got = find(s, [(CKA_LABEL, "kek")])
    check(len(got) == 0, "the private KEK is invisible after logout", 0, len(got))
    s.closeSession()

    with open(STATE, "w") as f:
        json.dump({"wrapped": wrapped.hex(), "iv": iv.hex(), "ct": ct.hex()}, f)


def phase_reopen(lib):
    with open(STATE) as f:
        st = json.load(f)
    slot = find_slot(lib, LABEL)
    if not check(slot is not None, "the token is found by its label in a new process", LABEL,
                 "none"):
        return
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(USER_PIN)
    got = find(s, [(CKA_LABEL, "kek")])
    if not check(len(got) == 1, "the token KEK survives closing and reopening the library", 1,
                 len(got)):
        return
    kek = got[0]
    got = find(s, [(CKA_LABEL, "dek")])
    check(len(got) == 0, "the session DEK is gone with its process", 0, len(got))
    kwp = Mechanism(CKM_AES_KEY_WRAP_PAD if REFERENCE else CKM_AES_KEY_WRAP_KWP, None)
    dek = s.unwrapKey(kek, bytes.fromhex(st["wrapped"]), unwrap_template("dek-again"), kwp)
    back = bytes(s.decrypt(dek, bytes.fromhex(st["ct"]),
                           gcm(bytes.fromhex(st["iv"]), AAD)))
    check(back == RECORD, "the reopened KEK unwraps the DEK, which decrypts the record", "equal",
          "different")
    s.logout()
    s.closeSession()


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else ""
    if phase not in ("main", "reopen"):
        print("usage: pykcs11_test.py main|reopen", file=sys.stderr)
        return 2
    lib = PyKCS11Lib()
    lib.load(MODULE)
    try:
        (phase_main if phase == "main" else phase_reopen)(lib)
    except PyKCS11Error as e:
        print("FAIL - unexpected %s" % rv_name(e.value))
        traceback.print_exc(file=sys.stdout)
        failures.append("exception")
    finally:
        del lib
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
