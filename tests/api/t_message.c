/* Message-based encryption (PKCS#11 3.0 sec. 5.13-5.16) and authenticated
 * key wrapping (3.2 C_WrapKeyAuthenticated / C_UnwrapKeyAuthenticated)
 * through the 3.2 function list: every IV generator of CK_GCM_MESSAGE_PARAMS,
 * ChaCha20-Poly1305 with CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS, the nonce
 * discipline of docs/key-families.md (generated nonces never repeat, in one
 * session, across sessions and across processes; caller_iv = refuse) and the
 * binding of a wrapped key to its associated data. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Registered from test_api.c. */
int t_message_register(void);

#define IV_LEN 12
#define TAG_LEN 16
#define FILL 0xEE /* what an IV buffer holds before the token writes it */
#define MILLION 1000000UL
#define WRAP_AD "tenant=42,table=users,version=3"

static uint8_t AAD[] = "record=7,column=ssn";

/* ---- helpers ---------------------------------------------------------------- */
static CK_MECHANISM GCM_MECH = { CKM_AES_GCM, NULL, 0 };
static CK_MECHANISM CHA_MECH = { CKM_CHACHA20_POLY1305, NULL, 0 };

static void gcm_msg(CK_GCM_MESSAGE_PARAMS *p, uint8_t *iv, CK_ULONG ivlen, CK_ULONG fixed_bits,
                    CK_GENERATOR_FUNCTION gen, uint8_t *tag, CK_ULONG tagbits)
{
    *p = (CK_GCM_MESSAGE_PARAMS){ iv, ivlen, fixed_bits, gen, tag, tagbits };
}

static CK_RV enc(CK_SESSION_HANDLE s, void *p, CK_ULONG plen, uint8_t *aad, CK_ULONG aadlen,
                 const uint8_t *pt, CK_ULONG ptlen, uint8_t *ct, CK_ULONG *ctlen)
{
    return F32->C_EncryptMessage(s, p, plen, aad, aadlen, (CK_BYTE_PTR)pt, ptlen, ct, ctlen);
}

static CK_RV dec(CK_SESSION_HANDLE s, void *p, CK_ULONG plen, uint8_t *aad, CK_ULONG aadlen,
                 const uint8_t *ct, CK_ULONG ctlen, uint8_t *pt, CK_ULONG *ptlen)
{
    return F32->C_DecryptMessage(s, p, plen, aad, aadlen, (CK_BYTE_PTR)ct, ctlen, pt, ptlen);
}

static CK_OBJECT_HANDLE chacha_key(CK_SESSION_HANDLE s, const CK_ATTRIBUTE *extra, CK_ULONG nextra)
{
    CK_ATTRIBUTE t[8] = {
        { CKA_ENCRYPT, &h_true, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &h_true, sizeof(CK_BBOOL) },
    };
    CK_ULONG n = 2;
    CK_MECHANISM m = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    REQUIRE(nextra <= NELEM(t) - n, "chacha_key: template fits");
    for (CK_ULONG i = 0; i < nextra; i++)
        t[n++] = extra[i];
    RV_REQ(F->C_GenerateKey(s, &m, t, n, &k), CKR_OK, "C_GenerateKey(CKM_CHACHA20_KEY_GEN)");
    return k;
}

/* A session AES-256 key with only the usages given. */
static CK_OBJECT_HANDLE aes_key_with(CK_SESSION_HANDLE s, CK_BBOOL e, CK_BBOOL d)
{
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {
        { CKA_VALUE_LEN, &len, sizeof(len) },
        { CKA_ENCRYPT, &e, sizeof(e) },
        { CKA_DECRYPT, &d, sizeof(d) },
    };
    CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    RV_REQ(F->C_GenerateKey(s, &m, t, NELEM(t), &k), CKR_OK, "C_GenerateKey(AES, chosen usages)");
    return k;
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static int cmp_iv(const void *a, const void *b)
{
    return memcmp(a, b, IV_LEN);
}

/* Sort n IVs and count adjacent equal pairs. */
static size_t duplicates(uint8_t *ivs, size_t n)
{
    size_t d = 0;
    qsort(ivs, n, IV_LEN, cmp_iv);
    for (size_t i = 1; i < n; i++)
        d += memcmp(ivs + (i - 1) * IV_LEN, ivs + i * IV_LEN, IV_LEN) == 0;
    return d;
}

/* The IV as a big-endian number of its last 8 bytes. */
static uint64_t iv_count(const uint8_t *iv)
{
    uint64_t v = 0;
    for (int i = 4; i < IV_LEN; i++)
        v = v << 8 | iv[i];
    return v;
}

/* ---- AES-GCM, each IV generator ---------------------------------------------- */
static const struct {
    CK_GENERATOR_FUNCTION gen;
    CK_ULONG fixed_bits;
    const char *name;
} GENS[] = {
    { CKG_GENERATE, 0, "CKG_GENERATE" },
    { CKG_GENERATE_COUNTER, 32, "CKG_GENERATE_COUNTER (4 fixed bytes)" },
    { CKG_GENERATE_COUNTER, 16, "CKG_GENERATE_COUNTER (2 fixed bytes)" },
    { CKG_GENERATE_RANDOM, 0, "CKG_GENERATE_RANDOM" },
    { CKG_GENERATE_COUNTER_XOR, 0, "CKG_GENERATE_COUNTER_XOR" },
    { CKG_NO_GENERATE, 0, "CKG_NO_GENERATE (caller IV)" },
};

#define ROUNDS 4

static void gcm_generator_case(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, size_t g)
{
    static const uint8_t FIXED[4] = { 0xF0, 0xF1, 0xF2, 0xF3 };
    uint8_t ivs[ROUNDS][IV_LEN], given[ROUNDS][IV_LEN], tag[TAG_LEN], pt[40], ct[64], back[64];
    uint8_t xor_base[IV_LEN];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG ctlen, backlen;
    char what[160];

    h_random(xor_base, sizeof(xor_base));
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit(CKM_AES_GCM)");
    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageDecryptInit(CKM_AES_GCM)");
    for (int r = 0; r < ROUNDS; r++) {
        uint8_t *iv = ivs[r];
        h_random(pt, sizeof(pt));
        switch (GENS[g].gen) {
        case CKG_GENERATE_COUNTER:
            h_random(iv, IV_LEN);
            memcpy(iv, FIXED, sizeof(FIXED));
            break;
        case CKG_GENERATE_COUNTER_XOR:
            memcpy(iv, xor_base, IV_LEN);
            break;
        case CKG_NO_GENERATE:
            h_random(iv, IV_LEN);
            break;
        default:
            memset(iv, FILL, IV_LEN);
            break;
        }
        memcpy(given[r], iv, IV_LEN);
        memset(tag, 0, sizeof(tag));
        gcm_msg(&p, iv, IV_LEN, GENS[g].fixed_bits, GENS[g].gen, tag, 128);
        ctlen = sizeof(ct);
        snprintf(what, sizeof(what), "C_EncryptMessage with %s", GENS[g].name);
        RV_REQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &ctlen), CKR_OK, what);
        CHECK(ctlen == sizeof(pt), "ciphertext as long as the plaintext (tag in pTag)");
        CHECK(!all_bytes(tag, sizeof(tag), 0), "the tag was written to pTag");
        CHECK(memcmp(ct, pt, sizeof(pt)) != 0, "ciphertext differs from the plaintext");
        switch (GENS[g].gen) {
        case CKG_GENERATE:
        case CKG_GENERATE_RANDOM:
            CHECK(!all_bytes(iv, IV_LEN, FILL), "the token wrote a 12-byte IV into pIv");
            break;
        case CKG_GENERATE_COUNTER: {
            /* fixed || zeros || the 64-bit count, big-endian, below 2^32. */
            size_t fixed = GENS[g].fixed_bits / 8;
            CHECK(memcmp(iv, FIXED, fixed) == 0, "COUNTER keeps the fixed bytes");
            CHECK(all_bytes(iv + fixed, IV_LEN - 8 - fixed, 0),
                  "COUNTER zeroes the free bytes above the count (the caller's are not kept)");
            CHECK(all_bytes(iv + IV_LEN - 8, 4, 0), "COUNTER's count is below 2^32");
            break;
        }
        case CKG_NO_GENERATE:
            CHECK(memcmp(iv, given[r], IV_LEN) == 0, "NO_GENERATE leaves the caller's IV as it is");
            break;
        default:
            break;
        }
        for (int q = 0; q < r; q++) {
            snprintf(what, sizeof(what), "%s: message %d has an IV unlike message %d", GENS[g].name, r, q);
            CHECK(memcmp(ivs[q], iv, IV_LEN) != 0, what);
            if (GENS[g].gen == CKG_GENERATE_COUNTER)
                CHECK(memcmp(ivs[q] + 4, iv + 4, IV_LEN - 4) != 0, "COUNTER changes the non-fixed part");
        }

        /* Round trip with the IV and tag the encryption produced. */
        CK_GCM_MESSAGE_PARAMS d;
        uint8_t div[IV_LEN], dtag[TAG_LEN];
        memcpy(div, iv, IV_LEN);
        memcpy(dtag, tag, TAG_LEN);
        gcm_msg(&d, div, IV_LEN, 0, CKG_NO_GENERATE, dtag, 128);
        backlen = sizeof(back);
        snprintf(what, sizeof(what), "C_DecryptMessage of a %s message", GENS[g].name);
        RV_EQ(dec(s, &d, sizeof(d), AAD, sizeof(AAD), ct, ctlen, back, &backlen), CKR_OK, what);
        CHECK(backlen == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "round trip gives the plaintext");
        CHECK(memcmp(div, iv, IV_LEN) == 0, "decryption does not touch pIv");

        /* A wrong tag, then a wrong AAD: no plaintext. */
        dtag[0] ^= 1;
        memset(back, 0, sizeof(back));
        backlen = sizeof(back);
        RV_EQ(dec(s, &d, sizeof(d), AAD, sizeof(AAD), ct, ctlen, back, &backlen), CKR_ENCRYPTED_DATA_INVALID,
              "C_DecryptMessage with a wrong tag");
        CHECK(memcmp(back, pt, sizeof(pt)) != 0, "no plaintext after a wrong tag");
        dtag[0] ^= 1;
        AAD[0] ^= 1;
        memset(back, 0, sizeof(back));
        backlen = sizeof(back);
        RV_EQ(dec(s, &d, sizeof(d), AAD, sizeof(AAD), ct, ctlen, back, &backlen), CKR_ENCRYPTED_DATA_INVALID,
              "C_DecryptMessage with a wrong AAD");
        CHECK(memcmp(back, pt, sizeof(pt)) != 0, "no plaintext after a wrong AAD");
        AAD[0] ^= 1;
    }
    if (GENS[g].gen == CKG_GENERATE_COUNTER_XOR) {
        int changed = 0;
        for (int r = 0; r < ROUNDS; r++)
            changed += memcmp(ivs[r], xor_base, IV_LEN) != 0;
        CHECK(changed >= ROUNDS - 1, "COUNTER_XOR changes the caller's IV (the count 0 at most once)");
    }
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
}

static void test_gcm_message_round_trips_with_every_iv_generator(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    for (size_t g = 0; g < NELEM(GENS); g++) {
        /* A fresh key per generator, and the same key for all: both work. */
        gcm_generator_case(s, h_aes_key(s, 32, NULL, 0), g);
    }
    CK_OBJECT_HANDLE k = h_aes_key(s, 16, NULL, 0);
    for (size_t g = 0; g < NELEM(GENS); g++)
        gcm_generator_case(s, k, g);
}

static void test_gcm_message_size_query_does_not_consume_an_iv(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t ivs[6][IV_LEN], tag[TAG_LEN], pt[33], ct[64];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len;
    int n = 0;

    h_random(pt, sizeof(pt));
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    for (int r = 0; r < 3; r++) {
        /* Size query: pCiphertext NULL. */
        uint8_t probe[IV_LEN];
        memset(probe, FILL, sizeof(probe));
        gcm_msg(&p, probe, IV_LEN, 0, CKG_GENERATE, tag, 128);
        len = 0;
        RV_EQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), NULL, &len), CKR_OK,
              "C_EncryptMessage size query");
        CHECK(len == sizeof(pt), "size query gives the plaintext length");
        CHECK(all_bytes(probe, IV_LEN, FILL), "a size query writes no IV");
        /* Too small a buffer: CKR_BUFFER_TOO_SMALL, no IV, context kept. */
        len = sizeof(pt) - 1;
        RV_EQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &len), CKR_BUFFER_TOO_SMALL,
              "C_EncryptMessage into a short buffer");
        CHECK(len == sizeof(pt), "CKR_BUFFER_TOO_SMALL gives the length needed");
        CHECK(all_bytes(probe, IV_LEN, FILL), "CKR_BUFFER_TOO_SMALL writes no IV");
        /* The real message. */
        memset(ivs[n], FILL, IV_LEN);
        gcm_msg(&p, ivs[n], IV_LEN, 0, CKG_GENERATE, tag, 128);
        len = sizeof(ct);
        RV_REQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &len), CKR_OK,
               "C_EncryptMessage after the size query");
        for (int q = 0; q < n; q++)
            CHECK(memcmp(ivs[q], ivs[n], IV_LEN) != 0, "each message's IV differs from all before");
        /* The token's IV is a zero fixed field and the key's count
         * (core/message.c, SP 800-38D sec. 8.2.1): consecutive messages
         * have consecutive counts when no size query consumed one. */
        if (n > 0)
            CHECK(iv_count(ivs[n]) == iv_count(ivs[n - 1]) + 1,
                  "the size queries between two messages consumed no count");
        n++;
    }
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
}

/* C_EncryptMessageBegin/Next and C_DecryptMessageBegin/Next equal the
 * one-shot calls: same IV (caller's) gives the same ciphertext and tag; a
 * generated IV at Begin decrypts one-shot; multi-part decryption releases
 * nothing before CKF_END_OF_MESSAGE. */
static void test_gcm_multi_part_messages_equal_one_shot(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[IV_LEN], iv2[IV_LEN], tag1[TAG_LEN], tag2[TAG_LEN], pt[300], ct1[300], ct2[300], back[300];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len, total, n;
    static const CK_ULONG CUTS[] = { 0, 1, 100, 255, 300 };

    h_random(pt, sizeof(pt));
    h_random(iv, sizeof(iv));
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    gcm_msg(&p, iv, IV_LEN, 0, CKG_NO_GENERATE, tag1, 128);
    len = sizeof(ct1);
    RV_REQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct1, &len), CKR_OK, "one-shot C_EncryptMessage");

    memcpy(iv2, iv, IV_LEN);
    gcm_msg(&p, iv2, IV_LEN, 0, CKG_NO_GENERATE, tag2, 128);
    RV_REQ(F32->C_EncryptMessageBegin(s, &p, sizeof(p), AAD, sizeof(AAD)), CKR_OK, "C_EncryptMessageBegin");
    total = 0;
    for (size_t i = 1; i < NELEM(CUTS); i++) {
        CK_FLAGS fl = i + 1 == NELEM(CUTS) ? CKF_END_OF_MESSAGE : 0;
        n = sizeof(ct2) - total;
        RV_REQ(F32->C_EncryptMessageNext(s, &p, sizeof(p), pt + CUTS[i - 1], CUTS[i] - CUTS[i - 1], ct2 + total,
                                         &n, fl),
               CKR_OK, "C_EncryptMessageNext");
        CHECK(n == CUTS[i] - CUTS[i - 1], "each part gives as much ciphertext as plaintext");
        total += n;
    }
    CHECK(total == sizeof(pt) && memcmp(ct1, ct2, sizeof(pt)) == 0, "multi-part ciphertext = one-shot");
    CHECK(memcmp(tag1, tag2, TAG_LEN) == 0, "multi-part tag = one-shot tag");

    /* Multi-part with a generated IV (written at Begin). */
    memset(iv2, FILL, IV_LEN);
    gcm_msg(&p, iv2, IV_LEN, 0, CKG_GENERATE, tag2, 128);
    RV_REQ(F32->C_EncryptMessageBegin(s, &p, sizeof(p), AAD, sizeof(AAD)), CKR_OK,
           "C_EncryptMessageBegin(CKG_GENERATE)");
    CHECK(!all_bytes(iv2, IV_LEN, FILL), "C_EncryptMessageBegin wrote the generated IV");
    CHECK(memcmp(iv2, iv, IV_LEN) != 0, "the generated IV is not the caller's earlier IV");
    n = sizeof(ct2);
    RV_REQ(F32->C_EncryptMessageNext(s, &p, sizeof(p), pt, 150, ct2, &n, 0), CKR_OK, "C_EncryptMessageNext");
    total = n;
    n = sizeof(ct2) - total;
    RV_REQ(F32->C_EncryptMessageNext(s, &p, sizeof(p), pt + 150, 150, ct2 + total, &n, CKF_END_OF_MESSAGE),
           CKR_OK, "C_EncryptMessageNext(CKF_END_OF_MESSAGE)");
    total += n;
    CHECK(total == sizeof(pt), "all ciphertext came out");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");

    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageDecryptInit");
    CK_GCM_MESSAGE_PARAMS d;
    gcm_msg(&d, iv2, IV_LEN, 0, CKG_NO_GENERATE, tag2, 128);
    len = sizeof(back);
    RV_EQ(dec(s, &d, sizeof(d), AAD, sizeof(AAD), ct2, total, back, &len), CKR_OK,
          "one-shot C_DecryptMessage of a multi-part message");
    CHECK(len == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "gives the plaintext");

    /* Multi-part decryption of the one-shot message. */
    gcm_msg(&d, iv, IV_LEN, 0, CKG_NO_GENERATE, tag1, 128);
    RV_REQ(F32->C_DecryptMessageBegin(s, &d, sizeof(d), AAD, sizeof(AAD)), CKR_OK, "C_DecryptMessageBegin");
    memset(back, 0, sizeof(back));
    total = 0;
    for (size_t i = 1; i < NELEM(CUTS); i++) {
        CK_FLAGS fl = i + 1 == NELEM(CUTS) ? CKF_END_OF_MESSAGE : 0;
        n = sizeof(back) - total;
        RV_REQ(F32->C_DecryptMessageNext(s, &d, sizeof(d), ct1 + CUTS[i - 1], CUTS[i] - CUTS[i - 1], back + total,
                                         &n, fl),
               CKR_OK, "C_DecryptMessageNext");
        if (!fl)
            CHECK(n == 0, "C_DecryptMessageNext releases nothing before the end of the message");
        total += n;
    }
    CHECK(total == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "multi-part decryption = plaintext");

    /* The same with a wrong tag: nothing at all. */
    tag1[5] ^= 0x10;
    RV_REQ(F32->C_DecryptMessageBegin(s, &d, sizeof(d), AAD, sizeof(AAD)), CKR_OK, "C_DecryptMessageBegin");
    memset(back, 0, sizeof(back));
    n = sizeof(back);
    RV_EQ(F32->C_DecryptMessageNext(s, &d, sizeof(d), ct1, 100, back, &n, 0), CKR_OK, "C_DecryptMessageNext");
    CHECK(n == 0, "nothing released");
    n = sizeof(back);
    RV_EQ(F32->C_DecryptMessageNext(s, &d, sizeof(d), ct1 + 100, 200, back, &n, CKF_END_OF_MESSAGE),
          CKR_ENCRYPTED_DATA_INVALID, "C_DecryptMessageNext(END) with a wrong tag");
    CHECK(!memmem(back, sizeof(back), pt, 16), "no plaintext after a wrong tag");
    tag1[5] ^= 0x10;
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
}

/* The 3.0 list offers the same functions: encrypt through it, decrypt
 * through the 3.2 list. */
static void test_message_functions_on_the_3_0_list(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[IV_LEN], tag[TAG_LEN], pt[20], ct[20], back[20];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len = sizeof(ct);

    h_random(pt, sizeof(pt));
    memset(iv, FILL, sizeof(iv));
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
    RV_REQ(F30->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "3.0 C_MessageEncryptInit");
    RV_EQ(F30->C_EncryptMessage(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &len), CKR_OK,
          "3.0 C_EncryptMessage(CKG_GENERATE)");
    CHECK(!all_bytes(iv, IV_LEN, FILL), "3.0 list: the token wrote the IV");
    RV_EQ(F30->C_MessageEncryptFinal(s), CKR_OK, "3.0 C_MessageEncryptFinal");
    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OK, "3.2 C_MessageDecryptInit");
    len = sizeof(back);
    RV_EQ(dec(s, &p, sizeof(p), AAD, sizeof(AAD), ct, sizeof(ct), back, &len), CKR_OK, "3.2 C_DecryptMessage");
    CHECK(len == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "the 3.0 message decrypts through 3.2");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "3.2 C_MessageDecryptFinal");
}

static void test_message_context_rules(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    CK_OBJECT_HANDLE enc_only = aes_key_with(s, CK_TRUE, CK_FALSE);
    CK_OBJECT_HANDLE dec_only = aes_key_with(s, CK_FALSE, CK_TRUE);
    uint8_t iv[IV_LEN], tag[TAG_LEN], pt[16] = { 0 }, ct[32];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len = sizeof(ct);

    RV_EQ(F32->C_EncryptMessage(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len),
          CKR_OPERATION_NOT_INITIALIZED, "C_EncryptMessage before C_MessageEncryptInit");
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    RV_EQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OPERATION_ACTIVE, "C_MessageEncryptInit twice");
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OK,
          "the first context survives the refused second init");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_EncryptMessage after C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OPERATION_NOT_INITIALIZED, "C_MessageEncryptFinal twice");

    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageDecryptInit");
    RV_EQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OPERATION_ACTIVE, "C_MessageDecryptInit twice");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
    len = sizeof(ct);
    RV_EQ(dec(s, &p, sizeof(p), NULL, 0, ct, 16, pt, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_DecryptMessage after C_MessageDecryptFinal");

    /* The key's usage flags. */
    RV_EQ(F32->C_MessageEncryptInit(s, &GCM_MECH, dec_only), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_MessageEncryptInit with a key without CKA_ENCRYPT");
    RV_EQ(F32->C_MessageDecryptInit(s, &GCM_MECH, enc_only), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_MessageDecryptInit with a key without CKA_DECRYPT");
    RV_EQ(F32->C_MessageEncryptInit(s, &GCM_MECH, enc_only), CKR_OK, "C_MessageEncryptInit with CKA_ENCRYPT");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageDecryptInit(s, &GCM_MECH, dec_only), CKR_OK, "C_MessageDecryptInit with CKA_DECRYPT");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
    RV_EQ(F32->C_MessageEncryptInit(s, &GCM_MECH, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID,
          "C_MessageEncryptInit with a bad key handle");
    CK_MECHANISM kw = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    RV_EQ(F32->C_MessageEncryptInit(s, &kw, k), CKR_MECHANISM_INVALID,
          "C_MessageEncryptInit with a mechanism that has no message encryption");
    RV_EQ(F32->C_MessageEncryptInit(s, &CHA_MECH, k), CKR_KEY_TYPE_INCONSISTENT,
          "C_MessageEncryptInit(CHACHA20_POLY1305) with an AES key");
}

static void test_gcm_message_bad_parameters_are_param_invalid(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[16], tag[TAG_LEN], pt[16] = { 0 }, ct[32];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len;

    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageDecryptInit");
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p) - 1, NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with ulParameterLen one short");
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p) + sizeof(CK_ULONG), NULL, 0, pt, sizeof(pt), ct, &len),
          CKR_MECHANISM_PARAM_INVALID, "C_EncryptMessage with ulParameterLen one CK_ULONG too long");
    len = sizeof(ct);
    RV_EQ(dec(s, &p, sizeof(p) + 8, NULL, 0, ct, 16, pt, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_DecryptMessage with ulParameterLen too long");
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 64);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with a 64-bit tag");
    len = sizeof(ct);
    RV_EQ(dec(s, &p, sizeof(p), NULL, 0, ct, 16, pt, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_DecryptMessage with a 64-bit tag");
    gcm_msg(&p, iv, IV_LEN, 0, 9, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with ivGenerator 9");
    gcm_msg(&p, NULL, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with a NULL pIv");
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, NULL, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with a NULL pTag");
    gcm_msg(&p, iv, 16, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage(CKG_GENERATE) with a 16-byte IV (the token makes 12-byte IVs)");
    gcm_msg(&p, iv, IV_LEN, 100, CKG_GENERATE_COUNTER, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage(COUNTER) leaving fewer than 4 bytes to count in");
    /* An IV of the caller's longer than OpenSSL's GCM takes (128 bytes): refused by the
     * mechanism when the message starts, in both directions. */
    uint8_t long_iv[200];
    memset(long_iv, 0x5a, sizeof(long_iv));
    gcm_msg(&p, long_iv, sizeof(long_iv), 0, CKG_NO_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptMessage with a 200-byte IV");
    len = sizeof(ct);
    RV_EQ(dec(s, &p, sizeof(p), NULL, 0, ct, 16, pt, &len), CKR_MECHANISM_PARAM_INVALID,
          "C_DecryptMessage with a 200-byte IV");
    /* A refused message does not end the context (core/message.c). */
    gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OK,
          "a good message after the refused ones");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
}

/* ---- ChaCha20-Poly1305 ---------------------------------------------------------- */
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

static void cha_msg(CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS *p, uint8_t *nonce, CK_ULONG len, uint8_t *tag)
{
    *p = (CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS){ nonce, len, tag };
}

/* RFC 8439 sec. 2.8.2 and draft-irtf-cfrg-xchacha-03 A.3.1 through the
 * message API: ciphertext in pCiphertext, tag in pTag. */
static void test_chacha_message_known_answers(void)
{
    static const struct {
        const char *nonce, *ct;
        CK_ULONG len;
    } V[] = { { CHA_N12, CHA_CT12, 12 }, { CHA_N12, CHA_CT12, 96 }, { CHA_N24, CHA_CT24, 24 },
              { CHA_N24, CHA_CT24, 192 } };
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t key[32], aad[12], nonce[24], want[200], ct[200], back[200], tag[TAG_LEN];
    CK_ATTRIBUTE use[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS p;
    CK_ULONG ptlen = strlen(CHA_P), len;

    h_unhex(CHA_K, key, sizeof(key));
    h_unhex(CHA_A, aad, sizeof(aad));
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_CHACHA20, key, sizeof(key), use, NELEM(use));
    RV_REQ(F32->C_MessageEncryptInit(s, &CHA_MECH, k), CKR_OK, "C_MessageEncryptInit(CHACHA20_POLY1305)");
    RV_REQ(F32->C_MessageDecryptInit(s, &CHA_MECH, k), CKR_OK, "C_MessageDecryptInit(CHACHA20_POLY1305)");
    for (size_t i = 0; i < NELEM(V); i++) {
        size_t nl = h_unhex(V[i].nonce, nonce, sizeof(nonce));
        size_t wl = h_unhex(V[i].ct, want, sizeof(want));
        REQUIRE(wl == ptlen + TAG_LEN, "vector length");
        uint8_t n0[24];
        memcpy(n0, nonce, nl);
        cha_msg(&p, nonce, V[i].len, tag);
        len = sizeof(ct);
        RV_EQ(enc(s, &p, sizeof(p), aad, sizeof(aad), (const uint8_t *)CHA_P, ptlen, ct, &len), CKR_OK,
              "C_EncryptMessage(ChaCha20-Poly1305 vector)");
        CHECK(len == ptlen && memcmp(ct, want, ptlen) == 0, "ciphertext equals the published vector");
        CHECK(memcmp(tag, want + ptlen, TAG_LEN) == 0, "pTag equals the published tag");
        CHECK(memcmp(nonce, n0, nl) == 0, "the caller's nonce is left as it is");
        len = sizeof(back);
        RV_EQ(dec(s, &p, sizeof(p), aad, sizeof(aad), want, ptlen, back, &len), CKR_OK,
              "C_DecryptMessage(published vector)");
        CHECK(len == ptlen && memcmp(back, CHA_P, ptlen) == 0, "the vector decrypts to the plaintext");
    }
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
}

static void chacha_case(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, CK_ULONG nlen_arg, size_t nlen)
{
    uint8_t nonce[24], tag[TAG_LEN], tag2[TAG_LEN], pt[200], ct[200], ct2[200], back[232];
    CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS p;
    CK_SALSA20_CHACHA20_POLY1305_PARAMS sp;
    CK_ULONG len, n, total;
    char what[128];

    h_random(nonce, sizeof(nonce));
    h_random(pt, sizeof(pt));
    cha_msg(&p, nonce, nlen_arg, tag);
    len = 0;
    snprintf(what, sizeof(what), "C_EncryptMessage size query, %zu-byte nonce", nlen);
    RV_EQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), NULL, &len), CKR_OK, what);
    CHECK(len == sizeof(pt), "size query gives the plaintext length");
    len = sizeof(ct);
    snprintf(what, sizeof(what), "C_EncryptMessage, %zu-byte nonce", nlen);
    RV_REQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &len), CKR_OK, what);
    CHECK(len == sizeof(pt), "ciphertext as long as the plaintext");

    /* Single-part C_Encrypt with the same nonce gives ciphertext || tag. */
    sp = (CK_SALSA20_CHACHA20_POLY1305_PARAMS){ nonce, nlen_arg, AAD, sizeof(AAD) };
    CK_MECHANISM sm = { CKM_CHACHA20_POLY1305, &sp, sizeof(sp) };
    n = sizeof(back);
    RV_REQ(F->C_EncryptInit(s, &sm, k), CKR_OK, "C_EncryptInit(ChaCha20-Poly1305)");
    RV_REQ(F->C_Encrypt(s, pt, sizeof(pt), back, &n), CKR_OK, "C_Encrypt");
    CHECK(n == sizeof(pt) + TAG_LEN && memcmp(back, ct, sizeof(pt)) == 0 &&
              memcmp(back + sizeof(pt), tag, TAG_LEN) == 0,
          "the message API and C_Encrypt agree");

    len = sizeof(back);
    RV_EQ(dec(s, &p, sizeof(p), AAD, sizeof(AAD), ct, sizeof(pt), back, &len), CKR_OK, "C_DecryptMessage");
    CHECK(len == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "round trip gives the plaintext");
    tag[15] ^= 0x01;
    memset(back, 0, sizeof(back));
    len = sizeof(back);
    RV_EQ(dec(s, &p, sizeof(p), AAD, sizeof(AAD), ct, sizeof(pt), back, &len), CKR_ENCRYPTED_DATA_INVALID,
          "C_DecryptMessage with a wrong tag");
    CHECK(!memmem(back, sizeof(back), pt, 16), "no plaintext after a wrong tag");
    tag[15] ^= 0x01;
    memset(back, 0, sizeof(back));
    len = sizeof(back);
    RV_EQ(dec(s, &p, sizeof(p), AAD, sizeof(AAD) - 1, ct, sizeof(pt), back, &len), CKR_ENCRYPTED_DATA_INVALID,
          "C_DecryptMessage with a wrong AAD");
    CHECK(!memmem(back, sizeof(back), pt, 16), "no plaintext after a wrong AAD");

    /* Multi-part = one-shot, both ways. */
    cha_msg(&p, nonce, nlen_arg, tag2);
    RV_REQ(F32->C_EncryptMessageBegin(s, &p, sizeof(p), AAD, sizeof(AAD)), CKR_OK, "C_EncryptMessageBegin");
    n = sizeof(ct2);
    RV_REQ(F32->C_EncryptMessageNext(s, &p, sizeof(p), pt, 77, ct2, &n, 0), CKR_OK, "C_EncryptMessageNext");
    total = n;
    n = sizeof(ct2) - total;
    RV_REQ(F32->C_EncryptMessageNext(s, &p, sizeof(p), pt + 77, sizeof(pt) - 77, ct2 + total, &n,
                                     CKF_END_OF_MESSAGE),
           CKR_OK, "C_EncryptMessageNext(END)");
    total += n;
    CHECK(total == sizeof(pt) && memcmp(ct, ct2, total) == 0 && memcmp(tag, tag2, TAG_LEN) == 0,
          "multi-part ciphertext and tag = one-shot");
    cha_msg(&p, nonce, nlen_arg, tag);
    RV_REQ(F32->C_DecryptMessageBegin(s, &p, sizeof(p), AAD, sizeof(AAD)), CKR_OK, "C_DecryptMessageBegin");
    n = sizeof(back);
    RV_REQ(F32->C_DecryptMessageNext(s, &p, sizeof(p), ct, 150, back, &n, 0), CKR_OK, "C_DecryptMessageNext");
    CHECK(n == 0, "nothing released before the end of the message");
    n = sizeof(back);
    RV_REQ(F32->C_DecryptMessageNext(s, &p, sizeof(p), ct + 150, sizeof(pt) - 150, back, &n, CKF_END_OF_MESSAGE),
           CKR_OK, "C_DecryptMessageNext(END)");
    CHECK(n == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "multi-part decryption = plaintext");
}

static void test_chacha_message_round_trips_with_12_and_24_byte_nonces(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = chacha_key(s, NULL, 0);
    RV_REQ(F32->C_MessageEncryptInit(s, &CHA_MECH, k), CKR_OK, "C_MessageEncryptInit(CHACHA20_POLY1305)");
    RV_REQ(F32->C_MessageDecryptInit(s, &CHA_MECH, k), CKR_OK, "C_MessageDecryptInit(CHACHA20_POLY1305)");
    chacha_case(s, k, 12, 12);
    chacha_case(s, k, 24, 24);
    chacha_case(s, k, 96, 12);
    chacha_case(s, k, 192, 24);
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
}

static void test_chacha_message_context_rules_and_bad_parameters(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_BBOOL f = CK_FALSE;
    CK_OBJECT_HANDLE k = chacha_key(s, NULL, 0);
    uint8_t nonce[24] = { 0 }, tag[TAG_LEN], pt[16] = { 0 }, ct[32];
    CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS p;
    CK_GCM_MESSAGE_PARAMS g;
    CK_ULONG len;

    CK_ATTRIBUTE t[] = { { CKA_ENCRYPT, &f, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    CK_MECHANISM gm = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE dec_only = CK_INVALID_HANDLE;
    RV_REQ(F->C_GenerateKey(s, &gm, t, NELEM(t), &dec_only), CKR_OK, "decrypt-only ChaCha20 key");
    RV_EQ(F32->C_MessageEncryptInit(s, &CHA_MECH, dec_only), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_MessageEncryptInit(CHACHA20_POLY1305) with a key without CKA_ENCRYPT");

    RV_REQ(F32->C_MessageEncryptInit(s, &CHA_MECH, k), CKR_OK, "C_MessageEncryptInit");
    RV_EQ(F32->C_MessageEncryptInit(s, &CHA_MECH, k), CKR_OPERATION_ACTIVE, "C_MessageEncryptInit twice");
    cha_msg(&p, nonce, 12, tag);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p) - 1, NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "ChaCha C_EncryptMessage with ulParameterLen one short");
    gcm_msg(&g, nonce, 12, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_EQ(enc(s, &g, sizeof(g), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "ChaCha C_EncryptMessage with CK_GCM_MESSAGE_PARAMS");
    static const CK_ULONG bad[] = { 8, 64, 16, 0, 32 };
    for (size_t i = 0; i < NELEM(bad); i++) {
        cha_msg(&p, nonce, bad[i], tag);
        len = sizeof(ct);
        RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
              "ChaCha C_EncryptMessage with an unsupported nonce length");
    }
    cha_msg(&p, NULL, 12, tag);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "ChaCha C_EncryptMessage with a NULL nonce");
    cha_msg(&p, nonce, 12, NULL);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_MECHANISM_PARAM_INVALID,
          "ChaCha C_EncryptMessage with a NULL pTag");
    cha_msg(&p, nonce, 24, tag);
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OK, "a good message after the refused ones");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    len = sizeof(ct);
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "ChaCha C_EncryptMessage after C_MessageEncryptFinal");
    CK_OBJECT_HANDLE aes = h_aes_key(s, 32, NULL, 0);
    RV_EQ(F32->C_MessageEncryptInit(s, &CHA_MECH, aes), CKR_KEY_TYPE_INCONSISTENT,
          "C_MessageEncryptInit(CHACHA20_POLY1305) with an AES key");
    RV_EQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_KEY_TYPE_INCONSISTENT,
          "C_MessageEncryptInit(AES_GCM) with a ChaCha20 key");
}

/* ---- generated nonces never repeat -------------------------------------------- */
static CK_OBJECT_HANDLE token_key(CK_SESSION_HANDLE s, char *label, size_t cap)
{
    char r[17];
    h_random_hex(r, 8);
    snprintf(label, cap, "api-msg-%s", r);
    CK_ATTRIBUTE t[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, label, strlen(label) } };
    return h_aes_key(s, 32, t, NELEM(t));
}

/* n messages of 16 bytes with CKG_GENERATE; the IVs go to ivs. Returns the
 * first failure (no CUnit calls: used in a forked child too). */
static CK_RV generate_ivs(CK_SESSION_HANDLE s, uint8_t *ivs, size_t n)
{
    uint8_t tag[TAG_LEN], pt[16] = { 0 }, ct[16];
    CK_GCM_MESSAGE_PARAMS p;
    for (size_t i = 0; i < n; i++) {
        CK_ULONG len = sizeof(ct);
        gcm_msg(&p, ivs + i * IV_LEN, IV_LEN, 0, CKG_GENERATE, tag, 128);
        memcpy(pt, &i, sizeof(i));
        CK_RV rv = F32->C_EncryptMessage(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

static void test_a_million_generated_nonces_never_repeat(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    char label[40];
    CK_OBJECT_HANDLE k = token_key(s, label, sizeof(label));
    uint8_t *ivs = malloc(MILLION * IV_LEN);
    REQUIRE(ivs != NULL, "memory for a million IVs");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit(token key)");
    RV_EQ(generate_ivs(s, ivs, MILLION), CKR_OK, "1,000,000 C_EncryptMessage(CKG_GENERATE)");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "\n    1,000,000 C_EncryptMessage(CKG_GENERATE): %.2f s ",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    CHECK(duplicates(ivs, MILLION) == 0, "no IV repeats among a million generated ones");
    free(ivs);
    RV_EQ(F->C_DestroyObject(s, k), CKR_OK, "destroy the token key");
}

#define PER_PARTY 20000

static void test_generated_nonces_never_repeat_across_sessions_and_processes(void)
{
    CK_SESSION_HANDLE s1 = h_user_session(), s2 = h_open(H.slot, 1);
    char label[40], path[160];
    CK_OBJECT_HANDLE k = token_key(s1, label, sizeof(label));
    uint8_t *ivs = malloc(4 * PER_PARTY * IV_LEN);
    REQUIRE(ivs != NULL, "memory for the IVs");

    /* Two sessions of this process, interleaved. */
    RV_REQ(F32->C_MessageEncryptInit(s1, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit, session 1");
    RV_REQ(F32->C_MessageEncryptInit(s2, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit, session 2");
    for (size_t i = 0; i < PER_PARTY; i += 1000) {
        RV_REQ(generate_ivs(s1, ivs + i * IV_LEN, 1000), CKR_OK, "session 1 encrypts");
        RV_REQ(generate_ivs(s2, ivs + (PER_PARTY + i) * IV_LEN, 1000), CKR_OK, "session 2 encrypts");
    }

    /* A second process on the same token key, while this one goes on. */
    snprintf(path, sizeof(path), "%s/child-ivs.bin", h_tmpdir());
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        int rc = 0;
        CK_SESSION_HANDLE cs;
        CK_OBJECT_HANDLE ck[2];
        CK_ULONG n = 0;
        CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
        uint8_t *mine = malloc(PER_PARTY * IV_LEN);
        alarm(300);
        if (mine == NULL || F->C_Initialize(NULL) != CKR_OK)
            rc = 10;
        else if (F->C_OpenSession(H.slot, CKF_SERIAL_SESSION, NULL, NULL, &cs) != CKR_OK ||
                 F->C_Login(cs, CKU_USER, (CK_UTF8CHAR_PTR)H.user_pin, strlen(H.user_pin)) != CKR_OK)
            rc = 11;
        else if (F->C_FindObjectsInit(cs, &byl, 1) != CKR_OK || F->C_FindObjects(cs, ck, 2, &n) != CKR_OK ||
                 F->C_FindObjectsFinal(cs) != CKR_OK || n != 1)
            rc = 12;
        else if (F32->C_MessageEncryptInit(cs, &GCM_MECH, ck[0]) != CKR_OK ||
                 generate_ivs(cs, mine, PER_PARTY) != CKR_OK)
            rc = 13;
        else {
            FILE *f = fopen(path, "wb");
            if (f == NULL || fwrite(mine, IV_LEN, PER_PARTY, f) != PER_PARTY || fclose(f) != 0)
                rc = 14;
        }
        (void)F->C_Finalize(NULL);
        _exit(rc);
    }
    RV_EQ(generate_ivs(s1, ivs + 2 * PER_PARTY * IV_LEN, PER_PARTY), CKR_OK,
          "the parent encrypts while the child does");
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
    char msg[96];
    snprintf(msg, sizeof(msg), "the child encrypted and saved its IVs (exit %d)",
             WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0, msg);
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL, "open the child's IVs");
    size_t got = fread(ivs + 3 * PER_PARTY * IV_LEN, IV_LEN, PER_PARTY, f);
    fclose(f);
    remove(path);
    REQUIRE(got == PER_PARTY, "read the child's IVs");
    CHECK(duplicates(ivs, 4 * PER_PARTY) == 0,
          "no IV repeats across two sessions and two processes on one token key");
    free(ivs);
    RV_EQ(F32->C_MessageEncryptFinal(s1), CKR_OK, "C_MessageEncryptFinal, session 1");
    RV_EQ(F32->C_MessageEncryptFinal(s2), CKR_OK, "C_MessageEncryptFinal, session 2");
    RV_EQ(F->C_DestroyObject(s1, k), CKR_OK, "destroy the token key");
}

/* The generators the caller can influence must not reopen the door the
 * counter closes. COUNTER_XOR XORs the key's count into the caller's IV;
 * the count is predictable (consecutive), so a caller who picks
 * IV_A XOR count(B) as B's base would get message A's IV again. The token
 * must refuse that message or give it a fresh IV (docs/key-families.md:
 * "the token never encrypts twice under one key with a nonce it
 * generated"). */
static void test_counter_xor_cannot_be_steered_onto_an_earlier_iv(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv_a[IV_LEN], iv_b[IV_LEN], probe[IV_LEN], tag[TAG_LEN], pt[16] = { 0 }, ct[16];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len;

    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    /* Two generated IVs show the count's step. */
    gcm_msg(&p, probe, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_REQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OK, "C_EncryptMessage(CKG_GENERATE)");
    gcm_msg(&p, iv_a, IV_LEN, 0, CKG_GENERATE, tag, 128);
    len = sizeof(ct);
    RV_REQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len), CKR_OK, "C_EncryptMessage(CKG_GENERATE)");
    uint64_t next = iv_count(iv_a) + (iv_count(iv_a) - iv_count(probe));
    /* B's base: IV_A with the next count XORed in (big-endian, last 8 bytes). */
    memcpy(iv_b, iv_a, IV_LEN);
    for (int i = 0; i < 8; i++)
        iv_b[IV_LEN - 1 - i] ^= (uint8_t)(next >> (8 * i));
    gcm_msg(&p, iv_b, IV_LEN, 0, CKG_GENERATE_COUNTER_XOR, tag, 128);
    len = sizeof(ct);
    CK_RV rv = enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len);
    CHECK(rv != CKR_OK || memcmp(iv_b, iv_a, IV_LEN) != 0,
          "CKG_GENERATE_COUNTER_XOR with a chosen base does not repeat an IV the token generated");
}

/* CKG_GENERATE_RANDOM must leave at least 96 random bits (SP 800-38D
 * sec. 8.2.2) or refuse: 200,000 messages with 8 fixed bytes of a 12-byte
 * IV never repeat an IV. */
static void test_random_generator_with_a_long_fixed_part_never_repeats(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    const size_t n = 200000;
    uint8_t *ivs = malloc(n * IV_LEN), tag[TAG_LEN], pt[16] = { 0 }, ct[16];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len;
    CK_RV rv = CKR_OK;
    size_t done = 0;

    REQUIRE(ivs != NULL, "memory for the IVs");
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    for (; done < n; done++) {
        uint8_t *iv = ivs + done * IV_LEN;
        memset(iv, 0xA5, 8);
        gcm_msg(&p, iv, IV_LEN, 64, CKG_GENERATE_RANDOM, tag, 128);
        len = sizeof(ct);
        rv = enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), ct, &len);
        if (rv != CKR_OK)
            break;
    }
    CHECK(rv == CKR_OK || (rv == CKR_MECHANISM_PARAM_INVALID && done == 0),
          "CKG_GENERATE_RANDOM with 64 fixed bits: refused at once, or every message encrypted");
    CHECK(duplicates(ivs, done) == 0,
          "CKG_GENERATE_RANDOM with 8 fixed bytes never repeats an IV in 200,000 messages");
    free(ivs);
}

/* ---- [policy] caller_iv = refuse ----------------------------------------------------- */
struct refuse_result {
    CK_RV init, login, keys, msg_init, no_generate, generate, decrypt, chacha, wrap_caller, wrap_generated;
};

static CK_RV child_wrap(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE dek, CK_GENERATOR_FUNCTION gen)
{
    uint8_t iv[IV_LEN] = { 1, 2, 3 }, out[64];
    CK_ULONG len = sizeof(out);
    CK_GCM_WRAP_PARAMS w = { iv, IV_LEN, 0, gen, NULL, 0, 128 };
    CK_MECHANISM m = { CKM_AES_GCM, &w, sizeof(w) };
    return F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), out, &len);
}

static void refuse_child(int fd, const char *conf)
{
    struct refuse_result r;
    CK_RV *all = (CK_RV *)&r;
    for (size_t i = 0; i < sizeof(r) / sizeof(CK_RV); i++)
        all[i] = CKR_GENERAL_ERROR;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    alarm(120);
    setenv("CUSTOS_CONF", conf, 1);
    r.init = F->C_Initialize(NULL);
    if (r.init == CKR_OK &&
        F->C_OpenSession(H.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) == CKR_OK)
        r.login = h_login_rv(s, CKU_USER, H.user_pin);
    if (r.login == CKR_OK) {
        CK_ULONG len32 = 32;
        CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 }, cgen = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
        CK_ATTRIBUTE kt[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_ENCRYPT, &h_true, 1 },
                              { CKA_DECRYPT, &h_true, 1 } };
        CK_ATTRIBUTE wt[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_WRAP, &h_true, 1 } };
        CK_ATTRIBUTE dt[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_EXTRACTABLE, &h_true, 1 } };
        CK_ATTRIBUTE ct[] = { { CKA_ENCRYPT, &h_true, 1 } };
        CK_OBJECT_HANDLE k, kek, dek, ck;
        r.keys = F->C_GenerateKey(s, &gen, kt, NELEM(kt), &k);
        if (r.keys == CKR_OK)
            r.keys = F->C_GenerateKey(s, &gen, wt, NELEM(wt), &kek);
        if (r.keys == CKR_OK)
            r.keys = F->C_GenerateKey(s, &gen, dt, NELEM(dt), &dek);
        if (r.keys == CKR_OK)
            r.keys = F->C_GenerateKey(s, &cgen, ct, NELEM(ct), &ck);
        if (r.keys == CKR_OK) {
            uint8_t iv[IV_LEN], tag[TAG_LEN], pt[16] = "strict policy...", out[16], back[16];
            CK_GCM_MESSAGE_PARAMS p;
            CK_ULONG len = sizeof(out);
            r.msg_init = F32->C_MessageEncryptInit(s, &GCM_MECH, k);
            h_random(iv, sizeof(iv));
            gcm_msg(&p, iv, IV_LEN, 0, CKG_NO_GENERATE, tag, 128);
            r.no_generate = F32->C_EncryptMessage(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), out, &len);
            gcm_msg(&p, iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
            len = sizeof(out);
            r.generate = F32->C_EncryptMessage(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), out, &len);
            if (r.generate == CKR_OK) {
                gcm_msg(&p, iv, IV_LEN, 0, CKG_NO_GENERATE, tag, 128);
                len = sizeof(back);
                r.decrypt = F32->C_MessageDecryptInit(s, &GCM_MECH, k);
                if (r.decrypt == CKR_OK)
                    r.decrypt = F32->C_DecryptMessage(s, &p, sizeof(p), NULL, 0, out, sizeof(out), back, &len);
                if (r.decrypt == CKR_OK && memcmp(back, pt, sizeof(pt)) != 0)
                    r.decrypt = CKR_GENERAL_ERROR;
            }
            CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS cp;
            uint8_t nonce[24];
            h_random(nonce, sizeof(nonce));
            cha_msg(&cp, nonce, 24, tag);
            len = sizeof(out);
            (void)F32->C_MessageEncryptFinal(s);
            r.chacha = F32->C_MessageEncryptInit(s, &CHA_MECH, ck);
            if (r.chacha == CKR_OK)
                r.chacha = F32->C_EncryptMessage(s, &cp, sizeof(cp), NULL, 0, pt, sizeof(pt), out, &len);
            r.wrap_caller = child_wrap(s, kek, dek, CKG_NO_GENERATE);
            r.wrap_generated = child_wrap(s, kek, dek, CKG_GENERATE);
        }
    }
    (void)F->C_Finalize(NULL);
    _exit(write(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 3);
}

static void test_caller_iv_refuse_policy_in_message_api_and_authenticated_wrap(void)
{
    char conf[160];
    snprintf(conf, sizeof(conf), "%s/refuse-iv-msg.conf", h_tmpdir());
    FILE *f = fopen(conf, "w");
    REQUIRE(f != NULL, "write the strict config file");
    fprintf(f,
            "[store]\npath = %s/store\n"
            "[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n"
            "[policy]\ncaller_iv = refuse\n",
            h_tmpdir());
    REQUIRE(fclose(f) == 0, "close the strict config file");
    int fd[2];
    REQUIRE(pipe(fd) == 0, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        close(fd[0]);
        refuse_child(fd[1], conf);
    }
    close(fd[1]);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child exited normally");
    struct refuse_result r;
    REQUIRE(read(fd[0], &r, sizeof(r)) == (ssize_t)sizeof(r), "the child's result");
    close(fd[0]);
    RV_REQ(r.init, CKR_OK, "child C_Initialize with caller_iv = refuse");
    RV_REQ(r.login, CKR_OK, "child C_Login");
    RV_REQ(r.keys, CKR_OK, "child makes its keys");
    RV_REQ(r.msg_init, CKR_OK, "child C_MessageEncryptInit");
    /* docs/key-families.md, Nonce discipline: CKG_NO_GENERATE in the
     * message API and in C_WrapKeyAuthenticated is refused. */
    RV_EQ(r.no_generate, CKR_ACTION_PROHIBITED, "C_EncryptMessage(CKG_NO_GENERATE) under caller_iv = refuse");
    RV_EQ(r.generate, CKR_OK, "C_EncryptMessage(CKG_GENERATE) under caller_iv = refuse");
    RV_EQ(r.decrypt, CKR_OK, "C_DecryptMessage with the caller's IV under caller_iv = refuse");
    /* ChaCha20-Poly1305 message parameters carry no generator: the nonce is
     * always the caller's, so strict mode refuses it. */
    RV_EQ(r.chacha, CKR_ACTION_PROHIBITED,
          "ChaCha20-Poly1305 C_EncryptMessage (caller nonce) under caller_iv = refuse");
    RV_EQ(r.wrap_caller, CKR_ACTION_PROHIBITED,
          "C_WrapKeyAuthenticated(CKG_NO_GENERATE) under caller_iv = refuse");
    RV_EQ(r.wrap_generated, CKR_OK, "C_WrapKeyAuthenticated(CKG_GENERATE) under caller_iv = refuse");

    /* The policy is the child's: this process (caller_iv = count) still
     * encrypts with its own IV. */
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[IV_LEN], tag[TAG_LEN], pt[16] = { 0 }, out[16];
    CK_GCM_MESSAGE_PARAMS p;
    CK_ULONG len = sizeof(out);
    h_random(iv, sizeof(iv));
    gcm_msg(&p, iv, IV_LEN, 0, CKG_NO_GENERATE, tag, 128);
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, k), CKR_OK, "C_MessageEncryptInit");
    RV_EQ(enc(s, &p, sizeof(p), NULL, 0, pt, sizeof(pt), out, &len), CKR_OK,
          "CKG_NO_GENERATE under the default policy (count)");
}

/* ---- authenticated key wrapping ----------------------------------------------------- */
static CK_OBJECT_HANDLE kek_key(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE t[] = { { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    return h_aes_key(s, 32, t, NELEM(t));
}

static CK_ULONG secret_keys(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
    return h_count(s, t, NELEM(t));
}

static void wrap_params(CK_GCM_WRAP_PARAMS *w, CK_MECHANISM *m, uint8_t *iv, CK_GENERATOR_FUNCTION gen,
                        CK_ULONG tagbits)
{
    *w = (CK_GCM_WRAP_PARAMS){ iv, IV_LEN, 0, gen, NULL, 0, tagbits };
    *m = (CK_MECHANISM){ CKM_AES_GCM, w, sizeof(*w) };
}

static CK_RV unwrap_ad(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE kek, uint8_t *blob, CK_ULONG len,
                       const char *ad, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_DECRYPT, &h_true, 1 },
    };
    *out = CK_INVALID_HANDLE;
    return F32->C_UnwrapKeyAuthenticated(s, m, kek, blob, len, t, NELEM(t), (CK_BYTE_PTR)ad, strlen(ad), out);
}

static void test_wrap_authenticated_binds_the_associated_data(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE kek = kek_key(s);
    CK_ATTRIBUTE x[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE dek = h_aes_key(s, 32, x, NELEM(x));
    uint8_t iv[IV_LEN], iv2[IV_LEN], blob[64], blob2[64], msg_iv[IV_LEN], tag[TAG_LEN], pt[64], ct[64], back[64];
    CK_GCM_WRAP_PARAMS w;
    CK_MECHANISM m;
    CK_ULONG len, len2;
    CK_OBJECT_HANDLE got;

    /* Something the DEK encrypted. */
    h_random(pt, sizeof(pt));
    CK_GCM_MESSAGE_PARAMS p;
    gcm_msg(&p, msg_iv, IV_LEN, 0, CKG_GENERATE, tag, 128);
    RV_REQ(F32->C_MessageEncryptInit(s, &GCM_MECH, dek), CKR_OK, "C_MessageEncryptInit(DEK)");
    len = sizeof(ct);
    RV_REQ(enc(s, &p, sizeof(p), AAD, sizeof(AAD), pt, sizeof(pt), ct, &len), CKR_OK, "the DEK encrypts");
    RV_EQ(F32->C_MessageEncryptFinal(s), CKR_OK, "C_MessageEncryptFinal");

    /* Size query, then the wrap. */
    memset(iv, FILL, sizeof(iv));
    wrap_params(&w, &m, iv, CKG_GENERATE, 128);
    len = 0;
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), NULL, &len), CKR_OK,
          "C_WrapKeyAuthenticated size query");
    CHECK(len == 32 + TAG_LEN, "size query: key bytes + 16-byte tag");
    CHECK(all_bytes(iv, IV_LEN, FILL), "the size query writes no IV");
    len = 10;
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_BUFFER_TOO_SMALL, "C_WrapKeyAuthenticated into a short buffer");
    CHECK(len == 32 + TAG_LEN, "CKR_BUFFER_TOO_SMALL gives the length needed");
    len = sizeof(blob);
    RV_REQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len), CKR_OK,
           "C_WrapKeyAuthenticated(CKM_AES_GCM, CKG_GENERATE)");
    CHECK(len == 32 + TAG_LEN, "wrapped key: 32 bytes + tag");
    CHECK(!all_bytes(iv, IV_LEN, FILL), "the token wrote its IV into pIv");

    /* A second wrap of the same key: another IV, another blob. */
    memset(iv2, FILL, sizeof(iv2));
    wrap_params(&w, &m, iv2, CKG_GENERATE, 128);
    len2 = sizeof(blob2);
    RV_REQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob2, &len2),
           CKR_OK, "C_WrapKeyAuthenticated again");
    CHECK(memcmp(iv, iv2, IV_LEN) != 0, "each wrap gets its own IV");
    CHECK(len2 == len && memcmp(blob, blob2, len) != 0, "and its own wrapped bytes");

    /* Unwrap with the same IV and associated data: the key decrypts. */
    CK_ULONG before = secret_keys(s);
    wrap_params(&w, &m, iv, CKG_NO_GENERATE, 128);
    RV_REQ(unwrap_ad(s, &m, kek, blob, len, WRAP_AD, &got), CKR_OK, "C_UnwrapKeyAuthenticated");
    CHECK(secret_keys(s) == before + 1, "one new key");
    RV_REQ(F32->C_MessageDecryptInit(s, &GCM_MECH, got), CKR_OK, "C_MessageDecryptInit(unwrapped key)");
    gcm_msg(&p, msg_iv, IV_LEN, 0, CKG_NO_GENERATE, tag, 128);
    len2 = sizeof(back);
    RV_EQ(dec(s, &p, sizeof(p), AAD, sizeof(AAD), ct, sizeof(pt), back, &len2), CKR_OK,
          "the unwrapped key decrypts what the DEK encrypted");
    CHECK(len2 == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0, "and gives the plaintext");
    RV_EQ(F32->C_MessageDecryptFinal(s), CKR_OK, "C_MessageDecryptFinal");
    RV_EQ(F->C_DestroyObject(s, got), CKR_OK, "destroy the unwrapped key");
    /* The generator in the unwrap parameters is not used: the IV is given. */
    wrap_params(&w, &m, iv, CKG_GENERATE, 128);
    RV_EQ(unwrap_ad(s, &m, kek, blob, len, WRAP_AD, &got), CKR_OK, "C_UnwrapKeyAuthenticated (ivGenerator set)");
    if (got != CK_INVALID_HANDLE)
        (void)F->C_DestroyObject(s, got);

    /* Other associated data, a flipped byte, another IV: no key. */
    before = secret_keys(s);
    wrap_params(&w, &m, iv, CKG_NO_GENERATE, 128);
    RV_EQ(unwrap_ad(s, &m, kek, blob, len, "tenant=43,table=users,version=3", &got), CKR_WRAPPED_KEY_INVALID,
          "C_UnwrapKeyAuthenticated with other associated data");
    CHECK(got == CK_INVALID_HANDLE, "no handle for other associated data");
    RV_EQ(unwrap_ad(s, &m, kek, blob, len, "", &got), CKR_WRAPPED_KEY_INVALID,
          "C_UnwrapKeyAuthenticated without the associated data");
    for (CK_ULONG i = 0; i < len; i += len - 1) {
        blob[i] ^= 0x20;
        RV_EQ(unwrap_ad(s, &m, kek, blob, len, WRAP_AD, &got), CKR_WRAPPED_KEY_INVALID,
              i == 0 ? "C_UnwrapKeyAuthenticated with a flipped key byte"
                     : "C_UnwrapKeyAuthenticated with a flipped tag byte");
        CHECK(got == CK_INVALID_HANDLE, "no handle for a flipped byte");
        blob[i] ^= 0x20;
    }
    wrap_params(&w, &m, iv2, CKG_NO_GENERATE, 128);
    RV_EQ(unwrap_ad(s, &m, kek, blob, len, WRAP_AD, &got), CKR_WRAPPED_KEY_INVALID,
          "C_UnwrapKeyAuthenticated with another wrap's IV");
    CHECK(secret_keys(s) == before, "no object was made by the failed unwraps");
}

static void test_wrap_authenticated_refusals(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE kek = kek_key(s);
    CK_OBJECT_HANDLE fixed = h_aes_key(s, 32, NULL, 0); /* CKA_EXTRACTABLE defaults to false */
    CK_ATTRIBUTE x[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE dek = h_aes_key(s, 32, x, NELEM(x));
    uint8_t iv[IV_LEN], blob[64];
    CK_GCM_WRAP_PARAMS w;
    CK_MECHANISM m;
    CK_ULONG len = sizeof(blob);

    wrap_params(&w, &m, iv, CKG_GENERATE, 128);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, fixed, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_KEY_UNEXTRACTABLE, "C_WrapKeyAuthenticated of a non-extractable key");
    len = sizeof(blob);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, fixed, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_KEY_FUNCTION_NOT_PERMITTED, "C_WrapKeyAuthenticated under a key without CKA_WRAP");
    wrap_params(&w, &m, iv, CKG_GENERATE, 64);
    len = sizeof(blob);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_MECHANISM_PARAM_INVALID, "C_WrapKeyAuthenticated with a 64-bit tag");
    wrap_params(&w, &m, iv, 9, 128);
    len = sizeof(blob);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_MECHANISM_PARAM_INVALID, "C_WrapKeyAuthenticated with ivGenerator 9");
    wrap_params(&w, &m, iv, CKG_GENERATE, 128);
    m.ulParameterLen = sizeof(CK_GCM_MESSAGE_PARAMS);
    len = sizeof(blob);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &m, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_MECHANISM_PARAM_INVALID, "C_WrapKeyAuthenticated with a wrong ulParameterLen");
    CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    len = sizeof(blob);
    RV_EQ(F32->C_WrapKeyAuthenticated(s, &kwp, kek, dek, (CK_BYTE_PTR)WRAP_AD, strlen(WRAP_AD), blob, &len),
          CKR_MECHANISM_INVALID, "C_WrapKeyAuthenticated with CKM_AES_KEY_WRAP_KWP");
}

static const h_case CASES[] = {
    H_CASE(test_gcm_message_round_trips_with_every_iv_generator),
    H_CASE(test_gcm_message_size_query_does_not_consume_an_iv),
    H_CASE(test_gcm_multi_part_messages_equal_one_shot),
    H_CASE(test_message_functions_on_the_3_0_list),
    H_CASE(test_message_context_rules),
    H_CASE(test_gcm_message_bad_parameters_are_param_invalid),
    H_CASE(test_chacha_message_known_answers),
    H_CASE(test_chacha_message_round_trips_with_12_and_24_byte_nonces),
    H_CASE(test_chacha_message_context_rules_and_bad_parameters),
    H_CASE(test_a_million_generated_nonces_never_repeat),
    H_CASE(test_generated_nonces_never_repeat_across_sessions_and_processes),
    H_CASE(test_counter_xor_cannot_be_steered_onto_an_earlier_iv),
    H_CASE(test_random_generator_with_a_long_fixed_part_never_repeats),
    H_CASE(test_caller_iv_refuse_policy_in_message_api_and_authenticated_wrap),
    H_CASE(test_wrap_authenticated_binds_the_associated_data),
    H_CASE(test_wrap_authenticated_refusals),
};

int t_message_register(void)
{
    return h_add_suite("message", CASES, NELEM(CASES));
}
