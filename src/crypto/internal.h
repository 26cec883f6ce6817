/* Private to src/crypto/: the library context and the algorithm objects
 * fetched from it once at crypto_init (ossl.c), shared read-only by every
 * operation so the hot path never fetches, never looks up a name. */
#ifndef CUSTOS_CRYPTO_INTERNAL_H
#define CUSTOS_CRYPTO_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>

#include "crypto/crypto.h"

/* Fetched ciphers. AES rows come in threes (128, 192, 256-bit keys): add
 * crypto_aes_index(keylen) to the family's first row. */
typedef enum cipher_id {
    CI_GCM = 0,
    CI_ECB = 3,
    CI_CBC = 6,
    CI_CTR = 9,
    CI_WRAP = 12,
    CI_WRAP_PAD = 15,
    CI_CHACHA_POLY = 18,
    CI_COUNT,
} cipher_id;

#define MD_SLOTS (MD_SHA3_512 + 1) /* indexed by crypto_md_alg; 0 unused */

typedef struct crypto_lib {
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *provider;
    EVP_CIPHER *cipher[CI_COUNT];
    EVP_MD *md[MD_SLOTS];
    EVP_MAC *hmac;
    /* An HMAC context per digest with the digest set and an empty key:
     * crypto_hmac_new duplicates it, which skips the digest fetch that
     * setting OSSL_MAC_PARAM_DIGEST performs. */
    EVP_MAC_CTX *hmac_tpl[MD_SLOTS];
    EVP_KDF *pbkdf2, *scrypt;
} crypto_lib;

/* The live library, or NULL before crypto_init / after crypto_fini. */
const crypto_lib *crypto_lib_get(void);
/* 0, 1, 2 for 16, 24, 32-byte AES keys; -1 otherwise. */
int crypto_aes_index(size_t keylen);
/* Drop what OpenSSL queued on this thread's error stack (it belongs to no
 * one the caller can show it to) and return rv. */
CK_RV crypto_fail(CK_RV rv);
/* OpenSSL's name for a digest; NULL for an unknown alg. */
const char *crypto_md_name(crypto_md_alg alg);

/* EVP update calls take an int length: feed larger inputs in pieces. */
#define CRYPTO_CHUNK ((size_t)1 << 30)

#endif
