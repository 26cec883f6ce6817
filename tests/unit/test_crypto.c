/* Unit tests for src/crypto/: published test vectors (NIST GCM spec, SP
 * 800-38A, RFC 8439, draft-irtf-cfrg-xchacha-03, RFC 3394, RFC 5649, FIPS
 * 180/202, RFC 4231, RFC 7914) and the failures PKCS#11 clients must see
 * (wrong tag, AAD, integrity). */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "crypto/crypto.h"
#include "util/buf.h"
#include "util/secmem.h"

#define HEXMAX 256

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    unsigned v;
    while (*s != '\0') {
        if (*s == ' ') {
            s++;
            continue;
        }
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* ---- AES-GCM: "The Galois/Counter Mode of Operation" (McGrew, Viega),
 * Appendix B test cases, which NIST's GCM validation also carries. */
typedef struct gcm_vec {
    const char *key, *iv, *pt, *aad, *ct, *tag;
} gcm_vec;

static const char GCM_PT[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
static const char GCM_AAD[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

static const gcm_vec GCM_CASE4 = {
    "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", GCM_PT, GCM_AAD,
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
    "5bc94fbc3221a5db94fae95ae7121a47",
};
static const gcm_vec GCM_CASE5 = { /* 64-bit IV */
    "feffe9928665731c6d6a8f9467308308", "cafebabefacedbad", GCM_PT, GCM_AAD,
    "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
    "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598",
    "3612d2e79e3b0785561be14aaca2fccb",
};
static const gcm_vec GCM_CASE6 = { /* 480-bit IV */
    "feffe9928665731c6d6a8f9467308308",
    "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
    "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
    GCM_PT, GCM_AAD,
    "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
    "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
    "619cc5aefffe0bfa462af43c1699d050",
};
static const gcm_vec GCM_CASE16 = { /* AES-256 */
    "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    "cafebabefacedbaddecaf888", GCM_PT, GCM_AAD,
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    "76fc6ece0f4e1768cddf8853bb2d551b",
};

typedef struct aead_io {
    uint8_t key[HEXMAX], iv[HEXMAX], pt[HEXMAX], aad[HEXMAX], ct[HEXMAX], tag[16];
    size_t keylen, ivlen, ptlen, aadlen, ctlen, taglen;
} aead_io;

static void load(const gcm_vec *v, aead_io *io)
{
    io->keylen = unhex(v->key, io->key);
    io->ivlen = unhex(v->iv, io->iv);
    io->ptlen = unhex(v->pt, io->pt);
    io->aadlen = unhex(v->aad, io->aad);
    io->ctlen = unhex(v->ct, io->ct);
    io->taglen = unhex(v->tag, io->tag);
}

static CK_RV aead_encrypt(crypto_aead *a, crypto_aead_alg alg, const aead_io *io, uint8_t *ct,
                          uint8_t *tag, size_t taglen)
{
    GUARD(crypto_aead_init(a, alg, true, io->key, io->keylen, io->iv, io->ivlen));
    GUARD(crypto_aead_aad(a, io->aad, io->aadlen));
    GUARD(crypto_aead_update(a, io->pt, io->ptlen, ct));
    return crypto_aead_final_encrypt(a, tag, taglen);
}

static CK_RV aead_decrypt(crypto_aead *a, crypto_aead_alg alg, const aead_io *io,
                          const uint8_t *aad, size_t aadlen, const uint8_t *ct,
                          const uint8_t *tag, size_t taglen, uint8_t *pt)
{
    GUARD(crypto_aead_init(a, alg, false, io->key, io->keylen, io->iv, io->ivlen));
    GUARD(crypto_aead_aad(a, aad, aadlen));
    GUARD(crypto_aead_update(a, ct, io->ctlen, pt));
    return crypto_aead_final_decrypt(a, tag, taglen);
}

/* Encrypt and decrypt one vector on the given context. */
static void check_vector(crypto_aead *a, crypto_aead_alg alg, const aead_io *io)
{
    uint8_t out[HEXMAX], tag[16];
    CU_ASSERT_EQUAL_FATAL(aead_encrypt(a, alg, io, out, tag, io->taglen), CKR_OK);
    CU_ASSERT(memcmp(out, io->ct, io->ctlen) == 0);
    CU_ASSERT(memcmp(tag, io->tag, io->taglen) == 0);
    memset(out, 0, sizeof(out));
    CU_ASSERT_EQUAL(aead_decrypt(a, alg, io, io->aad, io->aadlen, io->ct, io->tag, io->taglen, out),
                    CKR_OK);
    CU_ASSERT(memcmp(out, io->pt, io->ptlen) == 0);
}

static void run_gcm(const gcm_vec *v)
{
    aead_io io;
    crypto_aead *a = NULL;
    load(v, &io);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    check_vector(a, AEAD_AES_GCM, &io);
    crypto_aead_free(a);
}

static void test_gcm_aes128_96bit_iv_matches_spec_case4(void) { run_gcm(&GCM_CASE4); }
static void test_gcm_aes128_64bit_iv_matches_spec_case5(void) { run_gcm(&GCM_CASE5); }
static void test_gcm_aes128_480bit_iv_matches_spec_case6(void) { run_gcm(&GCM_CASE6); }
static void test_gcm_aes256_matches_spec_case16(void) { run_gcm(&GCM_CASE16); }

static void test_gcm_truncated_tag_is_prefix_of_full_tag(void)
{
    aead_io io;
    uint8_t out[HEXMAX], tag[16];
    crypto_aead *a = NULL;
    load(&GCM_CASE4, &io);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(aead_encrypt(a, AEAD_AES_GCM, &io, out, tag, 12), CKR_OK);
    CU_ASSERT(memcmp(tag, io.tag, 12) == 0);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_AES_GCM, &io, io.aad, io.aadlen, io.ct, io.tag, 4, out),
                    CKR_OK);
    CU_ASSERT_EQUAL(aead_encrypt(a, AEAD_AES_GCM, &io, out, tag, 3), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(aead_encrypt(a, AEAD_AES_GCM, &io, out, tag, 17), CKR_ARGUMENTS_BAD);
    crypto_aead_free(a);
}

static void test_gcm_wrong_tag_is_encrypted_data_invalid(void)
{
    aead_io io;
    uint8_t out[HEXMAX];
    crypto_aead *a = NULL;
    load(&GCM_CASE4, &io);
    io.tag[15] ^= 1;
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_AES_GCM, &io, io.aad, io.aadlen, io.ct, io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    crypto_aead_free(a);
}

static void test_gcm_wrong_aad_is_encrypted_data_invalid(void)
{
    aead_io io;
    uint8_t out[HEXMAX];
    crypto_aead *a = NULL;
    load(&GCM_CASE4, &io);
    io.aad[0] ^= 0x80;
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_AES_GCM, &io, io.aad, io.aadlen, io.ct, io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    /* Missing AAD altogether fails too. */
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_AES_GCM, &io, NULL, 0, io.ct, io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    crypto_aead_free(a);
}

static void test_gcm_tampered_ciphertext_is_encrypted_data_invalid(void)
{
    aead_io io;
    uint8_t out[HEXMAX];
    crypto_aead *a = NULL;
    load(&GCM_CASE16, &io);
    io.ct[io.ctlen - 1] ^= 0x01;
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_AES_GCM, &io, io.aad, io.aadlen, io.ct, io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    crypto_aead_free(a);
}

/* ---- ChaCha20-Poly1305: RFC 8439 sec. 2.8.2 */
static const char SUNSCREEN[] =
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    "the future, sunscreen would be it.";

static void load_rfc8439(aead_io *io)
{
    io->keylen = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
                       io->key);
    io->ivlen = unhex("070000004041424344454647", io->iv);
    io->aadlen = unhex("50515253c0c1c2c3c4c5c6c7", io->aad);
    io->ptlen = strlen(SUNSCREEN);
    memcpy(io->pt, SUNSCREEN, io->ptlen);
    io->ctlen = unhex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
                      "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
                      "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
                      "3ff4def08e4b7a9de576d26586cec64b6116",
                      io->ct);
    io->taglen = unhex("1ae10b594f09e26a7e902ecbd0600691", io->tag);
}

static void test_chacha20_poly1305_matches_rfc8439(void)
{
    aead_io io;
    crypto_aead *a = NULL;
    load_rfc8439(&io);
    CU_ASSERT_EQUAL_FATAL(io.ctlen, io.ptlen);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    check_vector(a, AEAD_CHACHA20_POLY1305, &io);
    crypto_aead_free(a);
}

static void test_chacha20_poly1305_wrong_tag_or_aad_fails(void)
{
    aead_io io;
    uint8_t out[HEXMAX], bad[16];
    crypto_aead *a = NULL;
    load_rfc8439(&io);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    memcpy(bad, io.tag, 16);
    bad[0] ^= 0x40;
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_CHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct, bad,
                                 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_CHACHA20_POLY1305, &io, io.aad, io.aadlen - 1, io.ct,
                                 io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    /* RFC 8439 has only the full 16-byte tag. */
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_CHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct, io.tag,
                                 12, out),
                    CKR_ARGUMENTS_BAD);
    crypto_aead_free(a);
}

/* ---- XChaCha20-Poly1305: draft-irtf-cfrg-xchacha-03 appendix A.3.1 (the
 * RFC 8439 key, AAD and plaintext under a 192-bit nonce). */
static void load_xchacha_draft(aead_io *io)
{
    load_rfc8439(io);
    io->ivlen = unhex("404142434445464748494a4b4c4d4e4f5051525354555657", io->iv);
    io->ctlen = unhex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
                      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
                      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
                      "21f9664c97637da9768812f615c68b13b52e",
                      io->ct);
    io->taglen = unhex("c0875924c1c7987947deafd8780acf49", io->tag);
}

static void test_xchacha20_poly1305_matches_draft_a31(void)
{
    aead_io io, rfc;
    crypto_aead *a = NULL;
    load_xchacha_draft(&io);
    load_rfc8439(&rfc);
    CU_ASSERT_EQUAL_FATAL(io.ivlen, 24);
    CU_ASSERT_EQUAL_FATAL(io.ctlen, io.ptlen);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    /* Alternating with plain ChaCha20-Poly1305 on one context: the subkey
     * must never leak from one operation into the next. */
    for (int round = 0; round < 4; round++) {
        check_vector(a, AEAD_XCHACHA20_POLY1305, &io);
        check_vector(a, AEAD_CHACHA20_POLY1305, &rfc);
    }
    crypto_aead_free(a);
}

static void test_xchacha20_poly1305_wrong_tag_aad_or_nonce_fails(void)
{
    aead_io io;
    uint8_t out[HEXMAX], bad[16];
    crypto_aead *a = NULL;
    load_xchacha_draft(&io);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    memcpy(bad, io.tag, 16);
    bad[15] ^= 0x01;
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_XCHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct, bad,
                                 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_XCHACHA20_POLY1305, &io, NULL, 0, io.ct, io.tag, 16,
                                 out),
                    CKR_ENCRYPTED_DATA_INVALID);
    /* The HChaCha20 half (nonce[0..15]) and the ChaCha20 half both count. */
    io.iv[0] ^= 1;
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_XCHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct,
                                 io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    io.iv[0] ^= 1;
    io.iv[23] ^= 1;
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_XCHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct,
                                 io.tag, 16, out),
                    CKR_ENCRYPTED_DATA_INVALID);
    io.iv[23] ^= 1;
    /* Only the full 16-byte tag; 24-byte nonces and 32-byte keys only. */
    CU_ASSERT_EQUAL(aead_decrypt(a, AEAD_XCHACHA20_POLY1305, &io, io.aad, io.aadlen, io.ct,
                                 io.tag, 12, out),
                    CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_XCHACHA20_POLY1305, true, io.key, 32, io.iv, 12),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_XCHACHA20_POLY1305, true, io.key, 32, io.iv, 23),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_CHACHA20_POLY1305, true, io.key, 32, io.iv, 24),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_XCHACHA20_POLY1305, true, io.key, 16, io.iv, 24),
                    CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_aead_update(a, io.pt, 1, out), CKR_OPERATION_NOT_INITIALIZED);
    /* ...and the context still works. */
    check_vector(a, AEAD_XCHACHA20_POLY1305, &io);
    crypto_aead_free(a);
}

static void test_aead_bad_key_and_iv_sizes_are_rejected(void)
{
    uint8_t key[33] = { 0 }, iv[129] = { 0 };
    crypto_aead *a = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 15, iv, 12), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 33, iv, 12), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 0, iv, 12), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_CHACHA20_POLY1305, true, key, 16, iv, 12),
                    CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 0),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 129),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_CHACHA20_POLY1305, true, key, 32, iv, 8),
                    CKR_MECHANISM_PARAM_INVALID);
    /* A failed init leaves no operation behind. */
    CU_ASSERT_EQUAL(crypto_aead_update(a, key, 1, iv), CKR_OPERATION_NOT_INITIALIZED);
    /* ...and the context still works afterwards: 1-byte and 128-byte IVs. */
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 1), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 128), CKR_OK);
    crypto_aead_free(a);
}

static void test_aead_operations_out_of_order_fail(void)
{
    uint8_t key[16] = { 0 }, iv[12] = { 0 }, blk[16] = { 0 }, tag[16];
    crypto_aead *a = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_final_encrypt(a, tag, 16), CKR_OPERATION_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 12), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_update(a, blk, 16, blk), CKR_OK);
    CU_ASSERT_NOT_EQUAL(crypto_aead_aad(a, blk, 4), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 12), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_final_decrypt(a, tag, 16), CKR_OPERATION_NOT_INITIALIZED);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, key, 16, iv, 12), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_final_encrypt(a, tag, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_final_encrypt(a, tag, 16), CKR_OPERATION_NOT_INITIALIZED);
    crypto_aead_free(a);
}

/* One context, many operations, switching algorithm, key size, IV length
 * and direction: every result must equal a fresh context's. */
static void test_aead_context_reused_for_many_operations(void)
{
    const gcm_vec *vecs[] = { &GCM_CASE4, &GCM_CASE6, &GCM_CASE16, &GCM_CASE5 };
    aead_io io[5];
    crypto_aead *a = NULL;
    for (size_t i = 0; i < 4; i++)
        load(vecs[i], &io[i]);
    load_rfc8439(&io[4]);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    for (size_t round = 0; round < 50; round++) {
        size_t k = round % 5;
        check_vector(a, k == 4 ? AEAD_CHACHA20_POLY1305 : AEAD_AES_GCM, &io[k]);
        if (round % 7 == 0) {
            /* an abandoned operation must not disturb the next one */
            CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, io[0].key, 16, io[0].iv, 7),
                            CKR_OK);
            CU_ASSERT_EQUAL(crypto_aead_aad(a, io[0].aad, 3), CKR_OK);
        }
    }
    crypto_aead_free(a);
}

static void test_aead_in_place_and_chunked_updates(void)
{
    aead_io io;
    uint8_t blk[HEXMAX], tag[16];
    crypto_aead *a = NULL;
    load(&GCM_CASE4, &io);
    CU_ASSERT_EQUAL_FATAL(crypto_aead_new(&a), CKR_OK);
    memcpy(blk, io.pt, io.ptlen);
    CU_ASSERT_EQUAL(crypto_aead_init(a, AEAD_AES_GCM, true, io.key, 16, io.iv, 12), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_aad(a, io.aad, 5), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_aad(a, io.aad + 5, io.aadlen - 5), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_update(a, blk, 17, blk), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_update(a, blk + 17, io.ptlen - 17, blk + 17), CKR_OK);
    CU_ASSERT_EQUAL(crypto_aead_final_encrypt(a, tag, 16), CKR_OK);
    CU_ASSERT(memcmp(blk, io.ct, io.ctlen) == 0);
    CU_ASSERT(memcmp(tag, io.tag, 16) == 0);
    crypto_aead_free(a);
}

/* ---- crypto_seal / crypto_unseal */
static void test_seal_unseal_roundtrip_with_fresh_nonces(void)
{
    uint8_t key[32], pt[40], s1[40 + CRYPTO_SEAL_OVERHEAD], s2[sizeof(s1)], back[40];
    const uint8_t aad[] = "object 7 / CKA_VALUE";
    CU_ASSERT_EQUAL_FATAL(crypto_random(key, sizeof(key)), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(crypto_random(pt, sizeof(pt)), CKR_OK);
    CU_ASSERT_EQUAL(crypto_seal(key, aad, sizeof(aad), pt, sizeof(pt), s1), CKR_OK);
    CU_ASSERT_EQUAL(crypto_seal(key, aad, sizeof(aad), pt, sizeof(pt), s2), CKR_OK);
    CU_ASSERT(memcmp(s1, s2, 12) != 0); /* nonces differ */
    CU_ASSERT(memcmp(s1 + 12, pt, sizeof(pt)) != 0);
    CU_ASSERT_EQUAL(crypto_unseal(key, aad, sizeof(aad), s1, sizeof(s1), back), CKR_OK);
    CU_ASSERT(memcmp(back, pt, sizeof(pt)) == 0);
    memset(back, 0, sizeof(back));
    CU_ASSERT_EQUAL(crypto_unseal(key, aad, sizeof(aad), s2, sizeof(s2), back), CKR_OK);
    CU_ASSERT(memcmp(back, pt, sizeof(pt)) == 0);
    /* an empty secret seals to nonce and tag only */
    CU_ASSERT_EQUAL(crypto_seal(key, NULL, 0, NULL, 0, s1), CKR_OK);
    CU_ASSERT_EQUAL(crypto_unseal(key, NULL, 0, s1, CRYPTO_SEAL_OVERHEAD, NULL), CKR_OK);
}

static void test_unseal_with_wrong_aad_fails_and_wipes_output(void)
{
    uint8_t key[32], pt[32], sealed[32 + CRYPTO_SEAL_OVERHEAD], back[32];
    const uint8_t aad[] = "object 7", other[] = "object 8";
    memset(pt, 0xa5, sizeof(pt));
    CU_ASSERT_EQUAL_FATAL(crypto_random(key, sizeof(key)), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(crypto_seal(key, aad, sizeof(aad), pt, sizeof(pt), sealed), CKR_OK);
    memset(back, 0x5a, sizeof(back));
    CU_ASSERT_EQUAL(crypto_unseal(key, other, sizeof(other), sealed, sizeof(sealed), back),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT(all_zero(back, sizeof(back)));
    sealed[5] ^= 1; /* the nonce is authenticated too */
    memset(back, 0x5a, sizeof(back));
    CU_ASSERT_EQUAL(crypto_unseal(key, aad, sizeof(aad), sealed, sizeof(sealed), back),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT(all_zero(back, sizeof(back)));
    sealed[5] ^= 1;
    key[0] ^= 1;
    CU_ASSERT_EQUAL(crypto_unseal(key, aad, sizeof(aad), sealed, sizeof(sealed), back),
                    CKR_ENCRYPTED_DATA_INVALID);
    key[0] ^= 1;
    CU_ASSERT_EQUAL(crypto_unseal(key, aad, sizeof(aad), sealed, sizeof(sealed), back), CKR_OK);
    CU_ASSERT(memcmp(back, pt, sizeof(pt)) == 0);
}

static void test_unseal_short_input_is_len_range(void)
{
    uint8_t key[32] = { 0 }, in[CRYPTO_SEAL_OVERHEAD] = { 0 }, out[1];
    CU_ASSERT_EQUAL(crypto_unseal(key, NULL, 0, in, CRYPTO_SEAL_OVERHEAD - 1, out),
                    CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_unseal(key, NULL, 0, in, 0, out), CKR_ENCRYPTED_DATA_LEN_RANGE);
}

/* ---- AES key wrap */
static void test_kw_rfc3394_256bit_kek_wraps_256bit_key(void)
{
    uint8_t kek[32], key[32], want[40], out[40], back[40];
    size_t n = 0;
    unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", kek);
    unhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f", key);
    unhex("28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43b"
          "fb988b9b7a02dd21", want);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(false, 32), 40);
    CU_ASSERT_EQUAL(crypto_kw_wrap(false, kek, 32, key, 32, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 40);
    CU_ASSERT(memcmp(out, want, 40) == 0);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(false, kek, 32, want, 40, back, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 32);
    CU_ASSERT(memcmp(back, key, 32) == 0);
}

static void run_kwp(const char *key_hex, const char *want_hex)
{
    uint8_t kek[24], key[32], want[48], out[48], back[48];
    size_t n = 0;
    unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", kek);
    size_t klen = unhex(key_hex, key), wlen = unhex(want_hex, want);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(true, klen), wlen);
    CU_ASSERT_EQUAL(crypto_kw_wrap(true, kek, 24, key, klen, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, wlen);
    CU_ASSERT(memcmp(out, want, wlen) == 0);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(true, kek, 24, want, wlen, back, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, klen);
    CU_ASSERT(memcmp(back, key, klen) == 0);
}

static void test_kwp_rfc5649_20_octet_key(void)
{
    run_kwp("c37b7e6492584340bed12207808941155068f738",
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
}

static void test_kwp_rfc5649_7_octet_key(void) { run_kwp("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"); }

static void test_kw_bad_integrity_is_wrapped_key_invalid_and_wipes(void)
{
    uint8_t kek[16] = { 1 }, key[24], wrapped[40], back[40];
    size_t n = 0;
    memset(key, 0x77, sizeof(key));
    for (int pad = 0; pad <= 1; pad++) {
        CU_ASSERT_EQUAL_FATAL(crypto_kw_wrap(pad, kek, 16, key, 24, wrapped, &n), CKR_OK);
        CU_ASSERT_EQUAL(n, 32);
        wrapped[n - 1] ^= 0x10;
        memset(back, 0x77, sizeof(back));
        CU_ASSERT_EQUAL(crypto_kw_unwrap(pad, kek, 16, wrapped, n, back, &n),
                        CKR_WRAPPED_KEY_INVALID);
        CU_ASSERT(all_zero(back, 24));
        wrapped[31] ^= 0x10;
        kek[15] = 9; /* the wrong KEK fails the same way */
        CU_ASSERT_EQUAL(crypto_kw_unwrap(pad, kek, 16, wrapped, 32, back, &n),
                        CKR_WRAPPED_KEY_INVALID);
        kek[15] = 0;
    }
    /* a 3394 blob is not a 5649 blob */
    CU_ASSERT_EQUAL_FATAL(crypto_kw_wrap(false, kek, 16, key, 24, wrapped, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(true, kek, 16, wrapped, n, back, &n), CKR_WRAPPED_KEY_INVALID);
}

static void test_kw_bad_lengths_are_rejected(void)
{
    uint8_t kek[32] = { 0 }, in[64] = { 0 }, out[80];
    size_t n = 0;
    CU_ASSERT_EQUAL(crypto_kw_wrap(false, kek, 16, in, 20, out, &n), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_wrap(false, kek, 16, in, 8, out, &n), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_wrap(true, kek, 16, in, 0, out, &n), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_wrap(false, kek, 17, in, 16, out, &n), CKR_WRAPPING_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(false, kek, 20, in, 24, out, &n),
                    CKR_UNWRAPPING_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(false, kek, 16, in, 16, out, &n), CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(false, kek, 16, in, 28, out, &n), CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(true, kek, 16, in, 8, out, &n), CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(true, 1), 16);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(true, 9), 24);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(true, 16), 24);
    CU_ASSERT_EQUAL(crypto_kw_wrapped_len(false, 16), 24);
    /* 1..8 octets (one AES block) and a 192-bit KEK round-trip */
    CU_ASSERT_EQUAL(crypto_kw_wrap(true, kek, 24, in, 1, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 16);
    CU_ASSERT_EQUAL(crypto_kw_unwrap(true, kek, 24, out, 16, in, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 1);
}

/* ---- Legacy block modes: SP 800-38A appendix F, first block */
static const char SP38A_KEY[] = "2b7e151628aed2a6abf7158809cf4f3c";
static const char SP38A_PT[] = "6bc1bee22e409f96e93d7e117393172a";

static void run_block(crypto_block_mode mode, const char *iv_hex, const char *ct_hex)
{
    uint8_t key[16], iv[16], pt[16], want[16], out[32], back[32];
    size_t n = 0, f = 0;
    crypto_block *b = NULL;
    unhex(SP38A_KEY, key);
    unhex(SP38A_PT, pt);
    unhex(ct_hex, want);
    size_t ivlen = iv_hex ? unhex(iv_hex, iv) : 0;
    CU_ASSERT_EQUAL_FATAL(crypto_block_new(&b), CKR_OK);
    for (int round = 0; round < 2; round++) { /* the second round reuses the context */
        CU_ASSERT_EQUAL(crypto_block_init(b, mode, true, key, 16, iv, ivlen), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_update(b, pt, 16, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_final(b, out + n, &f), CKR_OK);
        CU_ASSERT_EQUAL(n + f, 16);
        CU_ASSERT(memcmp(out, want, 16) == 0);
        CU_ASSERT_EQUAL(crypto_block_init(b, mode, false, key, 16, iv, ivlen), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_update(b, want, 16, back, &n), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_final(b, back + n, &f), CKR_OK);
        CU_ASSERT_EQUAL(n + f, 16);
        CU_ASSERT(memcmp(back, pt, 16) == 0);
    }
    crypto_block_free(b);
}

static void test_aes_ecb_matches_sp800_38a(void)
{
    run_block(BLOCK_AES_ECB, NULL, "3ad77bb40d7a3660a89ecaf32466ef97");
}

static void test_aes_cbc_matches_sp800_38a(void)
{
    run_block(BLOCK_AES_CBC, "000102030405060708090a0b0c0d0e0f", "7649abac8119b246cee98e9b12e9197d");
}

static void test_aes_ctr_matches_sp800_38a(void)
{
    run_block(BLOCK_AES_CTR, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", "874d6191b620e3261bef6864990db6ce");
}

static void test_aes_cbc_pad_roundtrips_every_length(void)
{
    uint8_t key[32] = { 3 }, iv[16] = { 4 }, pt[40], ct[80], back[80];
    size_t n = 0, f = 0, m = 0, g = 0;
    crypto_block *b = NULL;
    memset(pt, 0x3c, sizeof(pt));
    CU_ASSERT_EQUAL_FATAL(crypto_block_new(&b), CKR_OK);
    for (size_t len = 0; len <= 33; len++) {
        CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC_PAD, true, key, 32, iv, 16), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_update(b, pt, len, ct, &n), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_final(b, ct + n, &f), CKR_OK);
        CU_ASSERT_EQUAL(n + f, (len / 16 + 1) * 16);
        CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC_PAD, false, key, 32, iv, 16), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_update(b, ct, n + f, back, &m), CKR_OK);
        CU_ASSERT_EQUAL(crypto_block_final(b, back + m, &g), CKR_OK);
        CU_ASSERT_EQUAL(m + g, len);
        CU_ASSERT(memcmp(back, pt, len) == 0);
    }
    crypto_block_free(b);
}

static void test_aes_cbc_pad_bad_padding_is_encrypted_data_invalid(void)
{
    uint8_t key[16] = { 5 }, iv[16] = { 6 }, zero[16] = { 0 }, ct[32], out[48];
    size_t n = 0, f = 0;
    crypto_block *b = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_block_new(&b), CKR_OK);
    /* A block that decrypts to all zeros ends in pad byte 0: never valid. */
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC, true, key, 16, iv, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_update(b, zero, 16, ct, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, ct + n, &f), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC_PAD, false, key, 16, iv, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_update(b, ct, 16, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, out + n, &f), CKR_ENCRYPTED_DATA_INVALID);
    crypto_block_free(b);
}

static void test_block_partial_blocks_are_len_range(void)
{
    uint8_t key[16] = { 0 }, iv[16] = { 0 }, in[32] = { 0 }, out[64];
    size_t n = 0, f = 0;
    crypto_block *b = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_block_new(&b), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC, true, key, 16, iv, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_update(b, in, 20, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, out + n, &f), CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_ECB, false, key, 16, NULL, 0), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_update(b, in, 17, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, out + n, &f), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC_PAD, false, key, 16, iv, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, out, &f), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(crypto_block_final(b, out, &f), CKR_OPERATION_NOT_INITIALIZED);
    /* CTR is a stream: any length */
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CTR, true, key, 16, iv, 16), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_update(b, in, 5, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_final(b, out + n, &f), CKR_OK);
    CU_ASSERT_EQUAL(n + f, 5);
    crypto_block_free(b);
}

static void test_block_bad_key_iv_and_mode_are_rejected(void)
{
    uint8_t key[32] = { 0 }, iv[16] = { 0 };
    crypto_block *b = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_block_new(&b), CKR_OK);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC, true, key, 31, iv, 16), CKR_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_CBC, true, key, 16, iv, 12),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_block_init(b, BLOCK_AES_ECB, true, key, 16, iv, 16),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(crypto_block_init(b, (crypto_block_mode)9, true, key, 16, iv, 16),
                    CKR_MECHANISM_INVALID);
    crypto_block_free(b);
}

/* ---- Digests and HMAC */
static void test_sha256_and_sha3_256_of_abc(void)
{
    uint8_t out[64], want[32];
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    CU_ASSERT_EQUAL(crypto_md_oneshot(MD_SHA256, (const uint8_t *)"abc", 3, out), CKR_OK);
    CU_ASSERT(memcmp(out, want, 32) == 0);
    unhex("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532", want);
    CU_ASSERT_EQUAL(crypto_md_oneshot(MD_SHA3_256, (const uint8_t *)"abc", 3, out), CKR_OK);
    CU_ASSERT(memcmp(out, want, 32) == 0);
}

static void test_md_streaming_equals_oneshot_and_resets_at_final(void)
{
    uint8_t data[300], a[64], b[64];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    for (crypto_md_alg alg = MD_SHA1; alg <= MD_SHA3_512; alg++) {
        crypto_md *m = NULL;
        size_t n = crypto_md_size(alg);
        CU_ASSERT(n >= 20 && n <= 64);
        CU_ASSERT(crypto_md_block_size(alg) >= 64);
        CU_ASSERT_EQUAL_FATAL(crypto_md_new(alg, &m), CKR_OK);
        CU_ASSERT_EQUAL(crypto_md_oneshot(alg, data, sizeof(data), a), CKR_OK);
        for (int round = 0; round < 2; round++) {
            memset(b, 0, sizeof(b));
            CU_ASSERT_EQUAL(crypto_md_update(m, data, 100), CKR_OK);
            CU_ASSERT_EQUAL(crypto_md_update(m, NULL, 0), CKR_OK);
            CU_ASSERT_EQUAL(crypto_md_update(m, data + 100, 200), CKR_OK);
            CU_ASSERT_EQUAL(crypto_md_final(m, b), CKR_OK);
            CU_ASSERT(memcmp(a, b, n) == 0);
        }
        crypto_md_free(m);
    }
    CU_ASSERT_EQUAL(crypto_md_size((crypto_md_alg)0), 0);
    crypto_md *m = NULL;
    CU_ASSERT_EQUAL(crypto_md_new((crypto_md_alg)42, &m), CKR_MECHANISM_INVALID);
}

static void test_hmac_sha256_rfc4231_cases_2_and_6(void)
{
    uint8_t out[32], want[32], key[131];
    const char *data = "what do ya want for nothing?";
    crypto_hmac *h = NULL;
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want);
    CU_ASSERT_EQUAL_FATAL(crypto_hmac_new(MD_SHA256, (const uint8_t *)"Jefe", 4, &h), CKR_OK);
    for (int round = 0; round < 3; round++) { /* final leaves the key ready for reuse */
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)data, 10), CKR_OK);
        CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)data + 10, strlen(data) - 10),
                        CKR_OK);
        CU_ASSERT_EQUAL(crypto_hmac_final(h, out), CKR_OK);
        CU_ASSERT(memcmp(out, want, 32) == 0);
    }
    crypto_hmac_free(h);
    /* case 6: a key longer than the block is hashed first */
    memset(key, 0xaa, sizeof(key));
    data = "Test Using Larger Than Block-Size Key - Hash Key First";
    unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", want);
    CU_ASSERT_EQUAL_FATAL(crypto_hmac_new(MD_SHA256, key, sizeof(key), &h), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)data, strlen(data)), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_final(h, out), CKR_OK);
    CU_ASSERT(memcmp(out, want, 32) == 0);
    crypto_hmac_free(h);
}

/* One message on h under key, after a restart: the MAC into out. */
static void restart_mac(crypto_hmac *h, const void *key, size_t klen, const char *msg, uint8_t out[32])
{
    memset(out, 0, 32);
    CU_ASSERT_EQUAL(crypto_hmac_restart(h, key, klen), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)msg, strlen(msg)), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_final(h, out), CKR_OK);
}

/* crypto_hmac_restart: the same key keeps its states, another is scheduled, a message in
 * progress is dropped, and a key too long to keep is scheduled again each time. */
static void test_hmac_restart(void)
{
    uint8_t out[32], jefe[32], tc6[32], key[131];
    const char *d2 = "what do ya want for nothing?";
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac *h = NULL;
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", jefe);
    unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", tc6);
    memset(key, 0xaa, sizeof(key));
    CU_ASSERT_EQUAL_FATAL(crypto_hmac_new(MD_SHA256, (const uint8_t *)"Jefe", 4, &h), CKR_OK);
    for (int round = 0; round < 2; round++) {
        /* a message begun and abandoned, then the same key again */
        CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)"abandoned", 9), CKR_OK);
        restart_mac(h, "Jefe", 4, d2, out);
        CU_ASSERT(memcmp(out, jefe, 32) == 0);
        /* straight after final: nothing to drop */
        restart_mac(h, "Jefe", 4, d2, out);
        CU_ASSERT(memcmp(out, jefe, 32) == 0);
        /* another key, longer than the ones kept: scheduled each time */
        restart_mac(h, key, sizeof(key), d6, out);
        CU_ASSERT(memcmp(out, tc6, 32) == 0);
        CU_ASSERT_EQUAL(crypto_hmac_update(h, (const uint8_t *)"abandoned", 9), CKR_OK);
        restart_mac(h, key, sizeof(key), d6, out);
        CU_ASSERT(memcmp(out, tc6, 32) == 0);
        /* and back: the first key again, differing from the long one */
        restart_mac(h, "Jefe", 4, d2, out);
        CU_ASSERT(memcmp(out, jefe, 32) == 0);
        /* a prefix of the kept key is another key */
        restart_mac(h, "Jef", 3, d2, out);
        CU_ASSERT(memcmp(out, jefe, 32) != 0);
        CU_ASSERT_EQUAL(crypto_hmac_restart(h, (const uint8_t *)"Jefe", 4), CKR_OK);
    }
    CU_ASSERT_EQUAL(crypto_hmac_restart(h, NULL, 4), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(crypto_hmac_restart(NULL, key, 4), CKR_ARGUMENTS_BAD);
    crypto_hmac_free(h);
}

static void test_hmac_keys_give_different_macs(void)
{
    uint8_t a[64], b[64];
    crypto_hmac *h1 = NULL, *h2 = NULL;
    CU_ASSERT_EQUAL_FATAL(crypto_hmac_new(MD_SHA3_512, (const uint8_t *)"k1", 2, &h1), CKR_OK);
    CU_ASSERT_EQUAL_FATAL(crypto_hmac_new(MD_SHA3_512, (const uint8_t *)"k2", 2, &h2), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_update(h1, (const uint8_t *)"m", 1), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_update(h2, (const uint8_t *)"m", 1), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_final(h1, a), CKR_OK);
    CU_ASSERT_EQUAL(crypto_hmac_final(h2, b), CKR_OK);
    CU_ASSERT(memcmp(a, b, 64) != 0);
    crypto_hmac_free(h1);
    crypto_hmac_free(h2);
    CU_ASSERT_EQUAL(crypto_hmac_new((crypto_md_alg)0, a, 1, &h1), CKR_MECHANISM_INVALID);
}

/* ---- KDF */
static void test_pbkdf2_sha256_known_answer(void)
{
    /* P = "password", S = "salt", c = 4096, dkLen = 32: the widely used
     * PBKDF2-HMAC-SHA256 vector (RFC 6070's inputs with SHA-256). */
    const crypto_kdf_params kp = { KDF_PBKDF2_SHA256, 4096, 0, 0 };
    uint8_t out[32], want[32];
    unhex("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a", want);
    CU_ASSERT_EQUAL(crypto_kdf(&kp, (const uint8_t *)"password", 8, (const uint8_t *)"salt", 4,
                               out, sizeof(out)),
                    CKR_OK);
    CU_ASSERT(memcmp(out, want, 32) == 0);
}

static void test_scrypt_rfc7914_vector(void)
{
    /* RFC 7914 sec. 12, third vector: N = 1024, r = 8, p = 16. */
    const crypto_kdf_params kp = { KDF_SCRYPT, 10, 8, 16 };
    uint8_t out[64], want[64];
    unhex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
          "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
          want);
    CU_ASSERT_EQUAL(crypto_kdf(&kp, (const uint8_t *)"password", 8, (const uint8_t *)"NaCl", 4,
                               out, sizeof(out)),
                    CKR_OK);
    CU_ASSERT(memcmp(out, want, 64) == 0);
}

static void test_kdf_rejects_out_of_range_parameters(void)
{
    const crypto_kdf_params bad[] = {
        { KDF_PBKDF2_SHA256, 999, 0, 0 }, { KDF_SCRYPT, 9, 8, 1 },  { KDF_SCRYPT, 23, 8, 1 },
        { KDF_SCRYPT, 10, 0, 1 },         { KDF_SCRYPT, 10, 33, 1 }, { KDF_SCRYPT, 10, 8, 0 },
        { KDF_SCRYPT, 10, 8, 17 },        { (crypto_kdf_alg)7, 10, 8, 1 },
    };
    const crypto_kdf_params ok = { KDF_PBKDF2_SHA256, 1000, 0, 0 };
    uint8_t out[32];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CU_ASSERT_EQUAL(crypto_kdf(&bad[i], (const uint8_t *)"1234", 4, (const uint8_t *)"s", 1,
                                   out, sizeof(out)),
                        CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(crypto_kdf(&ok, (const uint8_t *)"1234", 4, NULL, 0, out, 32), CKR_ARGUMENTS_BAD);
    CU_ASSERT_EQUAL(crypto_kdf(&ok, (const uint8_t *)"1234", 4, (const uint8_t *)"s", 1, out, 0),
                    CKR_ARGUMENTS_BAD);
    /* an empty PIN is a PIN like any other */
    CU_ASSERT_EQUAL(crypto_kdf(&ok, NULL, 0, (const uint8_t *)"s", 1, out, 32), CKR_OK);
}

/* ---- Library state, random, buffers */
static void test_random_fills_and_differs(void)
{
    uint8_t a[32] = { 0 }, b[32] = { 0 };
    CU_ASSERT_EQUAL(crypto_random(a, sizeof(a)), CKR_OK);
    CU_ASSERT_EQUAL(crypto_random(b, sizeof(b)), CKR_OK);
    CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
    CU_ASSERT(!all_zero(a, sizeof(a)));
    CU_ASSERT_EQUAL(crypto_random(NULL, 0), CKR_OK);
}

static void test_init_is_counted_and_fini_balances(void)
{
    uint8_t r[8];
    CU_ASSERT_EQUAL(crypto_init(), CKR_OK);
    crypto_fini();
    CU_ASSERT_EQUAL(crypto_random(r, sizeof(r)), CKR_OK); /* the suite's init still holds */
}

static void test_child_after_fork_builds_a_fresh_context(void)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        uint8_t r[16], d[32];
        crypto_forget_after_fork();
        int bad = crypto_random(r, sizeof(r)) != CKR_GENERAL_ERROR; /* nothing live */
        bad |= crypto_init() != CKR_OK;
        bad |= crypto_random(r, sizeof(r)) != CKR_OK;
        bad |= crypto_md_oneshot(MD_SHA256, r, sizeof(r), d) != CKR_OK;
        crypto_fini();
        _exit(bad);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_out_copy_follows_two_call_rule(void)
{
    const uint8_t v[4] = { 1, 2, 3, 4 };
    uint8_t out[8] = { 0 };
    CK_ULONG len = 0;
    CU_ASSERT_EQUAL(out_copy(v, 4, NULL, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 4);
    len = 3;
    CU_ASSERT_EQUAL(out_copy(v, 4, out, &len), CKR_BUFFER_TOO_SMALL);
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT(all_zero(out, sizeof(out)));
    len = sizeof(out);
    CU_ASSERT_EQUAL(out_copy(v, 4, out, &len), CKR_OK);
    CU_ASSERT_EQUAL(len, 4);
    CU_ASSERT(memcmp(out, v, 4) == 0);
    CU_ASSERT_EQUAL(out_copy(v, 4, out, NULL), CKR_ARGUMENTS_BAD);
}

static int setup(void) { return crypto_init() == CKR_OK ? 0 : 1; }

static int teardown(void)
{
    crypto_fini();
    return 0;
}

static const cunit_case CASES[] = {
    CASE(test_gcm_aes128_96bit_iv_matches_spec_case4),
    CASE(test_gcm_aes128_64bit_iv_matches_spec_case5),
    CASE(test_gcm_aes128_480bit_iv_matches_spec_case6),
    CASE(test_gcm_aes256_matches_spec_case16),
    CASE(test_gcm_truncated_tag_is_prefix_of_full_tag),
    CASE(test_gcm_wrong_tag_is_encrypted_data_invalid),
    CASE(test_gcm_wrong_aad_is_encrypted_data_invalid),
    CASE(test_gcm_tampered_ciphertext_is_encrypted_data_invalid),
    CASE(test_chacha20_poly1305_matches_rfc8439),
    CASE(test_chacha20_poly1305_wrong_tag_or_aad_fails),
    CASE(test_xchacha20_poly1305_matches_draft_a31),
    CASE(test_xchacha20_poly1305_wrong_tag_aad_or_nonce_fails),
    CASE(test_aead_bad_key_and_iv_sizes_are_rejected),
    CASE(test_aead_operations_out_of_order_fail),
    CASE(test_aead_context_reused_for_many_operations),
    CASE(test_aead_in_place_and_chunked_updates),
    CASE(test_seal_unseal_roundtrip_with_fresh_nonces),
    CASE(test_unseal_with_wrong_aad_fails_and_wipes_output),
    CASE(test_unseal_short_input_is_len_range),
    CASE(test_kw_rfc3394_256bit_kek_wraps_256bit_key),
    CASE(test_kwp_rfc5649_20_octet_key),
    CASE(test_kwp_rfc5649_7_octet_key),
    CASE(test_kw_bad_integrity_is_wrapped_key_invalid_and_wipes),
    CASE(test_kw_bad_lengths_are_rejected),
    CASE(test_aes_ecb_matches_sp800_38a),
    CASE(test_aes_cbc_matches_sp800_38a),
    CASE(test_aes_ctr_matches_sp800_38a),
    CASE(test_aes_cbc_pad_roundtrips_every_length),
    CASE(test_aes_cbc_pad_bad_padding_is_encrypted_data_invalid),
    CASE(test_block_partial_blocks_are_len_range),
    CASE(test_block_bad_key_iv_and_mode_are_rejected),
    CASE(test_sha256_and_sha3_256_of_abc),
    CASE(test_md_streaming_equals_oneshot_and_resets_at_final),
    CASE(test_hmac_sha256_rfc4231_cases_2_and_6),
    CASE(test_hmac_restart),
    CASE(test_hmac_keys_give_different_macs),
    CASE(test_pbkdf2_sha256_known_answer),
    CASE(test_scrypt_rfc7914_vector),
    CASE(test_kdf_rejects_out_of_range_parameters),
    CASE(test_random_fills_and_differs),
    CASE(test_init_is_counted_and_fini_balances),
    CASE(test_child_after_fork_builds_a_fresh_context),
    CASE(test_out_copy_follows_two_call_rule),
};

CUNIT_MAIN("crypto", CASES, setup, teardown)
