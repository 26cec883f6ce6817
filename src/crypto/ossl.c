/* The private OpenSSL library context: created, filled with pre-fetched
 * algorithms and torn down here; random bytes come from its DRBG. Custos
 * never touches the default context, which may route back into a PKCS#11
 * provider that loaded Custos itself (INTEROP.md). */
#include "crypto/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>

static const char *const CIPHER_NAMES[CI_COUNT] = {
    [CI_GCM] = "AES-128-GCM",          [CI_GCM + 1] = "AES-192-GCM",
    [CI_GCM + 2] = "AES-256-GCM",      [CI_ECB] = "AES-128-ECB",
    [CI_ECB + 1] = "AES-192-ECB",      [CI_ECB + 2] = "AES-256-ECB",
    [CI_CBC] = "AES-128-CBC",          [CI_CBC + 1] = "AES-192-CBC",
    [CI_CBC + 2] = "AES-256-CBC",      [CI_CTR] = "AES-128-CTR",
    [CI_CTR + 1] = "AES-192-CTR",      [CI_CTR + 2] = "AES-256-CTR",
    [CI_WRAP] = "AES-128-WRAP",        [CI_WRAP + 1] = "AES-192-WRAP",
    [CI_WRAP + 2] = "AES-256-WRAP",    [CI_WRAP_PAD] = "AES-128-WRAP-PAD",
    [CI_WRAP_PAD + 1] = "AES-192-WRAP-PAD", [CI_WRAP_PAD + 2] = "AES-256-WRAP-PAD",
    [CI_CHACHA_POLY] = "ChaCha20-Poly1305",
};

/* init_lock guards refs and the transitions of live; readers on the hot
 * path load live with acquire ordering and no lock. Every successful
 * crypto_init is balanced by one crypto_fini; the last one frees. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static crypto_lib *live;
static unsigned refs;
/* The parent's context as a child last saw it: never freed, only kept
 * reachable so leak checkers in the child see it as intended. */
static crypto_lib *volatile forgotten;

const crypto_lib *crypto_lib_get(void) { return __atomic_load_n(&live, __ATOMIC_ACQUIRE); }

int crypto_aes_index(size_t keylen)
{
    switch (keylen) {
    case 16: return 0;
    case 24: return 1;
    case 32: return 2;
    default: return -1;
    }
}

CK_RV crypto_fail(CK_RV rv)
{
    ERR_clear_error();
    return rv;
}

static void teardown(crypto_lib *lib)
{
    if (lib == NULL)
        return;
    for (size_t i = 0; i < MD_SLOTS; i++) {
        EVP_MAC_CTX_free(lib->hmac_tpl[i]);
        EVP_MD_free(lib->md[i]);
    }
    for (size_t i = 0; i < CI_COUNT; i++)
        EVP_CIPHER_free(lib->cipher[i]);
    EVP_MAC_free(lib->hmac);
    EVP_KDF_free(lib->pbkdf2);
    EVP_KDF_free(lib->scrypt);
    if (lib->provider != NULL)
        OSSL_PROVIDER_unload(lib->provider);
    OSSL_LIB_CTX_free(lib->libctx);
    free(lib);
}

static CK_RV hmac_template(crypto_lib *lib, crypto_md_alg alg)
{
    static const unsigned char empty[1];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)crypto_md_name(alg), 0),
        OSSL_PARAM_construct_end(),
    };
    lib->hmac_tpl[alg] = EVP_MAC_CTX_new(lib->hmac);
    ENSURE(lib->hmac_tpl[alg] != NULL, CKR_HOST_MEMORY);
    ENSURE(EVP_MAC_init(lib->hmac_tpl[alg], empty, 0, params) == 1, CKR_FUNCTION_FAILED);
    return CKR_OK;
}

static CK_RV build(crypto_lib **out)
{
    CK_RV rv = CKR_OK;
    crypto_lib *lib = calloc(1, sizeof(*lib));
    ENSURE_OUT(lib != NULL, CKR_HOST_MEMORY);
    lib->libctx = OSSL_LIB_CTX_new();
    ENSURE_OUT(lib->libctx != NULL, CKR_HOST_MEMORY);
    /* Explicitly, on our context only: no configuration file is read, so
     * no other provider (least of all a PKCS#11 one) is ever activated. */
    lib->provider = OSSL_PROVIDER_load(lib->libctx, "default");
    ENSURE_OUT(lib->provider != NULL, CKR_FUNCTION_FAILED);
    for (size_t i = 0; i < CI_COUNT; i++) {
        lib->cipher[i] = EVP_CIPHER_fetch(lib->libctx, CIPHER_NAMES[i], NULL);
        ENSURE_OUT(lib->cipher[i] != NULL, CKR_FUNCTION_FAILED);
    }
    lib->hmac = EVP_MAC_fetch(lib->libctx, "HMAC", NULL);
    ENSURE_OUT(lib->hmac != NULL, CKR_FUNCTION_FAILED);
    for (crypto_md_alg a = MD_SHA1; a <= MD_SHA3_512; a++) {
        lib->md[a] = EVP_MD_fetch(lib->libctx, crypto_md_name(a), NULL);
        ENSURE_OUT(lib->md[a] != NULL, CKR_FUNCTION_FAILED);
        GUARD_OUT(hmac_template(lib, a));
    }
    lib->pbkdf2 = EVP_KDF_fetch(lib->libctx, "PBKDF2", NULL);
    lib->scrypt = EVP_KDF_fetch(lib->libctx, "SCRYPT", NULL);
    ENSURE_OUT(lib->pbkdf2 != NULL && lib->scrypt != NULL, CKR_FUNCTION_FAILED);
    *out = lib;
    lib = NULL;
out:
    teardown(lib);
    return rv == CKR_OK ? rv : crypto_fail(rv);
}

CK_RV crypto_init(void)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&init_lock);
    if (refs == 0) {
        crypto_lib *lib = NULL;
        rv = build(&lib);
        if (rv == CKR_OK)
            __atomic_store_n(&live, lib, __ATOMIC_RELEASE);
    }
    if (rv == CKR_OK)
        refs++;
    pthread_mutex_unlock(&init_lock);
    return rv;
}

void crypto_fini(void)
{
    crypto_lib *lib = NULL;
    pthread_mutex_lock(&init_lock);
    if (refs > 0 && --refs == 0) {
        lib = live;
        __atomic_store_n(&live, NULL, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_lock);
    teardown(lib);
}

void crypto_forget_after_fork(void)
{
    /* Only the forking thread survives in the child: the lock may be held
     * by a thread that is gone, so it is re-created, not unlocked. The
     * parent's context is dropped unfreed; its DRBG state must not be
     * shared with the parent, and a fresh crypto_init builds a new one. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    init_lock = fresh;
    forgotten = live;
    __atomic_store_n(&live, NULL, __ATOMIC_RELEASE);
    refs = 0;
}

CK_RV crypto_random(void *buf, size_t len)
{
    const crypto_lib *lib = crypto_lib_get();
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    if (len == 0)
        return CKR_OK;
    /* Straight from the private context's DRBG (per thread), not through
     * RAND_bytes_ex: OpenSSL 3.0 sends that to an ENGINE whenever one is the
     * process's default random source, which may be this very token loaded
     * by the libp11 engine (tests/integration/openssl_engine.sh). */
    EVP_RAND_CTX *drbg = RAND_get0_private(lib->libctx);
    ENSURE(drbg != NULL, CKR_FUNCTION_FAILED);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 4096 ? len - off : 4096;
        if (EVP_RAND_generate(drbg, (unsigned char *)buf + off, n, 0, 0, NULL, 0) != 1)
            return crypto_fail(CKR_FUNCTION_FAILED);
        off += n;
    }
    return CKR_OK;
}
