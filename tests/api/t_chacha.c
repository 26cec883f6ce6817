/* ChaCha20-Poly1305 and XChaCha20-Poly1305 through the module:
 * CKM_CHACHA20_KEY_GEN, CKM_CHACHA20_POLY1305 with 96- and 192-bit nonces
 * given in bits (the standard) or bytes (NSS, pkcs11-tool), known answers
 * (RFC 8439 sec. 2.8.2, draft-irtf-cfrg-xchacha-03 A.3.1) through an
 * imported key, authentication failures and the mechanism list.
 * PKCS#11 3.2 sec. 5.8, 5.9, 5.14; ChaCha20 and Poly1305 mechanisms. */
#include "harness.h"

#include <string.h>

/* Registered from test_api.c. */
int t_chacha_register(void);

static const char CHA_K[] = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
static const char CHA_A[] = "50515253c0c1c2c3c4c5c6c7";
static const char CHA_P[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
                            "only one tip for the future, sunscreen would be it.";
static const char CHA_N12[] = "070000004041424344454647";
static const char CHA_CT12[] =
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
    "1ae10b594f09e26a7e902ecbd0600691";
static const char CHA_N24[] = "404142434445464748494a4b4c4d4e4f5051525354555657";
static const char CHA_CT24[] =
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
    "c0875924c1c7987947deafd8780acf49";

static void cha_mech(CK_SALSA20_CHACHA20_POLY1305_PARAMS *p, CK_MECHANISM *m, uint8_t *nonce,
                     CK_ULONG noncelen, uint8_t *aad, CK_ULONG aadlen)
{
    *p = (CK_SALSA20_CHACHA20_POLY1305_PARAMS){ nonce, noncelen, aad, aadlen };
    *m = (CK_MECHANISM){ CKM_CHACHA20_POLY1305, p, sizeof(*p) };
}

static CK_RV encrypt_once(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                          const uint8_t *pt, CK_ULONG ptlen, uint8_t *ct, CK_ULONG *ctlen)
{
    CK_RV rv = F->C_EncryptInit(s, m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Encrypt(s, (CK_BYTE_PTR)pt, ptlen, ct, ctlen);
}

static CK_RV decrypt_once(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                          const uint8_t *ct, CK_ULONG ctlen, uint8_t *pt, CK_ULONG *ptlen)
{
    CK_RV rv = F->C_DecryptInit(s, m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Decrypt(s, (CK_BYTE_PTR)ct, ctlen, pt, ptlen);
}

/* C_GenerateKey(CKM_CHACHA20_KEY_GEN) for encryption and decryption,
 * without CKA_VALUE_LEN: a ChaCha20 key has one size. */
static CK_OBJECT_HANDLE chacha_key(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE t[] = {
        { CKA_ENCRYPT, &h_true, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &h_true, sizeof(CK_BBOOL) },
    };
    CK_MECHANISM m = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    RV_REQ(F->C_GenerateKey(s, &m, t, NELEM(t), &k), CKR_OK, "C_GenerateKey(CHACHA20_KEY_GEN)");
    return k;
}

static CK_OBJECT_HANDLE known_key(CK_SESSION_HANDLE s)
{
    uint8_t key[32];
    CK_ATTRIBUTE extra[] = {
        { CKA_ENCRYPT, &h_true, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &h_true, sizeof(CK_BBOOL) },
    };
    REQUIRE(h_unhex(CHA_K, key, sizeof(key)) == 32, "32-byte vector key");
    return h_import_key(s, CKK_CHACHA20, key, sizeof(key), extra, NELEM(extra));
}

static void test_chacha_mechanisms_are_listed_with_info(void)
{
    CK_MECHANISM_TYPE list[128];
    CK_ULONG n = NELEM(list);
    CK_MECHANISM_INFO mi;
    int gen = 0, aead = 0;

    RV_REQ(F->C_GetMechanismList(H.slot, list, &n), CKR_OK, "C_GetMechanismList");
    for (CK_ULONG i = 0; i < n; i++) {
        gen += list[i] == CKM_CHACHA20_KEY_GEN;
        aead += list[i] == CKM_CHACHA20_POLY1305;
    }
    CHECK(gen == 1, "CKM_CHACHA20_KEY_GEN listed once");
    CHECK(aead == 1, "CKM_CHACHA20_POLY1305 listed once");

    RV_EQ(F->C_GetMechanismInfo(H.slot, CKM_CHACHA20_KEY_GEN, &mi), CKR_OK,
          "C_GetMechanismInfo(CHACHA20_KEY_GEN)");
    CHECK(mi.ulMinKeySize == 32 && mi.ulMaxKeySize == 32, "ChaCha20 keys are 32 bytes");
    CHECK(mi.flags & CKF_GENERATE, "key generation flagged CKF_GENERATE");
    CHECK(!(mi.flags & (CKF_ENCRYPT | CKF_DECRYPT)), "key generation does not encrypt");
    RV_EQ(F->C_GetMechanismInfo(H.slot, CKM_CHACHA20_POLY1305, &mi), CKR_OK,
          "C_GetMechanismInfo(CHACHA20_POLY1305)");
    CHECK(mi.ulMinKeySize == 32 && mi.ulMaxKeySize == 32, "ChaCha20-Poly1305 takes 32 bytes");
    CHECK((mi.flags & (CKF_ENCRYPT | CKF_DECRYPT)) == (CKF_ENCRYPT | CKF_DECRYPT),
          "ChaCha20-Poly1305 encrypts and decrypts");
    CHECK(!(mi.flags & (CKF_SIGN | CKF_WRAP | CKF_GENERATE)), "and does nothing else");
}

static void test_chacha_keygen_makes_a_32_byte_chacha20_key(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = chacha_key(s);
    CK_ULONG kt = 0, len = 0, mech = 0, bad = 16;
    CK_BBOOL local = CK_FALSE;
    CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &bad, sizeof(bad) } };
    CK_MECHANISM m = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k2 = CK_INVALID_HANDLE;

    RV_EQ(h_get_ulong(s, k, CKA_KEY_TYPE, &kt), CKR_OK, "CKA_KEY_TYPE");
    CHECK(kt == CKK_CHACHA20, "generated key is CKK_CHACHA20");
    RV_EQ(h_get_ulong(s, k, CKA_VALUE_LEN, &len), CKR_OK, "CKA_VALUE_LEN");
    CHECK(len == 32, "CKA_VALUE_LEN filled in as 32");
    RV_EQ(h_get_ulong(s, k, CKA_KEY_GEN_MECHANISM, &mech), CKR_OK, "CKA_KEY_GEN_MECHANISM");
    CHECK(mech == CKM_CHACHA20_KEY_GEN, "CKA_KEY_GEN_MECHANISM is CKM_CHACHA20_KEY_GEN");
    RV_EQ(h_get_bool(s, k, CKA_LOCAL, &local), CKR_OK, "CKA_LOCAL");
    CHECK(local == CK_TRUE, "generated key is CKA_LOCAL");
    /* Only 32 bytes. */
    RV_EQ(F->C_GenerateKey(s, &m, t, NELEM(t), &k2), CKR_ATTRIBUTE_VALUE_INVALID,
          "C_GenerateKey(CHACHA20_KEY_GEN, CKA_VALUE_LEN 16)");
    bad = 32;
    RV_EQ(F->C_GenerateKey(s, &m, t, NELEM(t), &k2), CKR_OK,
          "C_GenerateKey(CHACHA20_KEY_GEN, CKA_VALUE_LEN 32)");
    /* A parameter is refused. */
    m.pParameter = &bad;
    m.ulParameterLen = sizeof(bad);
    RV_EQ(F->C_GenerateKey(s, &m, NULL, 0, &k2), CKR_MECHANISM_PARAM_INVALID,
          "C_GenerateKey(CHACHA20_KEY_GEN) with a parameter");
}

/* Each nonce unit round-trips single- and multi-part on a generated key,
 * and both units of one length give the same ciphertext. */
static void test_chacha_round_trips_with_12_24_byte_and_96_192_bit_nonces(void)
{
    static const CK_ULONG lens[] = { 12, 96, 24, 192 };
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = chacha_key(s);
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p;
    CK_MECHANISM m;
    uint8_t nonce[24], aad[20], pt[100], ct[4][200], back[200];
    CK_ULONG ctlen[4], backlen, n, total;

    h_random(nonce, sizeof(nonce));
    h_random(aad, sizeof(aad));
    h_random(pt, sizeof(pt));
    for (size_t i = 0; i < NELEM(lens); i++) {
        cha_mech(&p, &m, nonce, lens[i], aad, sizeof(aad));
        ctlen[i] = sizeof(ct[i]);
        RV_EQ(encrypt_once(s, &m, k, pt, sizeof(pt), ct[i], &ctlen[i]), CKR_OK, "C_Encrypt");
        CHECK(ctlen[i] == sizeof(pt) + 16, "ciphertext = plaintext + 16-byte tag");
        CHECK(memcmp(ct[i], pt, sizeof(pt)) != 0, "ciphertext differs from plaintext");
        backlen = sizeof(back);
        RV_EQ(decrypt_once(s, &m, k, ct[i], ctlen[i], back, &backlen), CKR_OK, "C_Decrypt");
        CHECK(backlen == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0,
              "round trip gives the plaintext back");

        /* Multi-part decryption: nothing before the final, all at it. */
        RV_REQ(F->C_DecryptInit(s, &m, k), CKR_OK, "C_DecryptInit");
        total = 0;
        for (CK_ULONG off = 0; off < ctlen[i]; off += 37) {
            CK_ULONG cut = ctlen[i] - off < 37 ? ctlen[i] - off : 37;
            n = sizeof(back) - total;
            RV_EQ(F->C_DecryptUpdate(s, ct[i] + off, cut, back + total, &n), CKR_OK,
                  "C_DecryptUpdate");
            total += n;
        }
        CHECK(total == 0, "C_DecryptUpdate releases nothing before the tag is checked");
        n = sizeof(back) - total;
        RV_EQ(F->C_DecryptFinal(s, back + total, &n), CKR_OK, "C_DecryptFinal");
        CHECK(total + n == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0,
              "multi-part decryption gives the plaintext back");
    }
    CHECK(ctlen[0] == ctlen[1] && memcmp(ct[0], ct[1], ctlen[0]) == 0,
          "12 bytes and 96 bits are the same nonce length");
    CHECK(ctlen[2] == ctlen[3] && memcmp(ct[2], ct[3], ctlen[2]) == 0,
          "24 bytes and 192 bits are the same nonce length");
    CHECK(memcmp(ct[0], ct[2], ctlen[0]) != 0, "XChaCha20 differs from ChaCha20");
}

static void check_known_answer(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const char *nonce_hex,
                               CK_ULONG noncelen, const char *ct_hex)
{
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p;
    CK_MECHANISM m;
    uint8_t nonce[24], aad[12], want[200], got[200], back[200];
    CK_ULONG ptlen = strlen(CHA_P), wantlen, gotlen = sizeof(got), backlen = sizeof(back), n;
    size_t nlen = h_unhex(nonce_hex, nonce, sizeof(nonce));

    REQUIRE(noncelen == nlen || noncelen == nlen * 8, "vector nonce length");
    h_unhex(CHA_A, aad, sizeof(aad));
    wantlen = h_unhex(ct_hex, want, sizeof(want));
    cha_mech(&p, &m, nonce, noncelen, aad, sizeof(aad));
    /* The size query first: exactly plaintext + 16. */
    RV_REQ(F->C_EncryptInit(s, &m, k), CKR_OK, "C_EncryptInit(known answer)");
    n = 0;
    RV_EQ(F->C_Encrypt(s, (CK_BYTE_PTR)CHA_P, ptlen, NULL, &n), CKR_OK, "C_Encrypt size query");
    CHECK(n == wantlen, "size query gives plaintext + 16");
    RV_EQ(F->C_Encrypt(s, (CK_BYTE_PTR)CHA_P, ptlen, got, &gotlen), CKR_OK, "C_Encrypt");
    CHECK(gotlen == wantlen && memcmp(got, want, wantlen) == 0,
          "ciphertext || tag equals the published vector");
    RV_EQ(decrypt_once(s, &m, k, want, wantlen, back, &backlen), CKR_OK, "C_Decrypt(vector)");
    CHECK(backlen == ptlen && memcmp(back, CHA_P, ptlen) == 0,
          "the published vector decrypts to the plaintext");
}

static void test_chacha_known_answers_with_imported_key(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = known_key(s);

    check_known_answer(s, k, CHA_N12, 96, CHA_CT12);
    check_known_answer(s, k, CHA_N12, 12, CHA_CT12);
    check_known_answer(s, k, CHA_N24, 192, CHA_CT24);
    check_known_answer(s, k, CHA_N24, 24, CHA_CT24);
}

/* A wrong AAD or tag: CKR_ENCRYPTED_DATA_INVALID and no plaintext. */
static void test_chacha_wrong_aad_or_tag_is_encrypted_data_invalid(void)
{
    static const CK_ULONG lens[] = { 96, 24 };
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = chacha_key(s);
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p;
    CK_MECHANISM m;
    uint8_t nonce[24], aad[16], pt[64], ct[100], back[100];
    CK_ULONG ctlen, backlen, n;

    h_random(nonce, sizeof(nonce));
    h_random(aad, sizeof(aad));
    h_random(pt, sizeof(pt));
    for (size_t i = 0; i < NELEM(lens); i++) {
        cha_mech(&p, &m, nonce, lens[i], aad, sizeof(aad));
        ctlen = sizeof(ct);
        RV_REQ(encrypt_once(s, &m, k, pt, sizeof(pt), ct, &ctlen), CKR_OK, "C_Encrypt");
        aad[3] ^= 0x01;
        memset(back, 0, sizeof(back));
        backlen = sizeof(back);
        RV_EQ(decrypt_once(s, &m, k, ct, ctlen, back, &backlen), CKR_ENCRYPTED_DATA_INVALID,
              "C_Decrypt with a wrong AAD");
        CHECK(memcmp(back, pt, sizeof(pt)) != 0, "no plaintext after a wrong AAD");
        /* The failure ended the operation. */
        n = sizeof(back);
        RV_EQ(F->C_Decrypt(s, ct, ctlen, back, &n), CKR_OPERATION_NOT_INITIALIZED,
              "operation ended by the failure");
        aad[3] ^= 0x01;
        ct[ctlen - 1] ^= 0x80;
        backlen = sizeof(back);
        RV_EQ(decrypt_once(s, &m, k, ct, ctlen, back, &backlen), CKR_ENCRYPTED_DATA_INVALID,
              "C_Decrypt with a wrong tag");
        CHECK(memcmp(back, pt, sizeof(pt)) != 0, "no plaintext after a wrong tag");
        /* Multi-part: the final refuses, nothing came out before. */
        RV_REQ(F->C_DecryptInit(s, &m, k), CKR_OK, "C_DecryptInit");
        n = sizeof(back);
        RV_EQ(F->C_DecryptUpdate(s, ct, ctlen, back, &n), CKR_OK, "C_DecryptUpdate");
        CHECK(n == 0, "C_DecryptUpdate released nothing");
        n = sizeof(back);
        RV_EQ(F->C_DecryptFinal(s, back, &n), CKR_ENCRYPTED_DATA_INVALID,
              "C_DecryptFinal with a wrong tag");
        CHECK(memcmp(back, pt, sizeof(pt)) != 0, "no plaintext from C_DecryptFinal");
        ct[ctlen - 1] ^= 0x80;
        backlen = sizeof(back);
        RV_EQ(decrypt_once(s, &m, k, ct, ctlen, back, &backlen), CKR_OK,
              "the untouched ciphertext still decrypts");
    }
}

static void test_chacha_bad_nonce_lengths_and_keys_are_refused(void)
{
    /* 8 bytes / 64 bits: the original, non-IETF ChaCha20-Poly1305. */
    static const CK_ULONG bad[] = { 8, 64, 16, 0, 128, 32 };
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = chacha_key(s), aes = h_aes_key(s, 32, NULL, 0);
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p;
    CK_MECHANISM m;
    uint8_t nonce[24] = { 0 };

    for (size_t i = 0; i < NELEM(bad); i++) {
        cha_mech(&p, &m, nonce, bad[i], NULL, 0);
        RV_EQ(F->C_EncryptInit(s, &m, k), CKR_MECHANISM_PARAM_INVALID,
              "C_EncryptInit with an unsupported nonce length");
        RV_EQ(F->C_DecryptInit(s, &m, k), CKR_MECHANISM_PARAM_INVALID,
              "C_DecryptInit with an unsupported nonce length");
    }
    cha_mech(&p, &m, NULL, 12, NULL, 0);
    RV_EQ(F->C_EncryptInit(s, &m, k), CKR_MECHANISM_PARAM_INVALID, "C_EncryptInit, NULL nonce");
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    RV_EQ(F->C_EncryptInit(s, &m, k), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptInit without a parameter");
    cha_mech(&p, &m, nonce, 12, NULL, 0);
    RV_EQ(F->C_EncryptInit(s, &m, aes), CKR_KEY_TYPE_INCONSISTENT,
          "C_EncryptInit(CHACHA20_POLY1305) with an AES key");
    RV_EQ(F->C_SignInit(s, &m, k), CKR_MECHANISM_INVALID, "C_SignInit(CHACHA20_POLY1305)");
}

static const h_case CASES[] = {
    H_CASE(test_chacha_mechanisms_are_listed_with_info),
    H_CASE(test_chacha_keygen_makes_a_32_byte_chacha20_key),
    H_CASE(test_chacha_round_trips_with_12_24_byte_and_96_192_bit_nonces),
    H_CASE(test_chacha_known_answers_with_imported_key),
    H_CASE(test_chacha_wrong_aad_or_tag_is_encrypted_data_invalid),
    H_CASE(test_chacha_bad_nonce_lengths_and_keys_are_refused),
};

int t_chacha_register(void)
{
    return h_add_suite("chacha", CASES, NELEM(CASES));
}
