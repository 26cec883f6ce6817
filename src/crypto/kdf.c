/* PIN key derivation on the private context: PBKDF2-HMAC-SHA256 (RFC 8018
 * sec. 5.2) and scrypt (RFC 7914), with the parameter ranges crypto.h
 * promises. The output is wiped if derivation fails. */
#include "crypto/internal.h"

#include <openssl/core_names.h>

#include "util/secmem.h"

#define PBKDF2_MIN_ITER 1000 /* SP 800-132 sec. 5.2 */
#define SCRYPT_LOG2N_MIN 10
#define SCRYPT_LOG2N_MAX 22
#define SCRYPT_R_MAX 32
#define SCRYPT_P_MAX 16

/* Scrypt's memory, as OpenSSL counts it: B is p * 128 * r bytes and V is
 * 32 * r * (N + 2) 32-bit words. Its default cap (1 MiB short of 1 GiB) is
 * below what the upper end of the range needs, so the cap is set to the
 * need; at most about 17 GB, within uint64_t. */
static uint64_t scrypt_mem(uint64_t n, uint64_t r, uint64_t p)
{
    return p * 128 * r + 32 * r * (n + 2) * 4;
}

CK_RV crypto_kdf(const crypto_kdf_params *kp, const uint8_t *pin, size_t pinlen,
                 const uint8_t *salt, size_t saltlen, uint8_t *out, size_t outlen)
{
    static const uint8_t empty[1];
    static char sha256[] = "SHA256";
    CK_RV rv = CKR_OK;
    const crypto_lib *lib = crypto_lib_get();
    EVP_KDF_CTX *ctx = NULL;
    OSSL_PARAM params[8];
    size_t np = 0;
    uint64_t iter = 0, n = 0, maxmem = 0;
    uint32_t r = 0, p = 0;
    ENSURE(kp != NULL && out != NULL && outlen > 0, CKR_ARGUMENTS_BAD);
    ENSURE((pin != NULL || pinlen == 0) && salt != NULL && saltlen > 0, CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    /* OpenSSL needs a non-NULL pointer even for an empty PIN. */
    params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                                     (void *)(pinlen > 0 ? pin : empty), pinlen);
    params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    if (kp->alg == KDF_PBKDF2_SHA256) {
        ENSURE(kp->p1 >= PBKDF2_MIN_ITER, CKR_ARGUMENTS_BAD);
        iter = kp->p1;
        params[np++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_ITER, &iter);
        params[np++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, sha256, 0);
        ctx = EVP_KDF_CTX_new(lib->pbkdf2);
    } else if (kp->alg == KDF_SCRYPT) {
        ENSURE(kp->p1 >= SCRYPT_LOG2N_MIN && kp->p1 <= SCRYPT_LOG2N_MAX, CKR_ARGUMENTS_BAD);
        ENSURE(kp->p2 >= 1 && kp->p2 <= SCRYPT_R_MAX, CKR_ARGUMENTS_BAD);
        ENSURE(kp->p3 >= 1 && kp->p3 <= SCRYPT_P_MAX, CKR_ARGUMENTS_BAD);
        n = (uint64_t)1 << kp->p1;
        r = kp->p2;
        p = kp->p3;
        maxmem = scrypt_mem(n, r, p);
        params[np++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
        params[np++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
        params[np++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
        params[np++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
        ctx = EVP_KDF_CTX_new(lib->scrypt);
    } else {
        return CKR_ARGUMENTS_BAD;
    }
    params[np] = OSSL_PARAM_construct_end();
    ENSURE_OUT(ctx != NULL, CKR_HOST_MEMORY);
    ENSURE_OUT(EVP_KDF_derive(ctx, out, outlen, params) == 1, CKR_FUNCTION_FAILED);
out:
    EVP_KDF_CTX_free(ctx); /* cleanses its copies of PIN and salt */
    if (rv != CKR_OK) {
        secmem_wipe(out, outlen);
        return crypto_fail(rv);
    }
    return CKR_OK;
}
