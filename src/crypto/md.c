/* Digests (FIPS 180-4 SHA-1/SHA-2, FIPS 202 SHA-3) on EVP_MD_CTX and HMAC
 * (RFC 2104) on EVP_MAC, all from digests fetched once at crypto_init.
 * Both contexts reset themselves at final, ready for the next message. */
#include "crypto/internal.h"

#include <stdlib.h>
#include <openssl/core_names.h>
#include "util/secmem.h"

/* HMAC_Init_ex takes an int key length. */
#define HMAC_KEY_MAX ((size_t)1 << 30)

static const struct md_info {
    const char *name;
    size_t size, block;
} MDS[MD_SLOTS] = {
    [MD_SHA1] = { "SHA1", 20, 64 },
    [MD_SHA224] = { "SHA224", 28, 64 },
    [MD_SHA256] = { "SHA256", 32, 64 },
    [MD_SHA384] = { "SHA384", 48, 128 },
    [MD_SHA512] = { "SHA512", 64, 128 },
    [MD_SHA3_224] = { "SHA3-224", 28, 144 },
    [MD_SHA3_256] = { "SHA3-256", 32, 136 },
    [MD_SHA3_384] = { "SHA3-384", 48, 104 },
    [MD_SHA3_512] = { "SHA3-512", 64, 72 },
};

static const struct md_info *info(crypto_md_alg alg)
{
    return alg >= MD_SHA1 && alg <= MD_SHA3_512 ? &MDS[alg] : NULL;
}

const char *crypto_md_name(crypto_md_alg alg) { return info(alg) ? info(alg)->name : NULL; }
size_t crypto_md_size(crypto_md_alg alg) { return info(alg) ? info(alg)->size : 0; }
size_t crypto_md_block_size(crypto_md_alg alg) { return info(alg) ? info(alg)->block : 0; }

struct crypto_md {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
};

CK_RV crypto_md_new(crypto_md_alg alg, crypto_md **out)
{
    CK_RV rv = CKR_OK;
    const crypto_lib *lib = crypto_lib_get();
    crypto_md *m = NULL;
    ENSURE(out != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    ENSURE(info(alg) != NULL, CKR_MECHANISM_INVALID);
    m = calloc(1, sizeof(*m));
    ENSURE_OUT(m != NULL, CKR_HOST_MEMORY);
    m->md = lib->md[alg];
    m->ctx = EVP_MD_CTX_new();
    ENSURE_OUT(m->ctx != NULL, CKR_HOST_MEMORY);
    ENSURE_OUT(EVP_DigestInit_ex2(m->ctx, m->md, NULL) == 1, CKR_FUNCTION_FAILED);
    *out = m;
    m = NULL;
out:
    crypto_md_free(m);
    return rv == CKR_OK ? rv : crypto_fail(rv);
}

CK_RV crypto_md_update(crypto_md *m, const uint8_t *in, size_t inlen)
{
    ENSURE(m != NULL && (in != NULL || inlen == 0), CKR_ARGUMENTS_BAD);
    if (EVP_DigestUpdate(m->ctx, in, inlen) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    return CKR_OK;
}

CK_RV crypto_md_final(crypto_md *m, uint8_t *out)
{
    ENSURE(m != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    /* Re-initialising with the same digest keeps the provider context. */
    if (EVP_DigestFinal_ex(m->ctx, out, NULL) != 1 ||
        EVP_DigestInit_ex2(m->ctx, m->md, NULL) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    return CKR_OK;
}

void crypto_md_free(crypto_md *m)
{
    if (m == NULL)
        return;
    EVP_MD_CTX_free(m->ctx);
    free(m);
}

CK_RV crypto_md_oneshot(crypto_md_alg alg, const uint8_t *in, size_t inlen, uint8_t *out)
{
    const crypto_lib *lib = crypto_lib_get();
    ENSURE(out != NULL && (in != NULL || inlen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    ENSURE(info(alg) != NULL, CKR_MECHANISM_INVALID);
    if (EVP_Digest(in, inlen, out, NULL, lib->md[alg], NULL) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    return CKR_OK;
}

/* Keys up to this long are kept (in secure memory) to be compared with the
 * next one: a session signing many messages under one key. */
#define HMAC_KEEP_MAX 128u

struct crypto_hmac {
    EVP_MAC_CTX *ctx;
    size_t size;
    uint8_t *key;        /* a copy of the key, or NULL (longer than HMAC_KEEP_MAX) */
    size_t keylen;
    bool fresh;          /* at the start of a message: nothing fed since the key */
};

/* Remember key (or forget the last one, when it is too long to keep). */
static void keep_key(crypto_hmac *h, const uint8_t *key, size_t keylen)
{
    secmem_free(h->key, h->keylen);
    h->key = NULL;
    h->keylen = 0;
    if (keylen > 0 && keylen <= HMAC_KEEP_MAX && (h->key = secmem_dup(key, keylen)) != NULL)
        h->keylen = keylen;
}

CK_RV crypto_hmac_new(crypto_md_alg alg, const uint8_t *key, size_t keylen, crypto_hmac **out)
{
    static const uint8_t empty[1];
    CK_RV rv = CKR_OK;
    const crypto_lib *lib = crypto_lib_get();
    crypto_hmac *h = NULL;
    ENSURE(out != NULL && (key != NULL || keylen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    ENSURE(info(alg) != NULL, CKR_MECHANISM_INVALID);
    ENSURE(keylen <= HMAC_KEY_MAX, CKR_KEY_SIZE_RANGE);
    h = calloc(1, sizeof(*h));
    ENSURE_OUT(h != NULL, CKR_HOST_MEMORY);
    h->size = info(alg)->size;
    /* A copy of the per-digest template: digest already bound, no fetch.
     * The provider keeps its own key copy and cleanses it on free. */
    h->ctx = EVP_MAC_CTX_dup(lib->hmac_tpl[alg]);
    ENSURE_OUT(h->ctx != NULL, CKR_HOST_MEMORY);
    ENSURE_OUT(EVP_MAC_init(h->ctx, keylen > 0 ? key : empty, keylen, NULL) == 1,
               CKR_FUNCTION_FAILED);
    keep_key(h, key, keylen);
    h->fresh = true;
    *out = h;
    h = NULL;
out:
    crypto_hmac_free(h);
    return rv == CKR_OK ? rv : crypto_fail(rv);
}

CK_RV crypto_hmac_update(crypto_hmac *h, const uint8_t *in, size_t inlen)
{
    ENSURE(h != NULL && (in != NULL || inlen == 0), CKR_ARGUMENTS_BAD);
    h->fresh = false;
    if (inlen > 0 && EVP_MAC_update(h->ctx, in, inlen) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    return CKR_OK;
}

CK_RV crypto_hmac_final(crypto_hmac *h, uint8_t *out)
{
    size_t outl = 0;
    ENSURE(h != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    /* EVP_MAC_init with no key restarts from the precomputed inner/outer
     * states: the next message costs no key schedule. */
    h->fresh = false;
    if (EVP_MAC_final(h->ctx, out, &outl, h->size) != 1 || outl != h->size ||
        EVP_MAC_init(h->ctx, NULL, 0, NULL) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    h->fresh = true;
    return CKR_OK;
}

CK_RV crypto_hmac_restart(crypto_hmac *h, const uint8_t *key, size_t keylen)
{
    static const uint8_t empty[1];
    ENSURE(h != NULL && (key != NULL || keylen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(keylen <= HMAC_KEY_MAX, CKR_KEY_SIZE_RANGE);
    bool same = h->key != NULL && h->keylen == keylen && ct_memeq(h->key, key, keylen);
    if (same && h->fresh)
        return CKR_OK;
    h->fresh = false;
    if (EVP_MAC_init(h->ctx, same ? NULL : keylen > 0 ? key : empty, same ? 0 : keylen, NULL) != 1) {
        keep_key(h, NULL, 0);
        return crypto_fail(CKR_FUNCTION_FAILED);
    }
    if (!same)
        keep_key(h, key, keylen);
    h->fresh = true;
    return CKR_OK;
}

void crypto_hmac_free(crypto_hmac *h)
{
    if (h == NULL)
        return;
    EVP_MAC_CTX_free(h->ctx);
    secmem_free(h->key, h->keylen);
    free(h);
}
