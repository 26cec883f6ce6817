/* Key management through the module: C_GenerateKey (AES, generic secret)
 * and the attributes the token sets, C_WrapKey/C_UnwrapKey with AES key
 * wrap (RFC 3394), KWP and the deprecated 0x210A (RFC 5649) on published
 * vectors, the wrap/unwrap permission and template rules, and the
 * functions Custos does not offer (C_DeriveKey, C_GenerateKeyPair).
 * PKCS#11 3.2 sec. 4.7-4.10, 5.18. */
#include "harness.h"

#include <stdio.h>
#include <string.h>

/* RFC 3394 sec. 4.1 and RFC 5649 sec. 6. */
static const char KW_KEK[] = "000102030405060708090a0b0c0d0e0f";
static const char KW_KEY[] = "00112233445566778899aabbccddeeff";
static const char KW_WRAPPED[] = "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5";
static const char KWP_KEK[] = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8";
static const char KWP_KEY20[] = "c37b7e6492584340bed12207808941155068f738";
static const char KWP_WRAPPED20[] =
    "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a";
static const char KWP_KEY7[] = "466f7250617369";
static const char KWP_WRAPPED7[] = "afbeb0f07dfbf5419200f2ccb50bb24f";

static CK_OBJECT_HANDLE kek_from_hex(CK_SESSION_HANDLE s, const char *hex)
{
    uint8_t k[32];
    size_t n = h_unhex(hex, k, sizeof(k));
    CK_ATTRIBUTE use[] = { { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    return h_import_key(s, CKK_AES, k, n, use, NELEM(use));
}

static CK_RV read_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, uint8_t *v, CK_ULONG *len)
{
    CK_ATTRIBUTE a = { CKA_VALUE, v, *len };
    CK_RV rv = F->C_GetAttributeValue(s, o, &a, 1);
    *len = a.ulValueLen;
    return rv;
}

static void test_generate_aes_keys(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    static const CK_ULONG sizes[] = { 16, 24, 32 };
    for (size_t i = 0; i < NELEM(sizes); i++) {
        CK_OBJECT_HANDLE k = h_aes_key(s, sizes[i], NULL, 0);
        CK_ULONG ul = 0;
        CK_BBOOL b = CK_FALSE;
        RV_EQ(h_get_ulong(s, k, CKA_VALUE_LEN, &ul), CKR_OK, "read CKA_VALUE_LEN");
        CHECK(ul == sizes[i], "CKA_VALUE_LEN as asked");
        RV_EQ(h_get_ulong(s, k, CKA_KEY_TYPE, &ul), CKR_OK, "read CKA_KEY_TYPE");
        CHECK(ul == CKK_AES, "CKA_KEY_TYPE CKK_AES");
        RV_EQ(h_get_ulong(s, k, CKA_KEY_GEN_MECHANISM, &ul), CKR_OK, "read CKA_KEY_GEN_MECHANISM");
        CHECK(ul == CKM_AES_KEY_GEN, "CKA_KEY_GEN_MECHANISM CKM_AES_KEY_GEN");
        RV_EQ(h_get_bool(s, k, CKA_LOCAL, &b), CKR_OK, "read CKA_LOCAL");
        CHECK(b == CK_TRUE, "generated key: CKA_LOCAL true");
        RV_EQ(h_get_bool(s, k, CKA_ALWAYS_SENSITIVE, &b), CKR_OK, "read CKA_ALWAYS_SENSITIVE");
        CHECK(b == CK_TRUE, "generated sensitive key: CKA_ALWAYS_SENSITIVE true");
        RV_EQ(h_get_bool(s, k, CKA_NEVER_EXTRACTABLE, &b), CKR_OK, "read CKA_NEVER_EXTRACTABLE");
        CHECK(b == CK_TRUE, "generated non-extractable key: CKA_NEVER_EXTRACTABLE true");
        RV_EQ(h_gcm_round_trip(s, k, (uint32_t)i), CKR_OK, "generated key encrypts and decrypts");
    }

    CK_ATTRIBUTE open[] = { { CKA_SENSITIVE, &h_false, 1 }, { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE a = h_aes_key(s, 32, open, NELEM(open));
    CK_OBJECT_HANDLE b = h_aes_key(s, 32, open, NELEM(open));
    uint8_t va[32], vb[32];
    CK_ULONG la = sizeof(va), lb = sizeof(vb);
    RV_EQ(read_value(s, a, va, &la), CKR_OK, "CKA_VALUE of a non-sensitive generated key");
    RV_EQ(read_value(s, b, vb, &lb), CKR_OK, "CKA_VALUE of another");
    CHECK(la == 32 && lb == 32 && memcmp(va, vb, 32) != 0, "two generated keys differ");
    CK_BBOOL flag = CK_TRUE;
    RV_EQ(h_get_bool(s, a, CKA_ALWAYS_SENSITIVE, &flag), CKR_OK, "read CKA_ALWAYS_SENSITIVE");
    CHECK(flag == CK_FALSE, "non-sensitive key: CKA_ALWAYS_SENSITIVE false");
    RV_EQ(h_get_bool(s, a, CKA_NEVER_EXTRACTABLE, &flag), CKR_OK, "read CKA_NEVER_EXTRACTABLE");
    CHECK(flag == CK_FALSE, "extractable key: CKA_NEVER_EXTRACTABLE false");
}

static void test_generate_key_errors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k;
    CK_ULONG len17 = 17, len32 = 32;
    CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
    CK_OBJECT_CLASS data = CKO_DATA;
    uint8_t v[32] = { 0 };

    CK_ATTRIBUTE none[] = { { CKA_ENCRYPT, &h_true, 1 } };
    RV_EQ(F->C_GenerateKey(s, &m, none, NELEM(none), &k), CKR_TEMPLATE_INCOMPLETE,
          "C_GenerateKey(AES) without CKA_VALUE_LEN");
    CK_ATTRIBUTE l17[] = { { CKA_VALUE_LEN, &len17, sizeof(len17) } };
    RV_IN2(F->C_GenerateKey(s, &m, l17, NELEM(l17), &k), CKR_ATTRIBUTE_VALUE_INVALID,
           CKR_KEY_SIZE_RANGE, "C_GenerateKey(AES, 17 bytes)");
    CK_ATTRIBUTE withval[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_VALUE, v, 32 } };
    RV_IN2(F->C_GenerateKey(s, &m, withval, NELEM(withval), &k), CKR_ATTRIBUTE_READ_ONLY,
           CKR_TEMPLATE_INCONSISTENT, "C_GenerateKey with CKA_VALUE");
    CK_ATTRIBUTE wrongkt[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) },
                               { CKA_KEY_TYPE, &gen, sizeof(gen) } };
    RV_EQ(F->C_GenerateKey(s, &m, wrongkt, NELEM(wrongkt), &k), CKR_TEMPLATE_INCONSISTENT,
          "C_GenerateKey(AES) with CKK_GENERIC_SECRET");
    CK_ATTRIBUTE wrongcls[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) },
                                { CKA_CLASS, &data, sizeof(data) } };
    RV_EQ(F->C_GenerateKey(s, &m, wrongcls, NELEM(wrongcls), &k), CKR_TEMPLATE_INCONSISTENT,
          "C_GenerateKey(AES) with CKO_DATA");
    CK_ATTRIBUTE ok[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) } };
    RV_EQ(F->C_GenerateKey(s, NULL, ok, 1, &k), CKR_ARGUMENTS_BAD, "C_GenerateKey(pMechanism NULL)");
    RV_EQ(F->C_GenerateKey(s, &m, ok, 1, NULL), CKR_ARGUMENTS_BAD, "C_GenerateKey(phKey NULL)");
    RV_EQ(F->C_GenerateKey(s, &m, NULL, 1, &k), CKR_ARGUMENTS_BAD, "C_GenerateKey(pTemplate NULL, 1)");
    CK_MECHANISM unknown = { 0x7ffffff0UL, NULL, 0 };
    RV_EQ(F->C_GenerateKey(s, &unknown, ok, 1, &k), CKR_MECHANISM_INVALID,
          "C_GenerateKey(unknown mechanism)");
    CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
    RV_EQ(F->C_GenerateKey(s, &sha, ok, 1, &k), CKR_MECHANISM_INVALID, "C_GenerateKey(CKM_SHA256)");
    RV_EQ(F->C_GenerateKey(H_BAD_SESSION, &m, ok, 1, &k), CKR_SESSION_HANDLE_INVALID,
          "C_GenerateKey(bad session)");

    CK_SESSION_HANDLE ro = h_open(H.slot, 0);
    CK_ATTRIBUTE tok[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_TOKEN, &h_true, 1 } };
    RV_EQ(F->C_GenerateKey(ro, &m, tok, NELEM(tok), &k), CKR_SESSION_READ_ONLY,
          "C_GenerateKey(token key) in an RO session");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(F->C_GenerateKey(s, &m, ok, 1, &k), CKR_USER_NOT_LOGGED_IN,
          "C_GenerateKey(private by default) when not logged in");
}

static void test_generate_generic_secret(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_MECHANISM m = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
    CK_ULONG len = 32, ul = 0;
    CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &len, sizeof(len) }, { CKA_SIGN, &h_true, 1 },
                         { CKA_VERIFY, &h_true, 1 } };
    CK_OBJECT_HANDLE k;
    RV_REQ(F->C_GenerateKey(s, &m, t, NELEM(t), &k), CKR_OK, "C_GenerateKey(generic secret)");
    RV_EQ(h_get_ulong(s, k, CKA_KEY_TYPE, &ul), CKR_OK, "read CKA_KEY_TYPE");
    CHECK(ul == CKK_GENERIC_SECRET, "CKK_GENERIC_SECRET");
    RV_EQ(h_get_ulong(s, k, CKA_VALUE_LEN, &ul), CKR_OK, "read CKA_VALUE_LEN");
    CHECK(ul == 32, "32 bytes");
    CK_MECHANISM hm = { CKM_SHA256_HMAC, NULL, 0 };
    uint8_t mac[32];
    CK_ULONG maclen = sizeof(mac);
    RV_REQ(F->C_SignInit(s, &hm, k), CKR_OK, "C_SignInit(HMAC, generated key)");
    RV_EQ(F->C_Sign(s, (CK_BYTE_PTR) "abc", 3, mac, &maclen), CKR_OK, "C_Sign");
    RV_REQ(F->C_VerifyInit(s, &hm, k), CKR_OK, "C_VerifyInit");
    RV_EQ(F->C_Verify(s, (CK_BYTE_PTR) "abc", 3, mac, maclen), CKR_OK, "C_Verify");
    CK_ATTRIBUTE none[] = { { CKA_SIGN, &h_true, 1 } };
    RV_EQ(F->C_GenerateKey(s, &m, none, NELEM(none), &k), CKR_TEMPLATE_INCOMPLETE,
          "C_GenerateKey(generic secret) without CKA_VALUE_LEN");
}

/* Unwrap a published vector, read the key back, wrap it again. */
static void vector_round_trip(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, const char *kekhex,
                              const char *keyhex, const char *wrappedhex, CK_KEY_TYPE kt)
{
    CK_OBJECT_HANDLE kek = kek_from_hex(s, kekhex);
    uint8_t key[40], wrapped[48], v[48], again[48];
    size_t klen = h_unhex(keyhex, key, sizeof(key));
    size_t wlen = h_unhex(wrappedhex, wrapped, sizeof(wrapped));
    CK_MECHANISM m = { mt, NULL, 0 };
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_SENSITIVE, &h_false, 1 },
        { CKA_EXTRACTABLE, &h_true, 1 },
    };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, wlen, t, NELEM(t), &k), CKR_OK,
          "C_UnwrapKey(published vector)");
    if (k == CK_INVALID_HANDLE)
        return;
    CK_ULONG vlen = sizeof(v);
    RV_EQ(read_value(s, k, v, &vlen), CKR_OK, "read the unwrapped value");
    CHECK(vlen == klen && memcmp(v, key, klen) == 0, "unwrapped value is the published key");
    CK_BBOOL b = CK_TRUE;
    RV_EQ(h_get_bool(s, k, CKA_LOCAL, &b), CKR_OK, "read CKA_LOCAL");
    CHECK(b == CK_FALSE, "unwrapped key: CKA_LOCAL false");
    CK_ULONG alen = 0;
    RV_EQ(F->C_WrapKey(s, &m, kek, k, NULL, &alen), CKR_OK, "C_WrapKey size query");
    CHECK(alen == wlen, "C_WrapKey size query gives the wrapped length");
    CK_ULONG tiny = 4;
    RV_EQ(F->C_WrapKey(s, &m, kek, k, again, &tiny), CKR_BUFFER_TOO_SMALL, "C_WrapKey into 4 bytes");
    CHECK(tiny == wlen, "CKR_BUFFER_TOO_SMALL gives the wrapped length");
    alen = sizeof(again);
    RV_EQ(F->C_WrapKey(s, &m, kek, k, again, &alen), CKR_OK, "C_WrapKey");
    CHECK(alen == wlen && memcmp(again, wrapped, wlen) == 0,
          "wrapping again gives the published vector");
}

static void test_aes_key_wrap_rfc3394_vector(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    vector_round_trip(s, CKM_AES_KEY_WRAP, KW_KEK, KW_KEY, KW_WRAPPED, CKK_AES);
}

static void test_aes_key_wrap_kwp_rfc5649_vectors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    vector_round_trip(s, CKM_AES_KEY_WRAP_KWP, KWP_KEK, KWP_KEY20, KWP_WRAPPED20,
                      CKK_GENERIC_SECRET);
    vector_round_trip(s, CKM_AES_KEY_WRAP_KWP, KWP_KEK, KWP_KEY7, KWP_WRAPPED7,
                      CKK_GENERIC_SECRET);
}

static void test_aes_key_wrap_pad_0x210a_is_rfc5649(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    vector_round_trip(s, CKM_AES_KEY_WRAP_PAD, KWP_KEK, KWP_KEY20, KWP_WRAPPED20,
                      CKK_GENERIC_SECRET);
}

static void test_wrap_unwrap_round_trip(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE wu[] = { { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    CK_OBJECT_HANDLE kek = h_aes_key(s, 32, wu, NELEM(wu));
    CK_ATTRIBUTE ex[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE dek = h_aes_key(s, 32, ex, NELEM(ex));
    static const CK_MECHANISM_TYPE mechs[] = { CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP,
                                               CKM_AES_KEY_WRAP_PAD };
    for (size_t i = 0; i < NELEM(mechs); i++) {
        CK_MECHANISM m = { mechs[i], NULL, 0 };
        uint8_t w[64];
        CK_ULONG wlen = sizeof(w);
        RV_EQ(F->C_WrapKey(s, &m, kek, dek, w, &wlen), CKR_OK, "C_WrapKey(generated DEK)");
        CHECK(wlen == 40, "a 32-byte key wraps to 40 bytes");
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ATTRIBUTE t[] = {
            { CKA_CLASS, &cls, sizeof(cls) },     { CKA_KEY_TYPE, &kt, sizeof(kt) },
            { CKA_ENCRYPT, &h_true, 1 },          { CKA_DECRYPT, &h_true, 1 },
            { CKA_SENSITIVE, &h_true, 1 },        { CKA_EXTRACTABLE, &h_false, 1 },
        };
        CK_OBJECT_HANDLE u = CK_INVALID_HANDLE;
        RV_EQ(F->C_UnwrapKey(s, &m, kek, w, wlen, t, NELEM(t), &u), CKR_OK, "C_UnwrapKey");
        if (u == CK_INVALID_HANDLE)
            continue;
        CK_BBOOL b = CK_TRUE;
        RV_EQ(h_get_bool(s, u, CKA_ALWAYS_SENSITIVE, &b), CKR_OK, "read CKA_ALWAYS_SENSITIVE");
        CHECK(b == CK_FALSE, "unwrapped key: CKA_ALWAYS_SENSITIVE false");
        b = CK_TRUE;
        RV_EQ(h_get_bool(s, u, CKA_NEVER_EXTRACTABLE, &b), CKR_OK, "read CKA_NEVER_EXTRACTABLE");
        CHECK(b == CK_FALSE, "unwrapped key: CKA_NEVER_EXTRACTABLE false");
        CK_ULONG ul = 0;
        RV_EQ(h_get_ulong(s, u, CKA_VALUE_LEN, &ul), CKR_OK, "read CKA_VALUE_LEN");
        CHECK(ul == 32, "unwrapped key has the DEK's length");

        /* The unwrapped key is the same key: what one encrypts, the other
         * decrypts. */
        uint8_t iv[12], pt[24] = "the same key, both sides", ct[64], back[64];
        CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back);
        h_random(iv, sizeof(iv));
        CK_GCM_PARAMS p;
        CK_MECHANISM g;
        h_gcm(&p, &g, iv, sizeof(iv), NULL, 0, 128);
        RV_REQ(F->C_EncryptInit(s, &g, dek), CKR_OK, "C_EncryptInit(DEK)");
        RV_EQ(F->C_Encrypt(s, pt, sizeof(pt), ct, &ctlen), CKR_OK, "C_Encrypt(DEK)");
        RV_REQ(F->C_DecryptInit(s, &g, u), CKR_OK, "C_DecryptInit(unwrapped)");
        RV_EQ(F->C_Decrypt(s, ct, ctlen, back, &backlen), CKR_OK, "C_Decrypt(unwrapped)");
        CHECK(backlen == sizeof(pt) && memcmp(back, pt, backlen) == 0,
              "unwrapped key decrypts what the original encrypted");
    }
}

static void test_wrap_errors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE wu[] = { { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    CK_OBJECT_HANDLE kek = h_aes_key(s, 32, wu, NELEM(wu));
    CK_OBJECT_HANDLE nowrap = h_aes_key(s, 32, NULL, 0);
    CK_ATTRIBUTE ex[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE dek = h_aes_key(s, 32, ex, NELEM(ex));
    CK_OBJECT_HANDLE stuck = h_aes_key(s, 32, NULL, 0); /* not extractable */
    CK_MECHANISM m = { CKM_AES_KEY_WRAP, NULL, 0 };
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);

    RV_EQ(F->C_WrapKey(s, &m, kek, stuck, w, &wlen), CKR_KEY_UNEXTRACTABLE,
          "C_WrapKey of a non-extractable key");
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, nowrap, dek, w, &wlen), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_WrapKey with a key without CKA_WRAP");
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, H_BAD_OBJECT, dek, w, &wlen), CKR_WRAPPING_KEY_HANDLE_INVALID,
          "C_WrapKey(bad wrapping key)");
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, kek, H_BAD_OBJECT, w, &wlen), CKR_KEY_HANDLE_INVALID,
          "C_WrapKey(bad key)");
    RV_EQ(F->C_WrapKey(s, &m, kek, dek, w, NULL), CKR_ARGUMENTS_BAD,
          "C_WrapKey(pulWrappedKeyLen NULL)");
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, NULL, kek, dek, w, &wlen), CKR_ARGUMENTS_BAD, "C_WrapKey(pMechanism NULL)");
    CK_MECHANISM unknown = { 0x7ffffff0UL, NULL, 0 };
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &unknown, kek, dek, w, &wlen), CKR_MECHANISM_INVALID,
          "C_WrapKey(unknown mechanism)");
    CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &sha, kek, dek, w, &wlen), CKR_MECHANISM_INVALID,
          "C_WrapKey(CKM_SHA256)");

    uint8_t gv[32];
    h_random(gv, sizeof(gv));
    CK_OBJECT_HANDLE gkek = h_import_key(s, CKK_GENERIC_SECRET, gv, 32, wu, NELEM(wu));
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, gkek, dek, w, &wlen), CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
          "C_WrapKey with a generic-secret wrapping key");

    /* RFC 3394 wraps multiples of 8 bytes only. */
    CK_ATTRIBUTE ex7[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE odd = h_import_key(s, CKK_GENERIC_SECRET, gv, 7, ex7, NELEM(ex7));
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, kek, odd, w, &wlen), CKR_KEY_SIZE_RANGE,
          "C_WrapKey(RFC 3394) of a 7-byte key");
    CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &kwp, kek, odd, w, &wlen), CKR_OK, "C_WrapKey(KWP) of a 7-byte key");
    CHECK(wlen == 16, "7 bytes wrap to 16 with KWP");
}

static void test_wrap_with_trusted(void)
{
    char label[40], r[17];
    h_random_hex(r, 8);
    snprintf(label, sizeof(label), "api-trusted-%s", r);
    CK_SESSION_HANDLE s = h_open(H.slot, 1);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    uint8_t kv[32];
    h_random(kv, sizeof(kv));

    /* Only the SO may set CKA_TRUSTED (sec. 4.9). */
    h_login(s, CKU_SO, H.so_pin);
    CK_ATTRIBUTE trusted[] = {
        { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, kv, sizeof(kv) },    { CKA_TOKEN, &h_true, 1 },
        { CKA_PRIVATE, &h_false, 1 },     { CKA_WRAP, &h_true, 1 },
        { CKA_TRUSTED, &h_true, 1 },      { CKA_LABEL, label, strlen(label) },
    };
    CK_OBJECT_HANDLE tk = CK_INVALID_HANDLE;
    RV_EQ(F->C_CreateObject(s, trusted, NELEM(trusted), &tk), CKR_OK,
          "SO creates a CKA_TRUSTED wrapping key");
    RV_EQ(F->C_Logout(s), CKR_OK, "SO C_Logout");

    h_login(s, CKU_USER, H.user_pin);
    CK_OBJECT_HANDLE o;
    CK_ATTRIBUTE user_trusted[] = {
        { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, kv, sizeof(kv) },    { CKA_WRAP, &h_true, 1 },
        { CKA_TRUSTED, &h_true, 1 },
    };
    RV_EQ(F->C_CreateObject(s, user_trusted, NELEM(user_trusted), &o), CKR_ATTRIBUTE_READ_ONLY,
          "the user sets CKA_TRUSTED");
    CK_ATTRIBUTE wu[] = { { CKA_WRAP, &h_true, 1 } };
    CK_OBJECT_HANDLE plain = h_aes_key(s, 32, wu, NELEM(wu));
    CK_ATTRIBUTE set_tr = { CKA_TRUSTED, &h_true, 1 };
    RV_EQ(F->C_SetAttributeValue(s, plain, &set_tr, 1), CKR_ATTRIBUTE_READ_ONLY,
          "the user sets CKA_TRUSTED with C_SetAttributeValue");

    CK_ATTRIBUTE wwt[] = { { CKA_EXTRACTABLE, &h_true, 1 }, { CKA_WRAP_WITH_TRUSTED, &h_true, 1 } };
    CK_OBJECT_HANDLE guarded = h_aes_key(s, 32, wwt, NELEM(wwt));
    CK_MECHANISM m = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);
    RV_EQ(F->C_WrapKey(s, &m, plain, guarded, w, &wlen), CKR_KEY_NOT_WRAPPABLE,
          "C_WrapKey of a WRAP_WITH_TRUSTED key with an untrusted key");
    if (tk != CK_INVALID_HANDLE) {
        CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
        CK_ULONG n = 0;
        RV_REQ(F->C_FindObjectsInit(s, &byl, 1), CKR_OK, "C_FindObjectsInit");
        RV_EQ(F->C_FindObjects(s, &tk, 1, &n), CKR_OK, "find the trusted key");
        RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
        if (n == 1) {
            wlen = sizeof(w);
            RV_EQ(F->C_WrapKey(s, &m, tk, guarded, w, &wlen), CKR_OK,
                  "C_WrapKey of a WRAP_WITH_TRUSTED key with a trusted key");
            RV_EQ(F->C_DestroyObject(s, tk), CKR_OK, "destroy the trusted key");
        }
    }
    CK_ATTRIBUTE unset = { CKA_WRAP_WITH_TRUSTED, &h_false, 1 };
    RV_EQ(F->C_SetAttributeValue(s, guarded, &unset, 1), CKR_ATTRIBUTE_READ_ONLY,
          "CKA_WRAP_WITH_TRUSTED cannot go back to false");
}

static void test_unwrap_template_rules(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len16 = 16, len32 = 32;
    CK_ATTRIBUTE ut[] = { { CKA_EXTRACTABLE, &h_false, 1 }, { CKA_ENCRYPT, &h_true, 1 } };
    uint8_t kv[16];
    h_unhex(KW_KEK, kv, sizeof(kv));
    CK_ATTRIBUTE kx[] = { { CKA_UNWRAP, &h_true, 1 }, { CKA_UNWRAP_TEMPLATE, ut, sizeof(ut) } };
    CK_OBJECT_HANDLE kek = h_import_key(s, CKK_AES, kv, 16, kx, NELEM(kx));
    uint8_t wrapped[24];
    h_unhex(KW_WRAPPED, wrapped, sizeof(wrapped));
    CK_MECHANISM m = { CKM_AES_KEY_WRAP, NULL, 0 };
    CK_OBJECT_HANDLE u = CK_INVALID_HANDLE;

    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), t, NELEM(t), &u), CKR_OK,
          "C_UnwrapKey under a CKA_UNWRAP_TEMPLATE");
    CK_BBOOL b = CK_FALSE;
    RV_EQ(h_get_bool(s, u, CKA_ENCRYPT, &b), CKR_OK, "read CKA_ENCRYPT");
    CHECK(b == CK_TRUE, "the unwrap template's CKA_ENCRYPT applied");
    b = CK_TRUE;
    RV_EQ(h_get_bool(s, u, CKA_EXTRACTABLE, &b), CKR_OK, "read CKA_EXTRACTABLE");
    CHECK(b == CK_FALSE, "the unwrap template's CKA_EXTRACTABLE applied");

    CK_ATTRIBUTE clash[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_EXTRACTABLE, &h_true, 1 } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), clash, NELEM(clash), &u),
          CKR_TEMPLATE_INCONSISTENT, "caller template conflicting with CKA_UNWRAP_TEMPLATE");
    CK_ATTRIBUTE lenclash[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                                { CKA_VALUE_LEN, &len32, sizeof(len32) } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), lenclash, NELEM(lenclash), &u),
          CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN 32 for a 16-byte wrapped key");
    CK_ATTRIBUTE lenok[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                             { CKA_VALUE_LEN, &len16, sizeof(len16) } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), lenok, NELEM(lenok), &u), CKR_OK,
          "CKA_VALUE_LEN matching the wrapped key");
    CK_ATTRIBUTE noclass[] = { { CKA_KEY_TYPE, &kt, sizeof(kt) } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), noclass, NELEM(noclass), &u),
          CKR_TEMPLATE_INCOMPLETE, "C_UnwrapKey without CKA_CLASS");
    CK_ATTRIBUTE withval[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                               { CKA_VALUE, kv, 16 } };
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), withval, NELEM(withval), &u),
          CKR_ATTRIBUTE_READ_ONLY, "C_UnwrapKey with CKA_VALUE in the template");
}

static void test_unwrap_errors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE kek = kek_from_hex(s, KW_KEK);
    CK_OBJECT_HANDLE kwpkek = kek_from_hex(s, KWP_KEK);
    uint8_t kv[16];
    h_unhex(KW_KEK, kv, sizeof(kv));
    CK_ATTRIBUTE wraponly[] = { { CKA_WRAP, &h_true, 1 } };
    CK_OBJECT_HANDLE nounwrap = h_import_key(s, CKK_AES, kv, 16, wraponly, NELEM(wraponly));
    uint8_t wrapped[24], bad[24], kwp[32], badkwp[32];
    h_unhex(KW_WRAPPED, wrapped, sizeof(wrapped));
    h_unhex(KWP_WRAPPED20, kwp, sizeof(kwp));
    CK_MECHANISM m = { CKM_AES_KEY_WRAP, NULL, 0 };
    CK_MECHANISM mk = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES, gt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) } };
    CK_ATTRIBUTE tg[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &gt, sizeof(gt) } };
    CK_OBJECT_HANDLE u;

    memcpy(bad, wrapped, sizeof(bad));
    bad[10] ^= 0x04;
    RV_EQ(F->C_UnwrapKey(s, &m, kek, bad, sizeof(bad), t, NELEM(t), &u), CKR_WRAPPED_KEY_INVALID,
          "C_UnwrapKey of a corrupted RFC 3394 blob");
    memcpy(badkwp, kwp, sizeof(badkwp));
    badkwp[0] ^= 0x01;
    RV_EQ(F->C_UnwrapKey(s, &mk, kwpkek, badkwp, sizeof(badkwp), tg, NELEM(tg), &u),
          CKR_WRAPPED_KEY_INVALID, "C_UnwrapKey of a corrupted KWP blob");
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, 23, t, NELEM(t), &u), CKR_WRAPPED_KEY_LEN_RANGE,
          "C_UnwrapKey(RFC 3394) of 23 bytes");
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, 8, t, NELEM(t), &u), CKR_WRAPPED_KEY_LEN_RANGE,
          "C_UnwrapKey(RFC 3394) of 8 bytes");
    RV_EQ(F->C_UnwrapKey(s, &mk, kwpkek, kwp, 12, tg, NELEM(tg), &u), CKR_WRAPPED_KEY_LEN_RANGE,
          "C_UnwrapKey(KWP) of 12 bytes");
    RV_EQ(F->C_UnwrapKey(s, &m, nounwrap, wrapped, sizeof(wrapped), t, NELEM(t), &u),
          CKR_KEY_FUNCTION_NOT_PERMITTED, "C_UnwrapKey with a key without CKA_UNWRAP");
    RV_EQ(F->C_UnwrapKey(s, &m, H_BAD_OBJECT, wrapped, sizeof(wrapped), t, NELEM(t), &u),
          CKR_UNWRAPPING_KEY_HANDLE_INVALID, "C_UnwrapKey(bad unwrapping key)");
    RV_EQ(F->C_UnwrapKey(s, &m, kek, NULL, sizeof(wrapped), t, NELEM(t), &u), CKR_ARGUMENTS_BAD,
          "C_UnwrapKey(pWrappedKey NULL)");
    RV_EQ(F->C_UnwrapKey(s, &m, kek, wrapped, sizeof(wrapped), t, NELEM(t), NULL),
          CKR_ARGUMENTS_BAD, "C_UnwrapKey(phKey NULL)");
    RV_EQ(F->C_UnwrapKey(s, NULL, kek, wrapped, sizeof(wrapped), t, NELEM(t), &u),
          CKR_ARGUMENTS_BAD, "C_UnwrapKey(pMechanism NULL)");
    /* The AES-192 KWP vector as an AES key: 20 bytes is no AES length. */
    RV_IN2(F->C_UnwrapKey(s, &mk, kwpkek, kwp, sizeof(kwp), t, NELEM(t), &u),
           CKR_WRAPPED_KEY_INVALID, CKR_TEMPLATE_INCONSISTENT,
           "C_UnwrapKey of a 20-byte value into an AES key");
}

static void test_derive_and_key_pair_not_offered(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0), o, o2;
    CK_MECHANISM d = { CKM_SHA256_KEY_DERIVATION, NULL, 0 };
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
    RV_IN2(F->C_DeriveKey(s, &d, k, t, NELEM(t), &o), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_MECHANISM_INVALID, "C_DeriveKey");
    CK_MECHANISM kp = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    RV_IN2(F->C_GenerateKeyPair(s, &kp, t, 0, t, 0, &o, &o2), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_MECHANISM_INVALID, "C_GenerateKeyPair");
}

static const h_case CASES[] = {
    H_CASE(test_generate_aes_keys),
    H_CASE(test_generate_key_errors),
    H_CASE(test_generate_generic_secret),
    H_CASE(test_aes_key_wrap_rfc3394_vector),
    H_CASE(test_aes_key_wrap_kwp_rfc5649_vectors),
    H_CASE(test_aes_key_wrap_pad_0x210a_is_rfc5649),
    H_CASE(test_wrap_unwrap_round_trip),
    H_CASE(test_wrap_errors),
    H_CASE(test_wrap_with_trusted),
    H_CASE(test_unwrap_template_rules),
    H_CASE(test_unwrap_errors),
    H_CASE(test_derive_and_key_pair_not_offered),
};

int t_keys_register(void)
{
    return h_add_suite("keys", CASES, NELEM(CASES));
}
