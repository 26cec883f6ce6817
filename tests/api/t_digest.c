/* Digests and MACs through the module: every digest mechanism on "abc"
 * (FIPS 180-4 / FIPS 202 answers) single- and multi-part, C_DigestKey,
 * HMAC sign/verify on RFC 4231 vectors, signature errors and the
 * sign/verify-recover functions Custos does not offer.
 * PKCS#11 3.2 sec. 5.10-5.12. */
#include "harness.h"

#include <string.h>

static const struct {
    CK_MECHANISM_TYPE m;
    const char *abc;
} DIGESTS[] = {
    { CKM_SHA224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7" },
    { CKM_SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { CKM_SHA384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163"
                  "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7" },
    { CKM_SHA512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
    { CKM_SHA3_224, "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf" },
    { CKM_SHA3_256, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532" },
    { CKM_SHA3_384, "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c25"
                    "96da7cf0e49be4b298d88cea927ac7f539f1edf228376d25" },
    { CKM_SHA3_512, "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e"
                    "10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0" },
};

static void test_every_digest_on_abc(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    for (size_t i = 0; i < NELEM(DIGESTS); i++) {
        CK_MECHANISM m = { DIGESTS[i].m, NULL, 0 };
        uint8_t want[64], out[64];
        size_t wlen = h_unhex(DIGESTS[i].abc, want, sizeof(want));
        CK_ULONG len = 0;

        RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
        RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, NULL, &len), CKR_OK, "C_Digest size query");
        CHECK(len == wlen, "size query gives the digest length");
        len = wlen - 1;
        RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_BUFFER_TOO_SMALL,
              "C_Digest into one byte less");
        CHECK(len == wlen, "CKR_BUFFER_TOO_SMALL gives the digest length");
        len = sizeof(out);
        RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OK, "C_Digest(\"abc\")");
        CHECK(len == wlen && memcmp(out, want, wlen) == 0, "single-part digest of \"abc\"");

        RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
        RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "a", 1), CKR_OK, "C_DigestUpdate(\"a\")");
        RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "", 0), CKR_OK, "C_DigestUpdate(\"\")");
        RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "bc", 2), CKR_OK, "C_DigestUpdate(\"bc\")");
        len = 0;
        RV_EQ(F->C_DigestFinal(s, NULL, &len), CKR_OK, "C_DigestFinal size query");
        CHECK(len == wlen, "final size query gives the digest length");
        len = sizeof(out);
        RV_EQ(F->C_DigestFinal(s, out, &len), CKR_OK, "C_DigestFinal");
        CHECK(len == wlen && memcmp(out, want, wlen) == 0, "multi-part digest of \"abc\"");
    }
}

static void test_digest_errors(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    uint8_t out[64];
    CK_ULONG len = sizeof(out);

    RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_Digest without C_DigestInit");
    RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), CKR_OPERATION_NOT_INITIALIZED,
          "C_DigestUpdate without C_DigestInit");
    RV_EQ(F->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_DigestFinal without C_DigestInit");
    CK_MECHANISM unknown = { 0x7ffffff0UL, NULL, 0 };
    RV_EQ(F->C_DigestInit(s, &unknown), CKR_MECHANISM_INVALID, "C_DigestInit(unknown)");
    CK_MECHANISM gcm = { CKM_AES_GCM, NULL, 0 };
    RV_EQ(F->C_DigestInit(s, &gcm), CKR_MECHANISM_INVALID, "C_DigestInit(CKM_AES_GCM)");
    CK_MECHANISM hmac = { CKM_SHA256_HMAC, NULL, 0 };
    RV_EQ(F->C_DigestInit(s, &hmac), CKR_MECHANISM_INVALID, "C_DigestInit(CKM_SHA256_HMAC)");

    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestInit(s, &m), CKR_OPERATION_ACTIVE, "C_DigestInit twice");
    RV_EQ(F->C_DigestInit(s, NULL), CKR_OK, "C_DigestInit(NULL) cancels (3.x sec. 5.10)");
    RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), CKR_OPERATION_NOT_INITIALIZED,
          "C_DigestUpdate after the cancel");

    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, NULL), CKR_ARGUMENTS_BAD,
          "C_Digest(pulDigestLen NULL)");
    len = sizeof(out);
    RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_Digest ended the operation");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestUpdate(s, NULL, 3), CKR_ARGUMENTS_BAD, "C_DigestUpdate(pPart NULL, 3)");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit after the failed update");
    RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), CKR_OK, "C_DigestUpdate");
    len = sizeof(out);
    RV_EQ(F->C_Digest(s, (CK_BYTE_PTR) "abc", 3, out, &len), CKR_OPERATION_ACTIVE,
          "C_Digest after C_DigestUpdate");
    RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), CKR_OPERATION_NOT_INITIALIZED,
          "the refused C_Digest ended the operation");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestFinal(s, out, NULL), CKR_ARGUMENTS_BAD, "C_DigestFinal(NULL length)");
    len = sizeof(out);
    RV_EQ(F->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_DigestFinal ended the operation");
}

static void test_digest_key(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t v[32], buf[35], out[32], want[32];
    h_random(v, sizeof(v));
    CK_ATTRIBUTE open[] = { { CKA_SENSITIVE, &h_false, 1 }, { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_GENERIC_SECRET, v, sizeof(v), open, NELEM(open));
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    CK_ULONG len = sizeof(want);

    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_Digest(s, v, sizeof(v), want, &len), CKR_OK, "C_Digest(value)");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestKey(s, k), CKR_OK, "C_DigestKey(non-sensitive generic secret)");
    len = sizeof(out);
    RV_EQ(F->C_DigestFinal(s, out, &len), CKR_OK, "C_DigestFinal");
    CHECK(len == 32 && memcmp(out, want, 32) == 0, "C_DigestKey digests the key's value");

    memcpy(buf, "abc", 3);
    memcpy(buf + 3, v, sizeof(v));
    len = sizeof(want);
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_Digest(s, buf, sizeof(buf), want, &len), CKR_OK, "C_Digest(\"abc\" || value)");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), CKR_OK, "C_DigestUpdate");
    RV_EQ(F->C_DigestKey(s, k), CKR_OK, "C_DigestKey after an update");
    len = sizeof(out);
    RV_EQ(F->C_DigestFinal(s, out, &len), CKR_OK, "C_DigestFinal");
    CHECK(len == 32 && memcmp(out, want, 32) == 0, "data then key digest in order");

    CK_OBJECT_HANDLE sens = h_import_key(s, CKK_GENERIC_SECRET, v, sizeof(v), NULL, 0);
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestKey(s, sens), CKR_KEY_INDIGESTIBLE, "C_DigestKey(sensitive key)");
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit");
    RV_EQ(F->C_DigestKey(s, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID, "C_DigestKey(bad handle)");
    RV_EQ(F->C_DigestKey(s, k), CKR_OPERATION_NOT_INITIALIZED, "C_DigestKey without C_DigestInit");
}

/* RFC 4231 test cases 1, 4 and 6 (keys of 20, 25 and 131 bytes). */
typedef struct hmac_case {
    CK_MECHANISM_TYPE m;
    int tc;
    const char *mac;
} hmac_case;

static const hmac_case HMACS[] = {
    { CKM_SHA256_HMAC, 1, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { CKM_SHA384_HMAC, 1, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec6"
                          "82aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6" },
    { CKM_SHA512_HMAC, 1, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                          "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" },
    { CKM_SHA256_HMAC, 4, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { CKM_SHA384_HMAC, 4, "3e8a69b7783c25851933ab6290af6ca77a9981480850009c"
                          "c5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb" },
    { CKM_SHA512_HMAC, 4, "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
                          "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" },
    { CKM_SHA256_HMAC, 6, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { CKM_SHA512_HMAC, 6, "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                          "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" },
};

static size_t rfc4231(int tc, uint8_t *key, uint8_t *data, size_t *dlen)
{
    static const char tc6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    switch (tc) {
    case 1:
        memset(key, 0x0b, 20);
        memcpy(data, "Hi There", 8);
        *dlen = 8;
        return 20;
    case 4:
        for (int i = 0; i < 25; i++)
            key[i] = (uint8_t)(i + 1);
        memset(data, 0xcd, 50);
        *dlen = 50;
        return 25;
    default:
        memset(key, 0xaa, 131);
        memcpy(data, tc6, sizeof(tc6) - 1);
        *dlen = sizeof(tc6) - 1;
        return 131;
    }
}

static CK_OBJECT_HANDLE mac_key(CK_SESSION_HANDLE s, const uint8_t *k, size_t len)
{
    CK_ATTRIBUTE use[] = { { CKA_SIGN, &h_true, 1 }, { CKA_VERIFY, &h_true, 1 } };
    return h_import_key(s, CKK_GENERIC_SECRET, k, len, use, NELEM(use));
}

static void test_hmac_rfc4231_sign_and_verify(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    for (size_t i = 0; i < NELEM(HMACS); i++) {
        uint8_t key[131], data[64], want[64], mac[64];
        size_t dlen = 0;
        size_t klen = rfc4231(HMACS[i].tc, key, data, &dlen);
        size_t wlen = h_unhex(HMACS[i].mac, want, sizeof(want));
        CK_OBJECT_HANDLE k = mac_key(s, key, klen);
        CK_MECHANISM m = { HMACS[i].m, NULL, 0 };
        CK_ULONG len = 0;

        RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit(HMAC)");
        RV_EQ(F->C_Sign(s, data, dlen, NULL, &len), CKR_OK, "C_Sign size query");
        CHECK(len == wlen, "HMAC size query gives the full MAC length");
        len = 4;
        RV_EQ(F->C_Sign(s, data, dlen, mac, &len), CKR_BUFFER_TOO_SMALL, "C_Sign into 4 bytes");
        len = sizeof(mac);
        RV_EQ(F->C_Sign(s, data, dlen, mac, &len), CKR_OK, "C_Sign(HMAC)");
        CHECK(len == wlen && memcmp(mac, want, wlen) == 0, "HMAC equals RFC 4231");

        /* An abandoned operation leaves nothing behind in the next one on the same key (the
         * session's context is reused with the key's precomputed states). */
        RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
        RV_EQ(F->C_SignUpdate(s, data, 5), CKR_OK, "C_SignUpdate (then abandoned)");
        RV_EQ(F->C_SignInit(s, NULL, k), CKR_OK, "C_SignInit(NULL) ends it");
        RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
        len = sizeof(mac);
        RV_EQ(F->C_Sign(s, data, dlen, mac, &len), CKR_OK, "C_Sign after an abandoned one");
        CHECK(len == wlen && memcmp(mac, want, wlen) == 0,
              "HMAC after an abandoned operation equals RFC 4231");

        RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
        RV_EQ(F->C_SignUpdate(s, data, 3), CKR_OK, "C_SignUpdate");
        RV_EQ(F->C_SignUpdate(s, data + 3, dlen - 3), CKR_OK, "C_SignUpdate");
        len = sizeof(mac);
        RV_EQ(F->C_SignFinal(s, mac, &len), CKR_OK, "C_SignFinal");
        CHECK(len == wlen && memcmp(mac, want, wlen) == 0, "multi-part HMAC equals RFC 4231");

        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_Verify(s, data, dlen, want, wlen), CKR_OK, "C_Verify(RFC 4231 MAC)");
        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_VerifyUpdate(s, data, 1), CKR_OK, "C_VerifyUpdate");
        RV_EQ(F->C_VerifyUpdate(s, data + 1, dlen - 1), CKR_OK, "C_VerifyUpdate");
        RV_EQ(F->C_VerifyFinal(s, want, wlen), CKR_OK, "C_VerifyFinal");

        want[wlen / 2] ^= 0x20;
        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_Verify(s, data, dlen, want, wlen), CKR_SIGNATURE_INVALID, "C_Verify(bad MAC)");
        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_VerifyUpdate(s, data, dlen), CKR_OK, "C_VerifyUpdate");
        RV_EQ(F->C_VerifyFinal(s, want, wlen), CKR_SIGNATURE_INVALID, "C_VerifyFinal(bad MAC)");
        want[wlen / 2] ^= 0x20;
        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_Verify(s, data, dlen, want, wlen - 1), CKR_SIGNATURE_LEN_RANGE,
              "C_Verify(MAC one byte short)");
        uint8_t longer[80];
        memcpy(longer, want, wlen);
        longer[wlen] = 0;
        RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
        RV_EQ(F->C_Verify(s, data, dlen, longer, wlen + 1), CKR_SIGNATURE_LEN_RANGE,
              "C_Verify(MAC one byte long)");
        RV_EQ(F->C_Verify(s, data, dlen, want, wlen), CKR_OPERATION_NOT_INITIALIZED,
              "the failed C_Verify ended the operation");
    }
}

static void test_sign_and_verify_errors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t kv[32], mac[64];
    h_random(kv, sizeof(kv));
    CK_ATTRIBUTE verify_only[] = { { CKA_VERIFY, &h_true, 1 } };
    CK_OBJECT_HANDLE nv = h_import_key(s, CKK_GENERIC_SECRET, kv, 32, verify_only, 1);
    CK_ATTRIBUTE sign_only[] = { { CKA_SIGN, &h_true, 1 } };
    CK_OBJECT_HANDLE ns = h_import_key(s, CKK_GENERIC_SECRET, kv, 32, sign_only, 1);
    CK_ATTRIBUTE aes_use[] = { { CKA_SIGN, &h_true, 1 }, { CKA_VERIFY, &h_true, 1 } };
    CK_OBJECT_HANDLE aes = h_import_key(s, CKK_AES, kv, 32, aes_use, NELEM(aes_use));
    CK_OBJECT_HANDLE k = mac_key(s, kv, 32);
    CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
    CK_ULONG len = sizeof(mac);

    RV_EQ(F->C_SignInit(s, &m, nv), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_SignInit with a key without CKA_SIGN");
    RV_EQ(F->C_VerifyInit(s, &m, ns), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_VerifyInit with a key without CKA_VERIFY");
    RV_EQ(F->C_SignInit(s, &m, aes), CKR_KEY_TYPE_INCONSISTENT, "C_SignInit(HMAC) with an AES key");
    RV_EQ(F->C_SignInit(s, &m, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID, "C_SignInit(bad key)");
    RV_EQ(F->C_VerifyInit(s, &m, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID, "C_VerifyInit(bad key)");
    CK_MECHANISM gcm = { CKM_AES_GCM, NULL, 0 };
    RV_EQ(F->C_SignInit(s, &gcm, k), CKR_MECHANISM_INVALID, "C_SignInit(CKM_AES_GCM)");
    CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
    RV_EQ(F->C_SignInit(s, &sha, k), CKR_MECHANISM_INVALID, "C_SignInit(CKM_SHA256)");

    RV_EQ(F->C_Sign(s, kv, 8, mac, &len), CKR_OPERATION_NOT_INITIALIZED, "C_Sign without init");
    RV_EQ(F->C_SignUpdate(s, kv, 8), CKR_OPERATION_NOT_INITIALIZED, "C_SignUpdate without init");
    RV_EQ(F->C_SignFinal(s, mac, &len), CKR_OPERATION_NOT_INITIALIZED, "C_SignFinal without init");
    RV_EQ(F->C_Verify(s, kv, 8, mac, 32), CKR_OPERATION_NOT_INITIALIZED, "C_Verify without init");
    RV_EQ(F->C_VerifyUpdate(s, kv, 8), CKR_OPERATION_NOT_INITIALIZED,
          "C_VerifyUpdate without init");
    RV_EQ(F->C_VerifyFinal(s, mac, 32), CKR_OPERATION_NOT_INITIALIZED, "C_VerifyFinal without init");

    RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
    RV_EQ(F->C_SignInit(s, &m, k), CKR_OPERATION_ACTIVE, "C_SignInit twice");
    RV_EQ(F->C_SignInit(s, NULL, k), CKR_OK, "C_SignInit(NULL) cancels");
    RV_EQ(F->C_SignUpdate(s, kv, 8), CKR_OPERATION_NOT_INITIALIZED, "C_SignUpdate after cancel");
    RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
    RV_EQ(F->C_Sign(s, kv, 8, mac, NULL), CKR_ARGUMENTS_BAD, "C_Sign(pulSignatureLen NULL)");
    len = sizeof(mac);
    RV_EQ(F->C_Sign(s, kv, 8, mac, &len), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_Sign ended the operation");
    RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit");
    RV_EQ(F->C_SignUpdate(s, kv, 8), CKR_OK, "C_SignUpdate");
    len = sizeof(mac);
    RV_EQ(F->C_Sign(s, kv, 8, mac, &len), CKR_OPERATION_ACTIVE, "C_Sign after C_SignUpdate");
    RV_REQ(F->C_SignInit(s, &m, k), CKR_OK, "C_SignInit after the refused C_Sign");
    RV_EQ(F->C_SignFinal(s, mac, NULL), CKR_ARGUMENTS_BAD, "C_SignFinal(NULL length)");

    RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
    RV_EQ(F->C_VerifyInit(s, &m, k), CKR_OPERATION_ACTIVE, "C_VerifyInit twice");
    RV_EQ(F->C_Verify(s, kv, 8, NULL, 32), CKR_ARGUMENTS_BAD, "C_Verify(pSignature NULL)");
    RV_EQ(F->C_Verify(s, kv, 8, mac, 32), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_Verify ended the operation");
    RV_REQ(F->C_VerifyInit(s, &m, k), CKR_OK, "C_VerifyInit");
    RV_EQ(F->C_VerifyUpdate(s, kv, 8), CKR_OK, "C_VerifyUpdate");
    RV_EQ(F->C_Verify(s, kv, 8, mac, 32), CKR_OPERATION_ACTIVE, "C_Verify after C_VerifyUpdate");
}

static void test_recover_functions_not_offered(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t kv[32], out[64];
    h_random(kv, sizeof(kv));
    CK_OBJECT_HANDLE k = mac_key(s, kv, 32);
    CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
    CK_ULONG len = sizeof(out);
    RV_IN2(F->C_SignRecoverInit(s, &m, k), CKR_FUNCTION_NOT_SUPPORTED, CKR_MECHANISM_INVALID,
           "C_SignRecoverInit(HMAC)");
    CK_RV rv = F->C_SignRecover(s, kv, 8, out, &len);
    CHECK(rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_SignRecover: not supported or no operation");
    RV_IN2(F->C_VerifyRecoverInit(s, &m, k), CKR_FUNCTION_NOT_SUPPORTED, CKR_MECHANISM_INVALID,
           "C_VerifyRecoverInit(HMAC)");
    len = sizeof(out);
    rv = F->C_VerifyRecover(s, kv, 32, out, &len);
    CHECK(rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_VerifyRecover: not supported or no operation");
}

static const h_case CASES[] = {
    H_CASE(test_every_digest_on_abc),
    H_CASE(test_digest_errors),
    H_CASE(test_digest_key),
    H_CASE(test_hmac_rfc4231_sign_and_verify),
    H_CASE(test_sign_and_verify_errors),
    H_CASE(test_recover_functions_not_offered),
};

int t_digest_register(void)
{
    return h_add_suite("digest", CASES, NELEM(CASES));
}
