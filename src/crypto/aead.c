/* AEAD on a reusable EVP_CIPHER_CTX: AES-GCM (NIST SP 800-38D),
 * ChaCha20-Poly1305 (RFC 8439) and XChaCha20-Poly1305
 * (draft-irtf-cfrg-xchacha-03), plus the one-shot seal used for secrets at
 * rest. The context is allocated once; each init only loads key and IV, so
 * an operation costs what raw OpenSSL costs: no allocation, no fetch.
 *
 * Why libsodium as well: XChaCha20-Poly1305 needs HChaCha20 to turn the key
 * and the first 16 nonce bytes into a subkey, and OpenSSL 3.0 offers no
 * HChaCha20. Custos never implements a primitive itself, so it takes
 * exactly one function from libsodium (Debian's libsodium23, a widely
 * reviewed and maintained library): crypto_core_hchacha20(). Everything
 * else, the ChaCha20 keystream and Poly1305 included, stays on OpenSSL. */
#include "crypto/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <sodium/core.h>
#include <sodium/crypto_core_hchacha20.h>

#include "util/secmem.h"

/* OpenSSL 3.0 keeps GCM IVs in a 128-byte buffer (GCM_IV_MAX_SIZE). */
#define GCM_IV_MAX 128
#define CHACHA_KEY_LEN 32
#define CHACHA_IV_LEN 12
#define XCHACHA_IV_LEN 24
/* draft-irtf-cfrg-xchacha-03 sec. 2.3: HChaCha20 takes nonce[0..15]; the
 * ChaCha20 nonce is four zero bytes then nonce[16..23]. */
#define HCHACHA_IN_LEN 16
#define TAG_MAX 16
#define TAG_MIN 4
#define SEAL_NONCE_LEN 12

struct crypto_aead {
    EVP_CIPHER_CTX *ctx;
    const EVP_CIPHER *cipher; /* what ctx is set up for; NULL: set it up again */
    size_t ivlen;             /* the IV length ctx is set for */
    crypto_aead_alg alg;
    bool encrypt;
    bool active;              /* between a successful init and final */
    bool data_seen;           /* AAD is only accepted before the data */
    /* The key ctx holds a schedule for (secmem copy, to recognise it): a
     * new operation with the same key loads only the IV. */
    uint8_t *key;
    size_t keylen;
};

CK_RV crypto_aead_new(crypto_aead **out)
{
    crypto_aead *a = calloc(1, sizeof(*a));
    ENSURE(a != NULL, CKR_HOST_MEMORY);
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL) {
        free(a);
        return CKR_HOST_MEMORY;
    }
    *out = a;
    return CKR_OK;
}

void crypto_aead_free(crypto_aead *a)
{
    if (a == NULL)
        return;
    /* EVP_CIPHER_CTX_free cleanses the key schedule it holds. */
    EVP_CIPHER_CTX_free(a->ctx);
    secmem_free(a->key, a->keylen);
    free(a);
}

static CK_RV pick(const crypto_lib *lib, crypto_aead_alg alg, size_t keylen, size_t ivlen,
                  const EVP_CIPHER **cipher)
{
    if (alg == AEAD_AES_GCM) {
        int i = crypto_aes_index(keylen);
        ENSURE(i >= 0, CKR_KEY_SIZE_RANGE);
        ENSURE(ivlen >= 1 && ivlen <= GCM_IV_MAX, CKR_MECHANISM_PARAM_INVALID);
        *cipher = lib->cipher[CI_GCM + i];
        return CKR_OK;
    }
    if (alg == AEAD_CHACHA20_POLY1305 || alg == AEAD_XCHACHA20_POLY1305) {
        ENSURE(keylen == CHACHA_KEY_LEN, CKR_KEY_SIZE_RANGE);
        ENSURE(ivlen == (alg == AEAD_CHACHA20_POLY1305 ? CHACHA_IV_LEN : XCHACHA_IV_LEN),
               CKR_MECHANISM_PARAM_INVALID);
        *cipher = lib->cipher[CI_CHACHA_POLY];
        return CKR_OK;
    }
    return CKR_MECHANISM_INVALID;
}

/* libsodium asks for sodium_init() before any other call. It is done once
 * per process (pthread_once: thread-safe, nothing on the hot path but one
 * load), at the first XChaCha operation; a child after fork inherits it. */
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc = -1;

static void sodium_start(void)
{
    sodium_rc = sodium_init();
}

/* XChaCha20-Poly1305 is ChaCha20-Poly1305 under a subkey: HChaCha20(key,
 * nonce[0..15]) with the 96-bit nonce 00000000 || nonce[16..23]
 * (draft-irtf-cfrg-xchacha-03 sec. 2.3). The subkey is as secret as the
 * key, so both stack copies are wiped before returning. */
static CK_RV xchacha_load(crypto_aead *a, bool encrypt, const uint8_t *key, const uint8_t *iv)
{
    CK_RV rv = CKR_OK;
    uint8_t subkey[CHACHA_KEY_LEN];
    uint8_t nonce[CHACHA_IV_LEN] = { 0 };

    pthread_once(&sodium_once, sodium_start);
    ENSURE(sodium_rc >= 0, CKR_FUNCTION_FAILED);
    ENSURE_OUT(crypto_core_hchacha20(subkey, iv, key, NULL) == 0, CKR_FUNCTION_FAILED);
    memcpy(nonce + 4, iv + HCHACHA_IN_LEN, XCHACHA_IV_LEN - HCHACHA_IN_LEN);
    if (EVP_CipherInit_ex2(a->ctx, NULL, subkey, nonce, encrypt, NULL) != 1)
        rv = crypto_fail(CKR_FUNCTION_FAILED);
out:
    secmem_wipe(subkey, sizeof(subkey));
    secmem_wipe(nonce, sizeof(nonce));
    return rv;
}

CK_RV crypto_aead_init(crypto_aead *a, crypto_aead_alg alg, bool encrypt,
                       const uint8_t *key, size_t keylen,
                       const uint8_t *iv, size_t ivlen)
{
    const crypto_lib *lib = crypto_lib_get();
    const EVP_CIPHER *cipher = NULL;
    ENSURE(a != NULL && key != NULL && iv != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    a->active = false;
    GUARD(pick(lib, alg, keylen, ivlen, &cipher));
    /* Passing a cipher to EVP_CipherInit_ex2 rebuilds the provider context
     * (an allocation); with the same cipher as before, pass NULL and only
     * key and IV are loaded. */
    if (cipher != a->cipher) {
        a->cipher = NULL;
        secmem_free(a->key, a->keylen);
        a->key = NULL;
        if (EVP_CipherInit_ex2(a->ctx, cipher, NULL, NULL, encrypt, NULL) != 1)
            return crypto_fail(CKR_FUNCTION_FAILED);
        a->cipher = cipher;
        a->ivlen = (size_t)EVP_CIPHER_get_iv_length(cipher);
    }
    if (alg == AEAD_XCHACHA20_POLY1305) {
        /* The cipher is ChaCha20-Poly1305 with its fixed 12-byte nonce. */
        /* The context now holds a per-nonce subkey: forget the cached key. */
        secmem_free(a->key, a->keylen);
        a->key = NULL;
        CK_RV rv = xchacha_load(a, encrypt, key, iv);
        if (rv != CKR_OK) {
            a->cipher = NULL;
            return rv;
        }
    } else {
        if (ivlen != a->ivlen) {
            /* SP 800-38D sec. 8.2: IVs other than 96 bits go through GHASH;
             * the length must be set before the IV is loaded. */
            OSSL_PARAM p[] = {
                OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen),
                OSSL_PARAM_construct_end(),
            };
            if (EVP_CIPHER_CTX_set_params(a->ctx, p) != 1) {
                a->cipher = NULL;
                return crypto_fail(CKR_MECHANISM_PARAM_INVALID);
            }
            a->ivlen = ivlen;
        }
        /* The same key as the last operation on this context (a session
         * encrypting many records): keep the key schedule and GHASH key,
         * load the IV only. Compared in constant time. */
        bool same = a->key != NULL && a->keylen == keylen && ct_memeq(a->key, key, keylen);
        if (EVP_CipherInit_ex2(a->ctx, NULL, same ? NULL : key, iv, encrypt, NULL) != 1) {
            a->cipher = NULL;
            secmem_free(a->key, a->keylen);
            a->key = NULL;
            return crypto_fail(CKR_FUNCTION_FAILED);
        }
        if (!same) {
            secmem_free(a->key, a->keylen);
            a->key = secmem_dup(key, keylen);
            a->keylen = a->key != NULL ? keylen : 0;
        }
    }
    a->alg = alg;
    a->encrypt = encrypt;
    a->data_seen = false;
    a->active = true;
    return CKR_OK;
}

/* EVP_CipherUpdate in int-sized pieces; out == NULL feeds AAD. */
static CK_RV feed(crypto_aead *a, const uint8_t *in, size_t len, uint8_t *out)
{
    while (len > 0) {
        size_t n = len < CRYPTO_CHUNK ? len : CRYPTO_CHUNK;
        int outl = 0;
        if (EVP_CipherUpdate(a->ctx, out, &outl, in, (int)n) != 1 ||
            (out != NULL && (size_t)outl != n)) {
            a->active = false;
            return crypto_fail(CKR_FUNCTION_FAILED);
        }
        in += n;
        out = out != NULL ? out + n : NULL;
        len -= n;
    }
    return CKR_OK;
}

CK_RV crypto_aead_aad(crypto_aead *a, const uint8_t *aad, size_t aadlen)
{
    ENSURE(a != NULL && (aad != NULL || aadlen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(a->active, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(!a->data_seen, CKR_FUNCTION_FAILED);
    return feed(a, aad, aadlen, NULL);
}

CK_RV crypto_aead_update(crypto_aead *a, const uint8_t *in, size_t inlen, uint8_t *out)
{
    ENSURE(a != NULL && ((in != NULL && out != NULL) || inlen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(a->active, CKR_OPERATION_NOT_INITIALIZED);
    a->data_seen = true;
    return feed(a, in, inlen, out);
}

/* RFC 8439 defines only the full 16-byte Poly1305 tag (XChaCha too); GCM
 * allows 4..16 (SP 800-38D sec. 5.2.1.2; 4 and 8 only under its Appendix C
 * limits). */
static bool tag_ok(const crypto_aead *a, size_t taglen)
{
    if (a->alg != AEAD_AES_GCM)
        return taglen == TAG_MAX;
    return taglen >= TAG_MIN && taglen <= TAG_MAX;
}

CK_RV crypto_aead_final_encrypt(crypto_aead *a, uint8_t *tag, size_t taglen)
{
    uint8_t none[TAG_MAX];
    int outl = 0;
    ENSURE(a != NULL && tag != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(a->active && a->encrypt, CKR_OPERATION_NOT_INITIALIZED);
    a->active = false;
    ENSURE(tag_ok(a, taglen), CKR_ARGUMENTS_BAD);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, taglen),
        OSSL_PARAM_construct_end(),
    };
    /* Stream AEADs write nothing at final; `none` only satisfies the API. */
    if (EVP_CipherFinal_ex(a->ctx, none, &outl) != 1 || outl != 0 ||
        EVP_CIPHER_CTX_get_params(a->ctx, p) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    return CKR_OK;
}

CK_RV crypto_aead_final_decrypt(crypto_aead *a, const uint8_t *tag, size_t taglen)
{
    uint8_t none[TAG_MAX];
    int outl = 0;
    ENSURE(a != NULL && tag != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(a->active && !a->encrypt, CKR_OPERATION_NOT_INITIALIZED);
    a->active = false;
    ENSURE(tag_ok(a, taglen), CKR_ARGUMENTS_BAD);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag, taglen),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_CIPHER_CTX_set_params(a->ctx, p) != 1)
        return crypto_fail(CKR_FUNCTION_FAILED);
    /* The tag comparison inside OpenSSL is constant-time (CRYPTO_memcmp). */
    if (EVP_CipherFinal_ex(a->ctx, none, &outl) != 1)
        return crypto_fail(CKR_ENCRYPTED_DATA_INVALID);
    return CKR_OK;
}

static CK_RV seal_run(bool encrypt, const uint8_t key[32], const uint8_t *nonce,
                      const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t len,
                      uint8_t *out, uint8_t *tag_out, const uint8_t *tag_in)
{
    CK_RV rv;
    crypto_aead *a = NULL;
    GUARD_OUT(crypto_aead_new(&a));
    GUARD_OUT(crypto_aead_init(a, AEAD_AES_GCM, encrypt, key, 32, nonce, SEAL_NONCE_LEN));
    GUARD_OUT(crypto_aead_aad(a, aad, aadlen));
    GUARD_OUT(crypto_aead_update(a, in, len, out));
    rv = encrypt ? crypto_aead_final_encrypt(a, tag_out, TAG_MAX)
                 : crypto_aead_final_decrypt(a, tag_in, TAG_MAX);
out:
    crypto_aead_free(a);
    return rv;
}

CK_RV crypto_seal(const uint8_t key[32], const uint8_t *aad, size_t aadlen,
                  const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    ENSURE(key != NULL && out != NULL && (pt != NULL || ptlen == 0), CKR_ARGUMENTS_BAD);
    ENSURE(ptlen <= SIZE_MAX - CRYPTO_SEAL_OVERHEAD, CKR_DATA_LEN_RANGE);
    /* A fresh random 96-bit nonce per seal (SP 800-38D sec. 8.2.2); seals
     * per key stay far below the 2^32 bound of sec. 8.3. */
    GUARD(crypto_random(out, SEAL_NONCE_LEN));
    return seal_run(true, key, out, aad, aadlen, pt, ptlen, out + SEAL_NONCE_LEN,
                    out + SEAL_NONCE_LEN + ptlen, NULL);
}

CK_RV crypto_unseal(const uint8_t key[32], const uint8_t *aad, size_t aadlen,
                    const uint8_t *in, size_t inlen, uint8_t *out)
{
    ENSURE(key != NULL && in != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(inlen >= CRYPTO_SEAL_OVERHEAD, CKR_ENCRYPTED_DATA_LEN_RANGE);
    size_t ptlen = inlen - CRYPTO_SEAL_OVERHEAD;
    ENSURE(out != NULL || ptlen == 0, CKR_ARGUMENTS_BAD);
    CK_RV rv = seal_run(false, key, in, aad, aadlen, in + SEAL_NONCE_LEN, ptlen, out,
                        NULL, in + SEAL_NONCE_LEN + ptlen);
    /* Plaintext that did not authenticate must not survive. */
    if (rv != CKR_OK)
        secmem_wipe(out, ptlen);
    return rv;
}
