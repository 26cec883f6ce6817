/* Unit tests for src/mech/: the mechanism table and every family, driven
 * only through mech/mech.h, against published test vectors (NIST GCM,
 * RFC 3394, RFC 5649, FIPS 180/202 "abc", RFC 4231, SP 800-38A, RFC 8439,
 * draft-irtf-cfrg-xchacha-03). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "crypto/crypto.h"
#include "mech/mech.h"

/* ---- helpers ---------------------------------------------------------- */

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static const mech_desc *row(CK_MECHANISM_TYPE t)
{
    const mech_desc *d = mech_find(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

/* Init + one-shot + free; returns the CK_RV of the first failing step. */
static CK_RV run_oneshot(CK_MECHANISM_TYPE t, void *param, CK_ULONG plen, mech_op op,
                         const mech_key *key, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t cap, size_t *outlen)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, param, plen };
    mech_ctx *c = NULL;
    CK_RV rv = d->ops->check_param(d, &m, op);
    if (rv != CKR_OK)
        return rv;
    rv = d->ops->init(d, &m, op, key, &c);
    if (rv != CKR_OK)
        return rv;
    CU_ASSERT_FATAL(mech_oneshot_len(d, c, inlen) <= cap);
    rv = d->ops->oneshot(c, in, inlen, out, outlen);
    d->ops->free(c);
    return rv;
}

/* Init + updates of `chunk` bytes + final, each step given exactly the room
 * out_len asks for, at the right offset of out. */
static CK_RV run_multi(CK_MECHANISM_TYPE t, void *param, CK_ULONG plen, mech_op op,
                       const mech_key *key, const uint8_t *in, size_t inlen, size_t chunk,
                       uint8_t *out, size_t cap, size_t *outlen)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, param, plen };
    mech_ctx *c = NULL;
    size_t done = 0, n;
    CK_RV rv = d->ops->init(d, &m, op, key, &c);
    if (rv != CKR_OK)
        return rv;
    for (size_t off = 0; off < inlen; off += chunk) {
        size_t k = inlen - off < chunk ? inlen - off : chunk;
        CU_ASSERT_FATAL(done + d->ops->out_len(c, false, k) <= cap);
        rv = d->ops->update(c, in + off, k, out + done, &n);
        if (rv != CKR_OK)
            goto out;
        CU_ASSERT(n <= d->ops->out_len(c, false, k) || op == MECH_OP_DECRYPT);
        done += n;
    }
    CU_ASSERT_FATAL(done + d->ops->out_len(c, true, 0) <= cap);
    rv = d->ops->final(c, out + done, &n);
    if (rv == CKR_OK)
        done += n;
out:
    *outlen = done;
    d->ops->free(c);
    return rv;
}

/* ---- the table -------------------------------------------------------- */

static void test_table_is_sorted_and_unique(void)
{
    CU_ASSERT_FATAL(mech_count() > 0);
    for (size_t i = 1; i < mech_count(); i++)
        CU_ASSERT(mech_at(i - 1)->type < mech_at(i)->type);
    CU_ASSERT_PTR_NULL(mech_at(mech_count()));
}

static void test_table_names_are_ckm_names_and_unique(void)
{
    for (size_t i = 0; i < mech_count(); i++) {
        const mech_desc *d = mech_at(i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d->name);
        CU_ASSERT(strncmp(d->name, "CKM_", 4) == 0);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT(strcmp(d->name, mech_at(j)->name) != 0);
    }
    CU_ASSERT_STRING_EQUAL(row(CKM_AES_GCM)->name, "CKM_AES_GCM");
    CU_ASSERT_STRING_EQUAL(row(CKM_AES_KEY_WRAP_KWP)->name, "CKM_AES_KEY_WRAP_KWP");
}

static void test_every_row_has_ops_matching_its_flags(void)
{
    const CK_FLAGS stream = CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | CKF_DIGEST;
    for (size_t i = 0; i < mech_count(); i++) {
        const mech_desc *d = mech_at(i);
        const mech_ops *o = d->ops;
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        CU_ASSERT(d->min_key <= d->max_key);
        CU_ASSERT(d->n_key_types <= 4);
        CU_ASSERT(!!(d->flags & MECH_KEYGEN) == !!(d->info_flags & CKF_GENERATE));
        if (d->flags & MECH_KEYGEN) {
            CU_ASSERT(o->init == NULL && o->wrap == NULL && o->unwrap == NULL);
            CU_ASSERT(d->max_key > 0);
            continue;
        }
        CU_ASSERT_PTR_NOT_NULL(o->check_param);
        CU_ASSERT(!!(d->info_flags & stream) ==
                  (o->init && o->out_len && o->update && o->final && o->free));
        CU_ASSERT(!!(d->info_flags & CKF_VERIFY) == !!o->verify_final);
        CU_ASSERT(!!(d->info_flags & CKF_WRAP) == (o->wrap && o->wrapped_len));
        CU_ASSERT(!!(d->info_flags & CKF_UNWRAP) == !!o->unwrap);
        /* Anything that takes a key names the key types it takes. */
        CU_ASSERT((d->info_flags & CKF_DIGEST) ? d->n_key_types == 0 : d->n_key_types > 0);
    }
}

static void test_find_returns_each_row_and_null_for_unknown(void)
{
    for (size_t i = 0; i < mech_count(); i++)
        CU_ASSERT_PTR_EQUAL(mech_find(mech_at(i)->type), mech_at(i));
    CU_ASSERT_PTR_NULL(mech_find(CKM_RSA_PKCS));
    CU_ASSERT_PTR_NULL(mech_find(CKM_SHA_1)); /* left out on purpose */
    CU_ASSERT_PTR_NULL(mech_find(CKM_AES_CCM));
    CU_ASSERT_PTR_NULL(mech_find(0xFFFFFFFFul));
}

static void test_legacy_and_deprecated_rows_are_flagged(void)
{
    static const CK_MECHANISM_TYPE legacy[] = { CKM_AES_ECB, CKM_AES_CBC, CKM_AES_CBC_PAD,
                                                CKM_AES_CTR };
    size_t nlegacy = 0;
    for (size_t i = 0; i < ARRAY_LEN(legacy); i++)
        CU_ASSERT(row(legacy[i])->flags & MECH_LEGACY);
    for (size_t i = 0; i < mech_count(); i++)
        nlegacy += (mech_at(i)->flags & MECH_LEGACY) != 0;
    CU_ASSERT_EQUAL(nlegacy, ARRAY_LEN(legacy));
    CU_ASSERT(row(CKM_AES_KEY_WRAP_PAD)->flags & MECH_DEPRECATED);
    CU_ASSERT(!(row(CKM_AES_KEY_WRAP_KWP)->flags & MECH_DEPRECATED));
    CU_ASSERT(!(row(CKM_AES_GCM)->flags & (MECH_LEGACY | MECH_DEPRECATED)));
}

static void test_keygen_rows_name_their_key_type(void)
{
    CU_ASSERT_EQUAL(row(CKM_AES_KEY_GEN)->gen_key_type, CKK_AES);
    CU_ASSERT_EQUAL(row(CKM_GENERIC_SECRET_KEY_GEN)->gen_key_type, CKK_GENERIC_SECRET);
    CU_ASSERT(row(CKM_AES_KEY_GEN)->info_flags == CKF_GENERATE);
}

static void test_accepts_key_follows_the_row(void)
{
    CU_ASSERT(mech_accepts_key(row(CKM_AES_GCM), CKK_AES));
    CU_ASSERT(!mech_accepts_key(row(CKM_AES_GCM), CKK_GENERIC_SECRET));
    CU_ASSERT(mech_accepts_key(row(CKM_SHA256_HMAC), CKK_GENERIC_SECRET));
    CU_ASSERT(mech_accepts_key(row(CKM_SHA256_HMAC), CKK_SHA256_HMAC));
    CU_ASSERT(!mech_accepts_key(row(CKM_SHA256_HMAC), CKK_SHA384_HMAC));
    CU_ASSERT(!mech_accepts_key(row(CKM_SHA256_HMAC), CKK_AES));
    CU_ASSERT(mech_accepts_key(row(CKM_SHA3_512_HMAC), CKK_SHA3_512_HMAC));
    CU_ASSERT(!mech_accepts_key(row(CKM_SHA256), CKK_AES));
}

static void test_key_size_ok_handles_units_and_aes_sizes(void)
{
    const mech_desc *gcm = row(CKM_AES_GCM), *gen = row(CKM_AES_KEY_GEN);
    const mech_desc *hm = row(CKM_SHA256_HMAC), *gs = row(CKM_GENERIC_SECRET_KEY_GEN);
    CU_ASSERT(mech_key_size_ok(gcm, 16) && mech_key_size_ok(gcm, 24) && mech_key_size_ok(gcm, 32));
    CU_ASSERT(!mech_key_size_ok(gcm, 15));
    CU_ASSERT(!mech_key_size_ok(gcm, 20));
    CU_ASSERT(!mech_key_size_ok(gcm, 33));
    CU_ASSERT(!mech_key_size_ok(gen, 8) && mech_key_size_ok(gen, 32) && !mech_key_size_ok(gen, 64));
    /* HMAC and generic secret sizes are reported in bits. */
    CU_ASSERT(hm->flags & MECH_KEY_BITS);
    CU_ASSERT_EQUAL(hm->min_key, 128);
    CU_ASSERT(mech_key_size_ok(hm, 16) && !mech_key_size_ok(hm, 15));
    CU_ASSERT(mech_key_size_ok(hm, 512) && !mech_key_size_ok(hm, 513));
    CU_ASSERT(mech_key_size_ok(gs, 16) && mech_key_size_ok(gs, 512) && !mech_key_size_ok(gs, 4));
    CU_ASSERT(!mech_key_size_ok(gs, SIZE_MAX));
    CU_ASSERT(mech_key_size_ok(row(CKM_SHA256), 0));
}

static void test_check_param_refuses_operations_the_row_lacks(void)
{
    static const uint8_t iv[12];
    CK_GCM_PARAMS g = { (CK_BYTE_PTR)iv, 12, 96, NULL, 0, 128 };
    CK_MECHANISM m = { CKM_AES_GCM, &g, sizeof(g) };
    const mech_desc *d = row(CKM_AES_GCM);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_ENCRYPT), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_SIGN), CKR_MECHANISM_INVALID);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_WRAP), CKR_MECHANISM_INVALID);
    d = row(CKM_AES_KEY_WRAP);
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP, NULL, 0 };
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_WRAP), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_UNWRAP), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_ENCRYPT), CKR_MECHANISM_INVALID);
    d = row(CKM_SHA256);
    m = (CK_MECHANISM){ CKM_SHA256, NULL, 0 };
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_DIGEST), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_SIGN), CKR_MECHANISM_INVALID);
}

/* ---- AES-GCM ---------------------------------------------------------- */

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 4 and
 * 6 (also in NIST's GCM validation suite): AES-128, 20 bytes of AAD. */
#define GCM_K "feffe9928665731c6d6a8f9467308308"
#define GCM_P                                                                  \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"         \
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
#define GCM_A "feedfacedeadbeeffeedfacedeadbeefabaddad2"
#define GCM_IV4 "cafebabefacedbaddecaf888"
#define GCM_CT4                                                                \
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"         \
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"                 \
    "5bc94fbc3221a5db94fae95ae7121a47"
#define GCM_IV6                                                                \
    "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"         \
    "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b"
#define GCM_CT6                                                                \
    "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"         \
    "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5"                 \
    "619cc5aefffe0bfa462af43c1699d050"

/* The 2.40-errata/3.x layout and the short one Java sends (no ulIvBits). */
typedef struct gcm_short {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm_short;

typedef struct gcm_fixture {
    uint8_t key[32], pt[128], aad[32], iv[64], ct[160];
    size_t keylen, ptlen, aadlen, ivlen, ctlen;
    mech_key k;
    CK_GCM_PARAMS full;
    gcm_short shrt;
} gcm_fixture;

static void gcm_setup(gcm_fixture *f, const char *iv, const char *ct)
{
    memset(f, 0, sizeof(*f));
    f->keylen = unhex(GCM_K, f->key);
    f->ptlen = unhex(GCM_P, f->pt);
    f->aadlen = unhex(GCM_A, f->aad);
    f->ivlen = unhex(iv, f->iv);
    f->ctlen = unhex(ct, f->ct);
    f->k = (mech_key){ f->key, f->keylen, CKK_AES };
    f->full = (CK_GCM_PARAMS){ f->iv, f->ivlen, f->ivlen * 8, f->aad, f->aadlen, 128 };
    f->shrt = (gcm_short){ f->iv, f->ivlen, f->aad, f->aadlen, 128 };
}

static void test_gcm_param_layouts_are_48_and_40_bytes(void)
{
    CU_ASSERT_EQUAL(sizeof(CK_GCM_PARAMS), 6 * sizeof(CK_ULONG));
    CU_ASSERT_EQUAL(sizeof(gcm_short), 5 * sizeof(CK_ULONG));
}

static void test_gcm_encrypt_matches_known_answer_in_both_layouts(void)
{
    gcm_fixture f;
    uint8_t out[160];
    size_t n;
    const char *ivs[] = { GCM_IV4, GCM_IV6 }, *cts[] = { GCM_CT4, GCM_CT6 };

    for (int i = 0; i < 2; i++) {
        gcm_setup(&f, ivs[i], cts[i]);
        CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_ENCRYPT, &f.k,
                                    f.pt, f.ptlen, out, sizeof(out), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, f.ctlen);
        CU_ASSERT(memcmp(out, f.ct, f.ctlen) == 0);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.shrt, sizeof(f.shrt), MECH_OP_ENCRYPT, &f.k,
                                    f.pt, f.ptlen, out, sizeof(out), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, f.ctlen);
        CU_ASSERT(memcmp(out, f.ct, f.ctlen) == 0);
    }
}

static void test_gcm_decrypt_matches_known_answer(void)
{
    gcm_fixture f;
    uint8_t out[160];
    size_t n;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.shrt, sizeof(f.shrt), MECH_OP_DECRYPT, &f.k,
                                f.ct, f.ctlen, out, sizeof(out), &n), CKR_OK);
    CU_ASSERT_EQUAL(n, f.ptlen);
    CU_ASSERT(memcmp(out, f.pt, f.ptlen) == 0);
}

static void test_gcm_multipart_round_trip_equals_single_part(void)
{
    static const size_t chunks[] = { 1, 7, 16, 17, 64, 1000 };
    gcm_fixture f;
    uint8_t ct[160], pt[160];
    size_t n, m;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    for (size_t i = 0; i < ARRAY_LEN(chunks); i++) {
        for (int layout = 0; layout < 2; layout++) {
            void *p = layout ? (void *)&f.shrt : (void *)&f.full;
            CK_ULONG pl = layout ? sizeof(f.shrt) : sizeof(f.full);
            memset(ct, 0, sizeof(ct));
            CU_ASSERT_EQUAL(run_multi(CKM_AES_GCM, p, pl, MECH_OP_ENCRYPT, &f.k, f.pt, f.ptlen,
                                      chunks[i], ct, sizeof(ct), &n), CKR_OK);
            CU_ASSERT_EQUAL(n, f.ctlen);
            CU_ASSERT(memcmp(ct, f.ct, f.ctlen) == 0);
            CU_ASSERT_EQUAL(run_multi(CKM_AES_GCM, p, pl, MECH_OP_DECRYPT, &f.k, ct, n, chunks[i],
                                      pt, sizeof(pt), &m), CKR_OK);
            CU_ASSERT_EQUAL(m, f.ptlen);
            CU_ASSERT(memcmp(pt, f.pt, f.ptlen) == 0);
        }
    }
}

static void test_gcm_out_len_streams_encryption_and_holds_decryption(void)
{
    gcm_fixture f;
    const mech_desc *d = row(CKM_AES_GCM);
    CK_MECHANISM m = { CKM_AES_GCM, &f.full, sizeof(f.full) };
    mech_ctx *c = NULL;
    uint8_t out[160];
    size_t n;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->out_len(c, false, 10), 10);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 16);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 60), 76);
    d->ops->free(c);

    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_DECRYPT, &f.k, &c), CKR_OK);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 76), 60);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 5), 0);
    CU_ASSERT_EQUAL(d->ops->out_len(c, false, 40), 0);
    CU_ASSERT_EQUAL(d->ops->update(c, f.ct, 40, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 24);
    CU_ASSERT_EQUAL(d->ops->update(c, f.ct + 40, 36, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 60);
    CU_ASSERT_EQUAL(d->ops->final(c, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 60);
    CU_ASSERT(memcmp(out, f.pt, 60) == 0);
    d->ops->free(c);
}

/* Every byte of out is still the fill or wiped to zero: no plaintext. */
static bool released_nothing(const uint8_t *out, size_t n, const uint8_t *pt, size_t ptlen)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] != 0xAA && out[i] != 0)
            return false;
    return memcmp(out, pt, ptlen) != 0;
}

static void test_gcm_decrypt_with_wrong_tag_fails_and_releases_nothing(void)
{
    gcm_fixture f;
    uint8_t out[160];
    size_t n = 99;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    f.ct[f.ctlen - 1] ^= 1;
    memset(out, 0xAA, sizeof(out));
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k,
                                f.ct, f.ctlen, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
    memset(out, 0xAA, sizeof(out));
    n = 99;
    CU_ASSERT_EQUAL(run_multi(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k, f.ct,
                              f.ctlen, 16, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
}

static void test_gcm_decrypt_with_wrong_aad_fails_and_releases_nothing(void)
{
    gcm_fixture f;
    uint8_t out[160];
    size_t n = 99;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    f.aad[0] ^= 0x80;
    memset(out, 0xAA, sizeof(out));
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.shrt, sizeof(f.shrt), MECH_OP_DECRYPT, &f.k,
                                f.ct, f.ctlen, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
    /* No AAD at all where there was some. */
    f.aad[0] ^= 0x80;
    f.full.ulAADLen = 0;
    f.full.pAAD = NULL;
    CU_ASSERT_EQUAL(run_multi(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k, f.ct,
                              f.ctlen, 5, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
}

static void test_gcm_decrypt_of_truncated_input_fails(void)
{
    gcm_fixture f;
    uint8_t out[160];
    size_t n = 99;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    memset(out, 0xAA, sizeof(out));
    /* Shorter than the tag: a length error, before any work. */
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k,
                                f.ct, 15, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(run_multi(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k, f.ct,
                              15, 4, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k,
                                f.ct, 0, out, sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    /* A ciphertext byte missing: the tag no longer matches. */
    memmove(f.ct + 59, f.ct + 60, 16);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k,
                                f.ct, f.ctlen - 1, out, sizeof(out), &n),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
}

static void test_gcm_empty_plaintext_gives_tag_only(void)
{
    gcm_fixture f;
    uint8_t ct[16], pt[16];
    size_t n, m = 99;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_ENCRYPT, &f.k,
                                NULL, 0, ct, sizeof(ct), &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 16);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k, ct,
                                16, pt, sizeof(pt), &m), CKR_OK);
    CU_ASSERT_EQUAL(m, 0);
}

static void test_gcm_shorter_tags_from_96_bits_work(void)
{
    gcm_fixture f;
    uint8_t ct[160], pt[160];
    size_t n, m;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    for (CK_ULONG bits = 96; bits <= 128; bits += 8) {
        f.full.ulTagBits = bits;
        CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_ENCRYPT, &f.k,
                                    f.pt, f.ptlen, ct, sizeof(ct), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, f.ptlen + bits / 8);
        /* A truncated GCM tag is the prefix of the full one. */
        CU_ASSERT(memcmp(ct, f.ct, n) == 0);
        CU_ASSERT_EQUAL(run_oneshot(CKM_AES_GCM, &f.full, sizeof(f.full), MECH_OP_DECRYPT, &f.k,
                                    ct, n, pt, sizeof(pt), &m), CKR_OK);
        CU_ASSERT_EQUAL(m, f.ptlen);
    }
}

static CK_RV gcm_check(void *p, CK_ULONG len)
{
    const mech_desc *d = row(CKM_AES_GCM);
    CK_MECHANISM m = { CKM_AES_GCM, p, len };
    return d->ops->check_param(d, &m, MECH_OP_ENCRYPT);
}

static void test_gcm_bad_parameters_are_param_invalid(void)
{
    uint8_t iv[200] = { 0 }, aad[4] = { 0 };
    CK_GCM_PARAMS g;
    gcm_short s = { iv, 12, NULL, 0, 128 };
    static const CK_ULONG bad_tags[] = { 0, 32, 64, 88, 100, 136, 256 };
#define RESET_G() (g = (CK_GCM_PARAMS){ iv, 12, 96, aad, sizeof(aad), 128 })

    RESET_G();
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_OK);
    CU_ASSERT_EQUAL(gcm_check(&s, sizeof(s)), CKR_OK);
    CU_ASSERT_EQUAL(gcm_check(NULL, 0), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(gcm_check(NULL, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(gcm_check(&g, 0), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g) - 1), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(s) + 1), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g) + 8), CKR_MECHANISM_PARAM_INVALID);
    /* IV length and pointer. */
    g.ulIvLen = 0, g.ulIvBits = 0;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    RESET_G();
    g.pIv = NULL;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    RESET_G();
    g.ulIvLen = 128, g.ulIvBits = 1024;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_OK);
    g.ulIvLen = 129, g.ulIvBits = 0;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    /* ulIvBits: 0 (not given) or exactly ulIvLen * 8. */
    RESET_G();
    g.ulIvBits = 0;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_OK);
    g.ulIvBits = 95;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    g.ulIvBits = 12;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    /* AAD pointer and length. */
    RESET_G();
    g.pAAD = NULL;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    g.ulAADLen = 0;
    CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_OK);
    if (sizeof(CK_ULONG) > 4) {
        RESET_G();
        g.ulAADLen = (CK_ULONG)0xFFFFFFFFul + 1;
        CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
    }
    /* Tags: 96..128 bits in whole bytes only (SP 800-38D). */
    for (size_t i = 0; i < ARRAY_LEN(bad_tags); i++) {
        RESET_G();
        g.ulTagBits = bad_tags[i];
        CU_ASSERT_EQUAL(gcm_check(&g, sizeof(g)), CKR_MECHANISM_PARAM_INVALID);
        s.ulTagBits = bad_tags[i];
        CU_ASSERT_EQUAL(gcm_check(&s, sizeof(s)), CKR_MECHANISM_PARAM_INVALID);
    }
#undef RESET_G
}

static void test_gcm_init_checks_key_type_and_size(void)
{
    gcm_fixture f;
    const mech_desc *d = row(CKM_AES_GCM);
    CK_MECHANISM m = { CKM_AES_GCM, &f.full, sizeof(f.full) };
    mech_ctx *c = NULL;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    f.k.len = 20;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_KEY_SIZE_RANGE);
    f.k.len = 16;
    f.k.type = CKK_GENERIC_SECRET;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_KEY_TYPE_INCONSISTENT);
    f.k.type = CKK_AES;
    f.full.ulTagBits = 64;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_PTR_NULL(c);
}

static void test_gcm_reinit_reuses_context_for_a_new_operation(void)
{
    gcm_fixture f;
    const mech_desc *d = row(CKM_AES_GCM);
    CK_MECHANISM m = { CKM_AES_GCM, &f.full, sizeof(f.full) };
    mech_ctx *c = NULL;
    uint8_t out[160];
    size_t n;

    gcm_setup(&f, GCM_IV4, GCM_CT4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->ops->reinit);
    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->oneshot(c, f.pt, f.ptlen, out, &n), CKR_OK);
    /* Finished: a further step is refused, not run on stale state. */
    CU_ASSERT_EQUAL(d->ops->update(c, f.pt, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
    /* Reuse for a decryption that fails, then for one that succeeds. */
    CU_ASSERT_EQUAL(d->ops->reinit(c, d, &m, MECH_OP_DECRYPT, &f.k), CKR_OK);
    out[0] ^= 1;
    CU_ASSERT_EQUAL(d->ops->oneshot(c, out, f.ctlen, out, &n), CKR_ENCRYPTED_DATA_INVALID);
    memcpy(out, f.ct, f.ctlen);
    CU_ASSERT_EQUAL(d->ops->reinit(c, d, &m, MECH_OP_DECRYPT, &f.k), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->update(c, out, 30, NULL, &n), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->reinit(c, d, &m, MECH_OP_DECRYPT, &f.k), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->oneshot(c, f.ct, f.ctlen, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, f.ptlen);
    CU_ASSERT(memcmp(out, f.pt, f.ptlen) == 0);
    /* A bad parameter leaves the context refusing work but freeable. */
    f.full.ulTagBits = 8;
    CU_ASSERT_EQUAL(d->ops->reinit(c, d, &m, MECH_OP_ENCRYPT, &f.k), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(d->ops->update(c, f.pt, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
    /* Only contexts of the same family. */
    CU_ASSERT_EQUAL(d->ops->reinit(c, row(CKM_AES_CBC), &m, MECH_OP_ENCRYPT, &f.k),
                    CKR_ARGUMENTS_BAD);
    d->ops->free(c);
    d->ops->free(NULL);
}

/* ---- AES key wrap ----------------------------------------------------- */

static CK_RV do_wrap(CK_MECHANISM_TYPE t, void *p, CK_ULONG pl, const char *kek_hex,
                     const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, p, pl };
    uint8_t kek[32];
    mech_key k = { kek, unhex(kek_hex, kek), CKK_AES };
    return d->ops->wrap(d, &m, &k, in, inlen, out, outlen);
}

static CK_RV do_unwrap(CK_MECHANISM_TYPE t, void *p, CK_ULONG pl, const char *kek_hex,
                       const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, p, pl };
    uint8_t kek[32];
    mech_key k = { kek, unhex(kek_hex, kek), CKK_AES };
    return d->ops->unwrap(d, &m, &k, in, inlen, out, outlen);
}

typedef struct kw_vector {
    const char *kek, *key, *wrapped;
} kw_vector;

/* RFC 3394 sec. 4.1 and 4.6. */
static const kw_vector kw_vectors[] = {
    { "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
      "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5" },
    { "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
      "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
      "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21" },
};

/* RFC 5649 sec. 6. */
static const kw_vector kwp_vectors[] = {
    { "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
      "c37b7e6492584340bed12207808941155068f738",
      "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a" },
    { "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "466f7250617369",
      "afbeb0f07dfbf5419200f2ccb50bb24f" },
};

static void check_wrap_vectors(CK_MECHANISM_TYPE t, const kw_vector *v, size_t nv, void *p,
                               CK_ULONG pl)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, p, pl };
    for (size_t i = 0; i < nv; i++) {
        uint8_t key[64], want[64], out[64];
        size_t keylen = unhex(v[i].key, key), wlen = unhex(v[i].wrapped, want), n = 0;
        CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_WRAP), CKR_OK);
        CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, keylen), wlen);
        CU_ASSERT_EQUAL(do_wrap(t, p, pl, v[i].kek, key, keylen, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(n, wlen);
        CU_ASSERT(memcmp(out, want, wlen) == 0);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(do_unwrap(t, p, pl, v[i].kek, want, wlen, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(n, keylen);
        CU_ASSERT(memcmp(out, key, keylen) == 0);
    }
}

static void test_kw_rfc3394_vectors_wrap_and_unwrap(void)
{
    uint8_t iv[8];
    memset(iv, 0xA6, sizeof(iv));
    check_wrap_vectors(CKM_AES_KEY_WRAP, kw_vectors, ARRAY_LEN(kw_vectors), NULL, 0);
    /* The RFC's default IV, given explicitly, is the same thing. */
    check_wrap_vectors(CKM_AES_KEY_WRAP, kw_vectors, ARRAY_LEN(kw_vectors), iv, sizeof(iv));
}

static void test_kwp_rfc5649_vectors_through_kwp_and_0x210a(void)
{
    uint8_t aiv[4] = { 0xA6, 0x59, 0x59, 0xA6 };
    check_wrap_vectors(CKM_AES_KEY_WRAP_KWP, kwp_vectors, ARRAY_LEN(kwp_vectors), NULL, 0);
    check_wrap_vectors(CKM_AES_KEY_WRAP_KWP, kwp_vectors, ARRAY_LEN(kwp_vectors), aiv, 4);
    check_wrap_vectors(CKM_AES_KEY_WRAP_PAD, kwp_vectors, ARRAY_LEN(kwp_vectors), NULL, 0);
}

static void test_kw_of_12_byte_key_cannot_be_wrapped(void)
{
    const mech_desc *d = row(CKM_AES_KEY_WRAP);
    CK_MECHANISM m = { CKM_AES_KEY_WRAP, NULL, 0 };
    uint8_t key[12] = { 1 }, out[64];
    size_t n;

    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 12), 0);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 8), 0);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 17), 0);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 24), 32);
    CU_ASSERT_EQUAL(do_wrap(CKM_AES_KEY_WRAP, NULL, 0, kw_vectors[0].kek, key, 12, out, &n),
                    CKR_KEY_SIZE_RANGE);
    /* RFC 5649 pads it instead. */
    d = row(CKM_AES_KEY_WRAP_KWP);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 12), 24);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 1), 16);
    CU_ASSERT_EQUAL(d->ops->wrapped_len(d, &m, 0), 0);
}

static void test_corrupted_wrapped_key_is_wrapped_key_invalid(void)
{
    const kw_vector *v[2] = { &kw_vectors[1], &kwp_vectors[0] };
    CK_MECHANISM_TYPE t[2] = { CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP };
    for (int i = 0; i < 2; i++) {
        uint8_t w[64], out[64];
        size_t wlen = unhex(v[i]->wrapped, w), n = 99;
        w[wlen / 2] ^= 0x10;
        memset(out, 0xAA, sizeof(out));
        CU_ASSERT_EQUAL(do_unwrap(t[i], NULL, 0, v[i]->kek, w, wlen, out, &n),
                        CKR_WRAPPED_KEY_INVALID);
        CU_ASSERT_EQUAL(n, 0);
        /* Nothing that looks like the key is left behind. */
        for (size_t j = 0; j < wlen - 8; j++)
            CU_ASSERT(out[j] == 0 || out[j] == 0xAA);
        /* The wrong KEK fails the same way. */
        w[wlen / 2] ^= 0x10;
        CU_ASSERT_EQUAL(do_unwrap(t[i], NULL, 0, kw_vectors[0].kek, w, wlen, out, &n),
                        CKR_WRAPPED_KEY_INVALID);
    }
}

static void test_unwrap_of_impossible_length_is_len_range(void)
{
    uint8_t w[40] = { 0 }, out[40];
    size_t n;

    CU_ASSERT_EQUAL(do_unwrap(CKM_AES_KEY_WRAP, NULL, 0, kw_vectors[0].kek, w, 16, out, &n),
                    CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(do_unwrap(CKM_AES_KEY_WRAP, NULL, 0, kw_vectors[0].kek, w, 25, out, &n),
                    CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(do_unwrap(CKM_AES_KEY_WRAP_KWP, NULL, 0, kw_vectors[0].kek, w, 8, out, &n),
                    CKR_WRAPPED_KEY_LEN_RANGE);
    CU_ASSERT_EQUAL(do_unwrap(CKM_AES_KEY_WRAP_KWP, NULL, 0, kw_vectors[0].kek, w, 20, out, &n),
                    CKR_WRAPPED_KEY_LEN_RANGE);
}

static void test_wrap_parameters_other_than_the_rfc_iv_are_invalid(void)
{
    const mech_desc *kw = row(CKM_AES_KEY_WRAP), *kwp = row(CKM_AES_KEY_WRAP_KWP);
    uint8_t iv[8], key[16] = { 0 }, out[32];
    CK_MECHANISM m;
    size_t n;

    memset(iv, 0xA6, sizeof(iv));
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP, iv, 7 };
    CU_ASSERT_EQUAL(kw->ops->check_param(kw, &m, MECH_OP_WRAP), CKR_MECHANISM_PARAM_INVALID);
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP, NULL, 8 };
    CU_ASSERT_EQUAL(kw->ops->check_param(kw, &m, MECH_OP_WRAP), CKR_MECHANISM_PARAM_INVALID);
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP, iv, 0 };
    CU_ASSERT_EQUAL(kw->ops->check_param(kw, &m, MECH_OP_WRAP), CKR_MECHANISM_PARAM_INVALID);
    iv[7] = 0xA7;
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP, iv, 8 };
    CU_ASSERT_EQUAL(kw->ops->check_param(kw, &m, MECH_OP_UNWRAP), CKR_MECHANISM_PARAM_INVALID);
    /* wrap re-checks whatever check_param was or was not asked. */
    CU_ASSERT_EQUAL(do_wrap(CKM_AES_KEY_WRAP, iv, 8, kw_vectors[0].kek, key, 16, out, &n),
                    CKR_MECHANISM_PARAM_INVALID);
    /* The RFC 3394 IV is not the RFC 5649 AIV. */
    memset(iv, 0xA6, sizeof(iv));
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP_KWP, iv, 4 };
    CU_ASSERT_EQUAL(kwp->ops->check_param(kwp, &m, MECH_OP_WRAP), CKR_MECHANISM_PARAM_INVALID);
    m = (CK_MECHANISM){ CKM_AES_KEY_WRAP_KWP, iv, 8 };
    CU_ASSERT_EQUAL(kwp->ops->check_param(kwp, &m, MECH_OP_WRAP), CKR_MECHANISM_PARAM_INVALID);
}

static void test_wrap_with_wrong_kek_is_refused(void)
{
    const mech_desc *d = row(CKM_AES_KEY_WRAP);
    CK_MECHANISM m = { CKM_AES_KEY_WRAP, NULL, 0 };
    uint8_t kek[32] = { 0 }, key[16] = { 0 }, out[32];
    mech_key k = { kek, 20, CKK_AES };
    size_t n;

    CU_ASSERT_EQUAL(d->ops->wrap(d, &m, &k, key, 16, out, &n), CKR_WRAPPING_KEY_SIZE_RANGE);
    CU_ASSERT_EQUAL(d->ops->unwrap(d, &m, &k, out, 24, key, &n), CKR_UNWRAPPING_KEY_SIZE_RANGE);
    k = (mech_key){ kek, 16, CKK_GENERIC_SECRET };
    CU_ASSERT_EQUAL(d->ops->wrap(d, &m, &k, key, 16, out, &n),
                    CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
    CU_ASSERT_EQUAL(d->ops->unwrap(d, &m, &k, out, 24, key, &n),
                    CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
}

/* ---- digests ---------------------------------------------------------- */

typedef struct md_vector {
    CK_MECHANISM_TYPE type;
    const char *abc;
} md_vector;

/* FIPS 180-4 and FIPS 202 example values for "abc". */
static const md_vector md_vectors[] = {
    { CKM_SHA224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7" },
    { CKM_SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { CKM_SHA384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                  "8086072ba1e7cc2358baeca134c825a7" },
    { CKM_SHA512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                  "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
    { CKM_SHA3_224, "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf" },
    { CKM_SHA3_256, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532" },
    { CKM_SHA3_384, "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b2"
                    "98d88cea927ac7f539f1edf228376d25" },
    { CKM_SHA3_512, "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e"
                    "10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0" },
};

static void test_digests_of_abc_match_single_and_multi_part(void)
{
    for (size_t i = 0; i < ARRAY_LEN(md_vectors); i++) {
        uint8_t want[64], out[64];
        size_t wlen = unhex(md_vectors[i].abc, want), n = 0;
        CU_ASSERT_EQUAL(run_oneshot(md_vectors[i].type, NULL, 0, MECH_OP_DIGEST, NULL,
                                    (const uint8_t *)"abc", 3, out, sizeof(out), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, wlen);
        CU_ASSERT(memcmp(out, want, wlen) == 0);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(run_multi(md_vectors[i].type, NULL, 0, MECH_OP_DIGEST, NULL,
                                  (const uint8_t *)"abc", 3, 1, out, sizeof(out), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, wlen);
        CU_ASSERT(memcmp(out, want, wlen) == 0);
    }
}

static void test_digest_of_empty_message_needs_no_update(void)
{
    uint8_t want[32], out[32];
    size_t n = 0;
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    CU_ASSERT_EQUAL(run_multi(CKM_SHA256, NULL, 0, MECH_OP_DIGEST, NULL, NULL, 0, 1, out,
                              sizeof(out), &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 32);
    CU_ASSERT(memcmp(out, want, 32) == 0);
}

static void test_digest_refuses_any_parameter(void)
{
    uint8_t p[8] = { 0 };
    uint8_t out[64];
    size_t n;
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA256, p, sizeof(p), MECH_OP_DIGEST, NULL,
                                (const uint8_t *)"abc", 3, out, sizeof(out), &n),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA3_256, NULL, 4, MECH_OP_DIGEST, NULL,
                                (const uint8_t *)"abc", 3, out, sizeof(out), &n),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA512, p, 0, MECH_OP_DIGEST, NULL, (const uint8_t *)"abc",
                                3, out, sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
}

/* ---- HMAC ------------------------------------------------------------- */

typedef struct hmac_vector {
    const char *key, *data; /* hex */
    const char *mac[4];     /* SHA-224, -256, -384, -512 */
} hmac_vector;

static const CK_MECHANISM_TYPE hmac_types[4] = { CKM_SHA224_HMAC, CKM_SHA256_HMAC,
                                                 CKM_SHA384_HMAC, CKM_SHA512_HMAC };

/* RFC 4231 test cases 1, 3, 4 and 6 (case 2's 4-byte key is below the
 * 128-bit minimum: test_hmac_key_shorter_than_128_bits_is_refused). */
static const hmac_vector hmac_vectors[] = {
    { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
      { "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" } },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
      "dddddddddddddddddddddddddddddddddddd",
      { "7fb3cb3588c6c1f6ffa9694d7d6ad2649365b0c1f65d69d1ec8333ea",
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
        "2a5ab39dc13814b94e3ab6e101a34f27",
        "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
        "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb" } },
    { "0102030405060708090a0b0c0d0e0f10111213141516171819",
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
      { "6c11506874013cac6a2abc1bb382627cec6a90d86efc012de7afec5a",
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
        "6801dd23c4a7d679ccf8a386c674cffb",
        "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
        "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" } },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaa",
      "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a"
      "65204b6579202d2048617368204b6579204669727374",
      { "95e9a0db962095adaebe9b2d6f0dbce2d499f112f2d2b7273fa6870e",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
        "0c2ef6ab4030fe8296248df163f44952",
        "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
        "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" } },
};

/* Init a verification, feed data in pieces of chunk, verify_final. */
static CK_RV run_verify(CK_MECHANISM_TYPE t, const mech_key *k, const uint8_t *data,
                        size_t dlen, size_t chunk, const uint8_t *sig, size_t siglen)
{
    const mech_desc *d = row(t);
    CK_MECHANISM m = { t, NULL, 0 };
    mech_ctx *c = NULL;
    size_t n;
    CK_RV rv = d->ops->init(d, &m, MECH_OP_VERIFY, k, &c);
    if (rv != CKR_OK)
        return rv;
    for (size_t off = 0; off < dlen && rv == CKR_OK; off += chunk)
        rv = d->ops->update(c, data + off, dlen - off < chunk ? dlen - off : chunk, NULL, &n);
    if (rv == CKR_OK)
        rv = d->ops->verify_final(c, sig, siglen);
    d->ops->free(c);
    return rv;
}

static void test_hmac_rfc4231_vectors_sign_and_verify(void)
{
    for (size_t i = 0; i < ARRAY_LEN(hmac_vectors); i++) {
        uint8_t key[160], data[80], want[64], out[64];
        size_t klen = unhex(hmac_vectors[i].key, key), dlen = unhex(hmac_vectors[i].data, data);
        mech_key k = { key, klen, CKK_GENERIC_SECRET };
        for (size_t h = 0; h < 4; h++) {
            size_t wlen = unhex(hmac_vectors[i].mac[h], want), n = 0;
            CU_ASSERT_EQUAL(run_oneshot(hmac_types[h], NULL, 0, MECH_OP_SIGN, &k, data, dlen, out,
                                        sizeof(out), &n), CKR_OK);
            CU_ASSERT_EQUAL(n, wlen);
            CU_ASSERT(memcmp(out, want, wlen) == 0);
            memset(out, 0, sizeof(out));
            CU_ASSERT_EQUAL(run_multi(hmac_types[h], NULL, 0, MECH_OP_SIGN, &k, data, dlen, 7,
                                      out, sizeof(out), &n), CKR_OK);
            CU_ASSERT(n == wlen && memcmp(out, want, wlen) == 0);
            CU_ASSERT_EQUAL(run_verify(hmac_types[h], &k, data, dlen, 5, want, wlen), CKR_OK);
        }
    }
}

static void test_hmac_sha3_256_known_answer_and_hmac_key_type(void)
{
    /* RFC 4231 case 1 inputs under HMAC-SHA3-256 (value from an
     * independent implementation, Python's hmac module). */
    uint8_t key[20], want[32], out[32];
    size_t n = 0;
    mech_key k = { key, unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", key),
                   CKK_SHA3_256_HMAC };
    unhex("ba85192310dffa96e2a3a40e69774351140bb7185e1202cdcc917589f95e16bb", want);
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA3_256_HMAC, NULL, 0, MECH_OP_SIGN, &k,
                                (const uint8_t *)"Hi There", 8, out, sizeof(out), &n), CKR_OK);
    CU_ASSERT(n == 32 && memcmp(out, want, 32) == 0);
    CU_ASSERT_EQUAL(run_verify(CKM_SHA3_256_HMAC, &k, (const uint8_t *)"Hi There", 8, 3, want,
                               32), CKR_OK);
    /* A key typed for another hash is refused. */
    k.type = CKK_SHA256_HMAC;
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA3_256_HMAC, NULL, 0, MECH_OP_SIGN, &k,
                                (const uint8_t *)"Hi There", 8, out, sizeof(out), &n),
                    CKR_KEY_TYPE_INCONSISTENT);
}

static void test_hmac_verify_of_wrong_signature_is_signature_invalid(void)
{
    uint8_t key[20], sig[32];
    mech_key k = { key, unhex(hmac_vectors[0].key, key), CKK_GENERIC_SECRET };
    unhex(hmac_vectors[0].mac[1], sig);
    for (size_t byte = 0; byte < 32; byte += 31) {
        sig[byte] ^= 0x01;
        CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi There", 8, 8, sig,
                                   32), CKR_SIGNATURE_INVALID);
        sig[byte] ^= 0x01;
    }
    CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi there", 8, 8, sig, 32),
                    CKR_SIGNATURE_INVALID);
    CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi There", 8, 8, sig, 32),
                    CKR_OK);
}

static void test_hmac_verify_of_wrong_length_is_signature_len_range(void)
{
    uint8_t key[20], sig[64];
    mech_key k = { key, unhex(hmac_vectors[0].key, key), CKK_GENERIC_SECRET };
    unhex(hmac_vectors[0].mac[1], sig);
    CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi There", 8, 8, sig, 31),
                    CKR_SIGNATURE_LEN_RANGE);
    CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi There", 8, 8, sig, 33),
                    CKR_SIGNATURE_LEN_RANGE);
    CU_ASSERT_EQUAL(run_verify(CKM_SHA256_HMAC, &k, (const uint8_t *)"Hi There", 8, 8, sig, 0),
                    CKR_SIGNATURE_LEN_RANGE);
}

static void test_hmac_key_shorter_than_128_bits_is_refused(void)
{
    /* RFC 4231 case 2: the key "Jefe". */
    uint8_t out[64];
    size_t n;
    mech_key k = { (const uint8_t *)"Jefe", 4, CKK_GENERIC_SECRET };
    CU_ASSERT_EQUAL(run_oneshot(CKM_SHA256_HMAC, NULL, 0, MECH_OP_SIGN, &k,
                                (const uint8_t *)"what do ya want for nothing?", 28, out,
                                sizeof(out), &n), CKR_KEY_SIZE_RANGE);
}

static void test_hmac_refuses_parameter_and_reports_sizes(void)
{
    const mech_desc *d = row(CKM_SHA384_HMAC);
    CK_ULONG len = 16;
    CK_MECHANISM m = { CKM_SHA384_HMAC, &len, sizeof(len) };
    uint8_t key[32] = { 0 };
    mech_key k = { key, sizeof(key), CKK_GENERIC_SECRET };
    mech_ctx *c = NULL;

    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_SIGN), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_SIGN, &k, &c), CKR_MECHANISM_PARAM_INVALID);
    m = (CK_MECHANISM){ CKM_SHA384_HMAC, NULL, 0 };
    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_SIGN, &k, &c), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->out_len(c, false, 100), 0);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 48);
    CU_ASSERT_EQUAL(d->ops->verify_final(c, key, 48), CKR_OPERATION_NOT_INITIALIZED);
    d->ops->free(c);
}

/* ---- legacy block modes ----------------------------------------------- */

/* NIST SP 800-38A F.1.1, F.2.1, F.5.1 (first two blocks). */
#define SP_KEY "2b7e151628aed2a6abf7158809cf4f3c"
#define SP_PT "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"

static void check_block_vector(CK_MECHANISM_TYPE t, void *p, CK_ULONG pl, const char *ct_hex,
                               size_t ptlen)
{
    uint8_t key[16], pt[32], want[32], out[96], back[96];
    mech_key k = { key, unhex(SP_KEY, key), CKK_AES };
    size_t n, m;
    unhex(SP_PT, pt);
    unhex(ct_hex, want);
    CU_ASSERT_EQUAL(run_oneshot(t, p, pl, MECH_OP_ENCRYPT, &k, pt, ptlen, out, sizeof(out), &n),
                    CKR_OK);
    CU_ASSERT_EQUAL(n, ptlen);
    CU_ASSERT(memcmp(out, want, ptlen) == 0);
    CU_ASSERT_EQUAL(run_multi(t, p, pl, MECH_OP_ENCRYPT, &k, pt, ptlen, 5, out, sizeof(out), &n),
                    CKR_OK);
    CU_ASSERT(n == ptlen && memcmp(out, want, ptlen) == 0);
    CU_ASSERT_EQUAL(run_multi(t, p, pl, MECH_OP_DECRYPT, &k, want, ptlen, 3, back,
                              sizeof(back), &m), CKR_OK);
    CU_ASSERT(m == ptlen && memcmp(back, pt, ptlen) == 0);
    CU_ASSERT_EQUAL(run_oneshot(t, p, pl, MECH_OP_DECRYPT, &k, want, ptlen, back, sizeof(back),
                                &m), CKR_OK);
    CU_ASSERT(m == ptlen && memcmp(back, pt, ptlen) == 0);
}

static void test_ecb_cbc_ctr_match_sp800_38a(void)
{
    uint8_t iv[16];
    CK_AES_CTR_PARAMS ctr = { 128, { 0 } };
    for (int i = 0; i < 16; i++)
        iv[i] = (uint8_t)i;
    unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", ctr.cb);
    check_block_vector(CKM_AES_ECB, NULL, 0,
                       "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf", 32);
    check_block_vector(CKM_AES_CBC, iv, 16,
                       "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2", 32);
    check_block_vector(CKM_AES_CTR, &ctr, sizeof(ctr),
                       "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff", 32);
    /* CTR needs no whole blocks. */
    check_block_vector(CKM_AES_CTR, &ctr, sizeof(ctr),
                       "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff", 21);
}

static void test_cbc_pad_round_trips_every_length(void)
{
    uint8_t key[16] = { 7 }, iv[16] = { 9 }, pt[40], ct[96], back[96];
    mech_key k = { key, 16, CKK_AES };
    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (uint8_t)(i * 13);
    for (size_t len = 0; len <= sizeof(pt); len++) {
        size_t n = 0, m = 0;
        CU_ASSERT_EQUAL(run_multi(CKM_AES_CBC_PAD, iv, 16, MECH_OP_ENCRYPT, &k, pt, len, 6, ct,
                                  sizeof(ct), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, (len / 16 + 1) * 16);
        CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC_PAD, iv, 16, MECH_OP_DECRYPT, &k, ct, n, back,
                                    sizeof(back), &m), CKR_OK);
        CU_ASSERT(m == len && memcmp(back, pt, len) == 0);
    }
}

static void test_partial_blocks_are_len_range_in_unpadded_modes(void)
{
    uint8_t key[16] = { 1 }, iv[16] = { 0 }, buf[64] = { 0 }, out[96];
    mech_key k = { key, 16, CKK_AES };
    size_t n = 99;
    /* Single part: refused before anything is written. */
    memset(out, 0xAA, sizeof(out));
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_ECB, NULL, 0, MECH_OP_ENCRYPT, &k, buf, 17, out,
                                sizeof(out), &n), CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(n, 0);
    for (size_t i = 0; i < sizeof(out); i++)
        CU_ASSERT_EQUAL(out[i], 0xAA);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC, iv, 16, MECH_OP_ENCRYPT, &k, buf, 15, out,
                                sizeof(out), &n), CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC, iv, 16, MECH_OP_DECRYPT, &k, buf, 31, out,
                                sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_multi(CKM_AES_ECB, NULL, 0, MECH_OP_DECRYPT, &k, buf, 33, 16, out,
                              sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_multi(CKM_AES_CBC, iv, 16, MECH_OP_ENCRYPT, &k, buf, 20, 8, out,
                              sizeof(out), &n), CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC_PAD, iv, 16, MECH_OP_DECRYPT, &k, buf, 20, out,
                                sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC_PAD, iv, 16, MECH_OP_DECRYPT, &k, buf, 0, out,
                                sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
}

static void test_cbc_pad_with_bad_padding_is_encrypted_data_invalid(void)
{
    uint8_t key[16] = { 3 }, iv[16] = { 4 }, pt[32] = { 0 }, ct[64], out[96];
    mech_key k = { key, 16, CKK_AES };
    size_t n, m;
    /* Two blocks ending in a zero byte, which no PKCS#7 padding is. */
    CU_ASSERT_EQUAL_FATAL(run_oneshot(CKM_AES_CBC, iv, 16, MECH_OP_ENCRYPT, &k, pt, 32, ct,
                                      sizeof(ct), &n), CKR_OK);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC_PAD, iv, 16, MECH_OP_DECRYPT, &k, ct, n, out,
                                sizeof(out), &m), CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT_EQUAL(run_multi(CKM_AES_CBC_PAD, iv, 16, MECH_OP_DECRYPT, &k, ct, n, 16, out,
                              sizeof(out), &m), CKR_ENCRYPTED_DATA_INVALID);
}

static void test_block_bad_parameters_are_param_invalid(void)
{
    uint8_t iv[16] = { 0 }, key[16] = { 0 }, out[64];
    mech_key k = { key, 16, CKK_AES };
    CK_AES_CTR_PARAMS ctr = { 0, { 0 } };
    size_t n;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC, iv, 8, MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC_PAD, NULL, 16, MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_ECB, iv, 16, MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    ctr.ulCounterBits = 129;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    ctr.ulCounterBits = 32;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, 16, MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_MECHANISM_PARAM_INVALID);
    k.len = 17;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CBC, iv, 16, MECH_OP_ENCRYPT, &k, iv, 16, out,
                                sizeof(out), &n), CKR_KEY_SIZE_RANGE);
}

static void test_ctr_refuses_input_that_would_wrap_the_counter(void)
{
    uint8_t key[16] = { 5 }, in[48] = { 0 }, out[96];
    mech_key k = { key, 16, CKK_AES };
    CK_AES_CTR_PARAMS ctr = { 8, { 0 } };
    size_t n;
    /* An 8-bit counter at 0xFE has two blocks left. */
    ctr.cb[15] = 0xFE;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, in, 32, out,
                                sizeof(out), &n), CKR_OK);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, in, 33, out,
                                sizeof(out), &n), CKR_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(run_multi(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_DECRYPT, &k, in, 48, 16,
                              out, sizeof(out), &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    /* A 64-bit counter at its top value has one block left; with the bit
     * above it counted too (65 bits), there is room to spare. */
    ctr.ulCounterBits = 64;
    memset(ctr.cb + 8, 0xFF, 8);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, in, 16, out,
                                sizeof(out), &n), CKR_OK);
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, in, 17, out,
                                sizeof(out), &n), CKR_DATA_LEN_RANGE);
    ctr.ulCounterBits = 65;
    CU_ASSERT_EQUAL(run_oneshot(CKM_AES_CTR, &ctr, sizeof(ctr), MECH_OP_ENCRYPT, &k, in, 48, out,
                                sizeof(out), &n), CKR_OK);
}

/* ---- ChaCha20-Poly1305 and XChaCha20-Poly1305 ------------------------- */

/* RFC 8439 sec. 2.8.2 and draft-irtf-cfrg-xchacha-03 appendix A.3.1: the
 * same key, AAD and plaintext, a 96-bit and a 192-bit nonce. */
#define CHA_K "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
#define CHA_A "50515253c0c1c2c3c4c5c6c7"
#define CHA_P                                                                  \
    "Ladies and Gentlemen of the class of '99: If I could offer you only one " \
    "tip for the future, sunscreen would be it."
#define CHA_N12 "070000004041424344454647"
#define CHA_CT12                                                               \
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"         \
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"         \
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"         \
    "3ff4def08e4b7a9de576d26586cec64b6116"                                     \
    "1ae10b594f09e26a7e902ecbd0600691"
#define CHA_N24 "404142434445464748494a4b4c4d4e4f5051525354555657"
#define CHA_CT24                                                               \
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"         \
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"         \
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"         \
    "21f9664c97637da9768812f615c68b13b52e"                                     \
    "c0875924c1c7987947deafd8780acf49"

typedef struct cha_fixture {
    uint8_t key[32], pt[128], aad[16], nonce[24], ct[160];
    size_t ptlen, aadlen, noncelen, ctlen;
    mech_key k;
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p;
} cha_fixture;

/* xchacha picks the 24-byte nonce; bits picks the standard's unit for
 * ulNonceLen rather than the bytes NSS and pkcs11-tool send. */
static void cha_setup(cha_fixture *f, bool xchacha, bool bits)
{
    memset(f, 0, sizeof(*f));
    unhex(CHA_K, f->key);
    f->ptlen = strlen(CHA_P);
    memcpy(f->pt, CHA_P, f->ptlen);
    f->aadlen = unhex(CHA_A, f->aad);
    f->noncelen = unhex(xchacha ? CHA_N24 : CHA_N12, f->nonce);
    f->ctlen = unhex(xchacha ? CHA_CT24 : CHA_CT12, f->ct);
    f->k = (mech_key){ f->key, 32, CKK_CHACHA20 };
    f->p = (CK_SALSA20_CHACHA20_POLY1305_PARAMS){ f->nonce, bits ? f->noncelen * 8 : f->noncelen,
                                                  f->aad, f->aadlen };
}

static CK_RV cha_oneshot(cha_fixture *f, mech_op op, const uint8_t *in, size_t inlen,
                         uint8_t *out, size_t cap, size_t *n)
{
    return run_oneshot(CKM_CHACHA20_POLY1305, &f->p, sizeof(f->p), op, &f->k, in, inlen, out,
                       cap, n);
}

static CK_RV cha_check(void *p, CK_ULONG len)
{
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_MECHANISM m = { CKM_CHACHA20_POLY1305, p, len };
    return d->ops->check_param(d, &m, MECH_OP_ENCRYPT);
}

static void check_cha_known_answer(bool xchacha)
{
    cha_fixture f;
    uint8_t out[160];
    size_t n;

    for (int bits = 0; bits < 2; bits++) {
        cha_setup(&f, xchacha, bits);
        CU_ASSERT_EQUAL_FATAL(f.ctlen, f.ptlen + 16);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_ENCRYPT, f.pt, f.ptlen, out, sizeof(out), &n),
                        CKR_OK);
        CU_ASSERT_EQUAL(n, f.ctlen);
        CU_ASSERT(memcmp(out, f.ct, f.ctlen) == 0);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_OK);
        CU_ASSERT_EQUAL(n, f.ptlen);
        CU_ASSERT(memcmp(out, f.pt, f.ptlen) == 0);
    }
}

static void test_chacha_rfc8439_known_answer_with_nonce_in_bits_and_bytes(void)
{
    check_cha_known_answer(false);
}

static void test_xchacha_draft_known_answer_with_nonce_in_bits_and_bytes(void)
{
    check_cha_known_answer(true);
}

static void test_chacha_rows_name_key_type_size_and_functions(void)
{
    const mech_desc *gen = row(CKM_CHACHA20_KEY_GEN), *aead = row(CKM_CHACHA20_POLY1305);
    CU_ASSERT(gen->flags & MECH_KEYGEN);
    CU_ASSERT_EQUAL(gen->gen_key_type, CKK_CHACHA20);
    CU_ASSERT(mech_key_size_ok(gen, 32) && !mech_key_size_ok(gen, 16));
    CU_ASSERT_EQUAL(aead->info_flags, CKF_ENCRYPT | CKF_DECRYPT | CKF_MESSAGE_ENCRYPT |
                                          CKF_MESSAGE_DECRYPT | CKF_MULTI_MESSAGE);
    CU_ASSERT(mech_accepts_key(aead, CKK_CHACHA20) && !mech_accepts_key(aead, CKK_AES));
    CU_ASSERT(mech_key_size_ok(aead, 32) && !mech_key_size_ok(aead, 31) &&
              !mech_key_size_ok(aead, 33));
    CU_ASSERT(!(aead->flags & (MECH_LEGACY | MECH_DEPRECATED | MECH_KEY_BITS)));
}

static void test_chacha_multipart_round_trip_equals_single_part(void)
{
    static const size_t chunks[] = { 1, 7, 16, 63, 64, 65, 1000 };
    cha_fixture f;
    uint8_t ct[160], pt[160];
    size_t n, m;

    for (int x = 0; x < 2; x++) {
        cha_setup(&f, x, x);
        for (size_t i = 0; i < ARRAY_LEN(chunks); i++) {
            memset(ct, 0, sizeof(ct));
            CU_ASSERT_EQUAL(run_multi(CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p), MECH_OP_ENCRYPT,
                                      &f.k, f.pt, f.ptlen, chunks[i], ct, sizeof(ct), &n),
                            CKR_OK);
            CU_ASSERT_EQUAL(n, f.ctlen);
            CU_ASSERT(memcmp(ct, f.ct, f.ctlen) == 0);
            memset(pt, 0, sizeof(pt));
            CU_ASSERT_EQUAL(run_multi(CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p), MECH_OP_DECRYPT,
                                      &f.k, ct, n, chunks[i], pt, sizeof(pt), &m),
                            CKR_OK);
            CU_ASSERT_EQUAL(m, f.ptlen);
            CU_ASSERT(memcmp(pt, f.pt, f.ptlen) == 0);
        }
    }
}

static void test_chacha_out_len_streams_encryption_and_holds_decryption(void)
{
    cha_fixture f;
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_MECHANISM m = { CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p) };
    mech_ctx *c = NULL;
    uint8_t out[160];
    size_t n;

    cha_setup(&f, true, false);
    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->out_len(c, false, 10), 10);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 16);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 114), 130);
    d->ops->free(c);

    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m, MECH_OP_DECRYPT, &f.k, &c), CKR_OK);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 130), 114);
    CU_ASSERT_EQUAL(mech_oneshot_len(d, c, 15), 0);
    CU_ASSERT_EQUAL(d->ops->out_len(c, false, 100), 0);
    CU_ASSERT_EQUAL(d->ops->update(c, f.ct, 100, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 84);
    CU_ASSERT_EQUAL(d->ops->update(c, f.ct + 100, 30, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(d->ops->out_len(c, true, 0), 114);
    CU_ASSERT_EQUAL(d->ops->final(c, out, &n), CKR_OK);
    CU_ASSERT_EQUAL(n, 114);
    CU_ASSERT(memcmp(out, f.pt, 114) == 0);
    d->ops->free(c);
}

static void test_chacha_decrypt_with_wrong_tag_fails_and_releases_nothing(void)
{
    cha_fixture f;
    uint8_t out[160];
    size_t n;

    for (int x = 0; x < 2; x++) {
        cha_setup(&f, x, !x);
        f.ct[f.ctlen - 1] ^= 1;
        memset(out, 0xAA, sizeof(out));
        n = 99;
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT_EQUAL(n, 0);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
        memset(out, 0xAA, sizeof(out));
        n = 99;
        CU_ASSERT_EQUAL(run_multi(CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p), MECH_OP_DECRYPT,
                                  &f.k, f.ct, f.ctlen, 16, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT_EQUAL(n, 0);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
        /* A flipped ciphertext byte under the right tag fails the same way. */
        f.ct[f.ctlen - 1] ^= 1;
        f.ct[3] ^= 0x10;
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
    }
}

static void test_chacha_decrypt_with_wrong_aad_or_nonce_fails_and_releases_nothing(void)
{
    cha_fixture f;
    uint8_t out[160];
    size_t n;

    for (int x = 0; x < 2; x++) {
        cha_setup(&f, x, x);
        f.aad[0] ^= 0x80;
        memset(out, 0xAA, sizeof(out));
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
        /* No AAD at all where there was some. */
        f.aad[0] ^= 0x80;
        f.p.pAAD = NULL;
        f.p.ulAADLen = 0;
        CU_ASSERT_EQUAL(run_multi(CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p), MECH_OP_DECRYPT,
                                  &f.k, f.ct, f.ctlen, 5, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
        /* XChaCha: a change in the HChaCha20 half of the nonce (the subkey)
         * and in the ChaCha20 half must both be caught. */
        cha_setup(&f, x, x);
        f.nonce[0] ^= 1;
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        f.nonce[0] ^= 1;
        f.nonce[f.noncelen - 1] ^= 1;
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen, out, sizeof(out), &n),
                        CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
    }
}

static void test_chacha_decrypt_of_truncated_input_fails(void)
{
    cha_fixture f;
    uint8_t out[160];
    size_t n = 99;

    cha_setup(&f, true, true);
    CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, 15, out, sizeof(out), &n),
                    CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(run_multi(CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p), MECH_OP_DECRYPT, &f.k,
                              f.ct, 15, 4, out, sizeof(out), &n),
                    CKR_ENCRYPTED_DATA_LEN_RANGE);
    CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, 0, out, sizeof(out), &n),
                    CKR_ENCRYPTED_DATA_LEN_RANGE);
    memset(out, 0xAA, sizeof(out));
    memmove(f.ct + 100, f.ct + 101, f.ctlen - 101);
    CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, f.ct, f.ctlen - 1, out, sizeof(out), &n),
                    CKR_ENCRYPTED_DATA_INVALID);
    CU_ASSERT(released_nothing(out, sizeof(out), f.pt, f.ptlen));
}

static void test_chacha_empty_plaintext_gives_tag_only(void)
{
    cha_fixture f;
    uint8_t ct[16], pt[16];
    size_t n, m = 99;

    for (int x = 0; x < 2; x++) {
        cha_setup(&f, x, false);
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_ENCRYPT, NULL, 0, ct, sizeof(ct), &n), CKR_OK);
        CU_ASSERT_EQUAL(n, 16);
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, ct, 16, pt, sizeof(pt), &m), CKR_OK);
        CU_ASSERT_EQUAL(m, 0);
        ct[0] ^= 1;
        CU_ASSERT_EQUAL(cha_oneshot(&f, MECH_OP_DECRYPT, ct, 16, pt, sizeof(pt), &m),
                        CKR_ENCRYPTED_DATA_INVALID);
    }
}

static void test_chacha_bad_nonce_lengths_are_param_invalid(void)
{
    /* 8 bytes / 64 bits is the original (non-IETF) ChaCha20-Poly1305. */
    static const CK_ULONG bad[] = { 0, 8, 64, 16, 128, 1, 11, 13, 23, 25, 95, 97, 191, 193, 256 };
    uint8_t nonce[32] = { 0 }, aad[4] = { 0 }, key[32] = { 0 };
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_SALSA20_CHACHA20_POLY1305_PARAMS p = { nonce, 12, aad, sizeof(aad) };
    CK_MECHANISM m = { CKM_CHACHA20_POLY1305, &p, sizeof(p) };
    mech_key k = { key, 32, CKK_CHACHA20 };
    mech_ctx *c = NULL;

    static const CK_ULONG good[] = { 12, 96, 24, 192 };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        p.ulNonceLen = good[i];
        CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_OK);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        p.ulNonceLen = bad[i];
        CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_MECHANISM_PARAM_INVALID);
        CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &k, &c), CKR_MECHANISM_PARAM_INVALID);
        CU_ASSERT_PTR_NULL(c);
    }
    /* A NULL nonce, with either length unit. */
    p.pNonce = NULL;
    p.ulNonceLen = 12;
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_MECHANISM_PARAM_INVALID);
    p.ulNonceLen = 192;
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_DECRYPT, &k, &c), CKR_MECHANISM_PARAM_INVALID);
    /* The parameter itself: absent, or of the wrong size. */
    p.pNonce = nonce;
    CU_ASSERT_EQUAL(cha_check(NULL, 0), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(cha_check(NULL, sizeof(p)), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(cha_check(&p, 0), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p) - 1), CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p) + 8), CKR_MECHANISM_PARAM_INVALID);
    /* AAD: NULL only with length 0. */
    p.pAAD = NULL;
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_MECHANISM_PARAM_INVALID);
    p.ulAADLen = 0;
    CU_ASSERT_EQUAL(cha_check(&p, sizeof(p)), CKR_OK);
    /* Only encryption and decryption. */
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_SIGN), CKR_MECHANISM_INVALID);
    CU_ASSERT_EQUAL(d->ops->check_param(d, &m, MECH_OP_WRAP), CKR_MECHANISM_INVALID);
}

static void test_chacha_init_checks_key_type_and_size(void)
{
    cha_fixture f;
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_MECHANISM m = { CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p) };
    mech_ctx *c = NULL;

    cha_setup(&f, true, true);
    f.k.len = 16;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_KEY_SIZE_RANGE);
    f.k.len = 32;
    f.k.type = CKK_AES;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_ENCRYPT, &f.k, &c), CKR_KEY_TYPE_INCONSISTENT);
    f.k.type = CKK_GENERIC_SECRET;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_DECRYPT, &f.k, &c), CKR_KEY_TYPE_INCONSISTENT);
    f.k.type = CKK_CHACHA20;
    CU_ASSERT_EQUAL(d->ops->init(d, &m, MECH_OP_SIGN, &f.k, &c), CKR_MECHANISM_INVALID);
    CU_ASSERT_PTR_NULL(c);
}

static void test_chacha_reinit_reuses_context_across_nonce_sizes(void)
{
    cha_fixture f12, f24;
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_MECHANISM m12 = { CKM_CHACHA20_POLY1305, &f12.p, sizeof(f12.p) };
    CK_MECHANISM m24 = { CKM_CHACHA20_POLY1305, &f24.p, sizeof(f24.p) };
    mech_ctx *c = NULL;
    uint8_t out[160];
    size_t n;

    cha_setup(&f12, false, true);
    cha_setup(&f24, true, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->ops->reinit);
    CU_ASSERT_EQUAL_FATAL(d->ops->init(d, &m12, MECH_OP_ENCRYPT, &f12.k, &c), CKR_OK);
    for (int round = 0; round < 6; round++) {
        cha_fixture *f = round % 2 ? &f24 : &f12;
        CK_MECHANISM *m = round % 2 ? &m24 : &m12;
        if (round > 0)
            CU_ASSERT_EQUAL(d->ops->reinit(c, d, m, MECH_OP_ENCRYPT, &f->k), CKR_OK);
        CU_ASSERT_EQUAL(d->ops->oneshot(c, f->pt, f->ptlen, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(n, f->ctlen);
        CU_ASSERT(memcmp(out, f->ct, f->ctlen) == 0);
        /* Finished: a further step is refused, not run on stale state. */
        CU_ASSERT_EQUAL(d->ops->update(c, f->pt, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
        /* An abandoned decryption, then a failed one, then a good one. */
        CU_ASSERT_EQUAL(d->ops->reinit(c, d, m, MECH_OP_DECRYPT, &f->k), CKR_OK);
        CU_ASSERT_EQUAL(d->ops->update(c, f->ct, 30, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(d->ops->reinit(c, d, m, MECH_OP_DECRYPT, &f->k), CKR_OK);
        out[0] ^= 1;
        CU_ASSERT_EQUAL(d->ops->oneshot(c, out, f->ctlen, out, &n), CKR_ENCRYPTED_DATA_INVALID);
        CU_ASSERT_EQUAL(d->ops->reinit(c, d, m, MECH_OP_DECRYPT, &f->k), CKR_OK);
        CU_ASSERT_EQUAL(d->ops->oneshot(c, f->ct, f->ctlen, out, &n), CKR_OK);
        CU_ASSERT_EQUAL(n, f->ptlen);
        CU_ASSERT(memcmp(out, f->pt, f->ptlen) == 0);
    }
    /* A bad parameter leaves the context refusing work but freeable. */
    f12.p.ulNonceLen = 64;
    CU_ASSERT_EQUAL(d->ops->reinit(c, d, &m12, MECH_OP_ENCRYPT, &f12.k),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(d->ops->update(c, f12.pt, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
    /* AES-GCM and ChaCha20 share one engine (aead.c), so the context may
     * serve a GCM row too, but only with that row's parameter: a ChaCha
     * parameter for the GCM row is refused and leaves it refusing work. */
    CU_ASSERT_EQUAL(d->ops->reinit(c, row(CKM_AES_GCM), &m24, MECH_OP_ENCRYPT, &f24.k),
                    CKR_MECHANISM_PARAM_INVALID);
    CU_ASSERT_EQUAL(d->ops->update(c, f12.pt, 1, out, &n), CKR_OPERATION_NOT_INITIALIZED);
    d->ops->free(c);
    d->ops->free(NULL);
}

static void test_chacha_aad_op_reports_the_parameter_aad(void)
{
    cha_fixture f;
    const mech_desc *d = row(CKM_CHACHA20_POLY1305);
    CK_MECHANISM m = { CKM_CHACHA20_POLY1305, &f.p, sizeof(f.p) };
    const uint8_t *aad = NULL;
    size_t len = 0;

    cha_setup(&f, true, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->ops->aad);
    CU_ASSERT(d->ops->aad(d, &m, &aad, &len));
    CU_ASSERT_PTR_EQUAL(aad, f.aad);
    CU_ASSERT_EQUAL(len, f.aadlen);
    f.p.ulNonceLen = 8;
    CU_ASSERT(!d->ops->aad(d, &m, &aad, &len));
    m.ulParameterLen = 0;
    CU_ASSERT(!d->ops->aad(d, &m, &aad, &len));
}

static int setup(void)
{
    return crypto_init() == CKR_OK ? 0 : 1;
}

static int teardown(void)
{
    crypto_fini();
    return 0;
}

static const cunit_case CASES[] = {
    CASE(test_table_is_sorted_and_unique),
    CASE(test_table_names_are_ckm_names_and_unique),
    CASE(test_every_row_has_ops_matching_its_flags),
    CASE(test_find_returns_each_row_and_null_for_unknown),
    CASE(test_legacy_and_deprecated_rows_are_flagged),
    CASE(test_keygen_rows_name_their_key_type),
    CASE(test_accepts_key_follows_the_row),
    CASE(test_key_size_ok_handles_units_and_aes_sizes),
    CASE(test_check_param_refuses_operations_the_row_lacks),
    CASE(test_gcm_param_layouts_are_48_and_40_bytes),
    CASE(test_gcm_encrypt_matches_known_answer_in_both_layouts),
    CASE(test_gcm_decrypt_matches_known_answer),
    CASE(test_gcm_multipart_round_trip_equals_single_part),
    CASE(test_gcm_out_len_streams_encryption_and_holds_decryption),
    CASE(test_gcm_decrypt_with_wrong_tag_fails_and_releases_nothing),
    CASE(test_gcm_decrypt_with_wrong_aad_fails_and_releases_nothing),
    CASE(test_gcm_decrypt_of_truncated_input_fails),
    CASE(test_gcm_empty_plaintext_gives_tag_only),
    CASE(test_gcm_shorter_tags_from_96_bits_work),
    CASE(test_gcm_bad_parameters_are_param_invalid),
    CASE(test_gcm_init_checks_key_type_and_size),
    CASE(test_gcm_reinit_reuses_context_for_a_new_operation),
    CASE(test_kw_rfc3394_vectors_wrap_and_unwrap),
    CASE(test_kwp_rfc5649_vectors_through_kwp_and_0x210a),
    CASE(test_kw_of_12_byte_key_cannot_be_wrapped),
    CASE(test_corrupted_wrapped_key_is_wrapped_key_invalid),
    CASE(test_unwrap_of_impossible_length_is_len_range),
    CASE(test_wrap_parameters_other_than_the_rfc_iv_are_invalid),
    CASE(test_wrap_with_wrong_kek_is_refused),
    CASE(test_digests_of_abc_match_single_and_multi_part),
    CASE(test_digest_of_empty_message_needs_no_update),
    CASE(test_digest_refuses_any_parameter),
    CASE(test_hmac_rfc4231_vectors_sign_and_verify),
    CASE(test_hmac_sha3_256_known_answer_and_hmac_key_type),
    CASE(test_hmac_verify_of_wrong_signature_is_signature_invalid),
    CASE(test_hmac_verify_of_wrong_length_is_signature_len_range),
    CASE(test_hmac_key_shorter_than_128_bits_is_refused),
    CASE(test_hmac_refuses_parameter_and_reports_sizes),
    CASE(test_ecb_cbc_ctr_match_sp800_38a),
    CASE(test_cbc_pad_round_trips_every_length),
    CASE(test_partial_blocks_are_len_range_in_unpadded_modes),
    CASE(test_cbc_pad_with_bad_padding_is_encrypted_data_invalid),
    CASE(test_block_bad_parameters_are_param_invalid),
    CASE(test_ctr_refuses_input_that_would_wrap_the_counter),
    CASE(test_chacha_rfc8439_known_answer_with_nonce_in_bits_and_bytes),
    CASE(test_xchacha_draft_known_answer_with_nonce_in_bits_and_bytes),
    CASE(test_chacha_rows_name_key_type_size_and_functions),
    CASE(test_chacha_multipart_round_trip_equals_single_part),
    CASE(test_chacha_out_len_streams_encryption_and_holds_decryption),
    CASE(test_chacha_decrypt_with_wrong_tag_fails_and_releases_nothing),
    CASE(test_chacha_decrypt_with_wrong_aad_or_nonce_fails_and_releases_nothing),
    CASE(test_chacha_decrypt_of_truncated_input_fails),
    CASE(test_chacha_empty_plaintext_gives_tag_only),
    CASE(test_chacha_bad_nonce_lengths_are_param_invalid),
    CASE(test_chacha_init_checks_key_type_and_size),
    CASE(test_chacha_reinit_reuses_context_across_nonce_sizes),
    CASE(test_chacha_aad_op_reports_the_parameter_aad),
};

CUNIT_MAIN("mech", CASES, setup, teardown)
