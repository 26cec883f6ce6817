/* AES key wrap through OpenSSL's wrap ciphers: RFC 3394 ("AES-xxx-WRAP")
 * and RFC 5649 with padding ("AES-xxx-WRAP-PAD"); the KEK length picks
 * 128/192/256. Failures map to the PKCS#11 3.2 wrap/unwrap codes. */
#include "crypto/internal.h"

#include "util/secmem.h"

#define KW_SEMIBLOCK 8
/* RFC 5649's message length indicator is 32 bits; EVP takes an int. */
#define KW_MAX_IN ((size_t)1 << 30)

size_t crypto_kw_wrapped_len(bool pad, size_t inlen)
{
    if (!pad)
        return inlen + KW_SEMIBLOCK;
    /* RFC 5649 sec. 4.1: pad to whole semiblocks, then one more (the AIV);
     * an input of 1..8 bytes is still one full AES block. */
    size_t padded = (inlen + KW_SEMIBLOCK - 1) / KW_SEMIBLOCK * KW_SEMIBLOCK;
    return (padded < KW_SEMIBLOCK ? KW_SEMIBLOCK : padded) + KW_SEMIBLOCK;
}

/* One pass through a fresh context: wrapping is rare and never hot. */
static CK_RV run(bool pad, bool wrap, const uint8_t *kek, size_t keklen,
                 const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    CK_RV rv = CKR_OK;
    const crypto_lib *lib = crypto_lib_get();
    EVP_CIPHER_CTX *ctx = NULL;
    int i = crypto_aes_index(keklen), n = 0, fin = 0;
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    ENSURE(i >= 0, wrap ? CKR_WRAPPING_KEY_SIZE_RANGE : CKR_UNWRAPPING_KEY_SIZE_RANGE);
    ctx = EVP_CIPHER_CTX_new();
    ENSURE_OUT(ctx != NULL, CKR_HOST_MEMORY);
    /* No EVP_CIPHER_CTX_FLAG_WRAP_ALLOW: in OpenSSL 3.0 only the legacy
     * (non-provider) path checks it, and these ciphers are fetched. */
    ENSURE_OUT(EVP_CipherInit_ex2(ctx, lib->cipher[(pad ? CI_WRAP_PAD : CI_WRAP) + i], kek,
                                  NULL, wrap, NULL) == 1,
               CKR_FUNCTION_FAILED);
    /* The whole input in one update: the wrap ciphers are not streaming.
     * On unwrap a failed update is the integrity check (RFC 3394 sec.
     * 2.2.3, RFC 5649 sec. 3) saying no. */
    ENSURE_OUT(EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) == 1 && n >= 0,
               wrap ? CKR_FUNCTION_FAILED : CKR_WRAPPED_KEY_INVALID);
    ENSURE_OUT(EVP_CipherFinal_ex(ctx, out + n, &fin) == 1 && fin >= 0,
               wrap ? CKR_FUNCTION_FAILED : CKR_WRAPPED_KEY_INVALID);
    *outlen = (size_t)n + (size_t)fin;
out:
    EVP_CIPHER_CTX_free(ctx);
    if (rv == CKR_OK)
        return rv;
    /* Never leave unverified key material behind. */
    if (!wrap)
        secmem_wipe(out, inlen - KW_SEMIBLOCK);
    return crypto_fail(rv);
}

CK_RV crypto_kw_wrap(bool pad, const uint8_t *kek, size_t keklen,
                     const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    ENSURE(kek != NULL && in != NULL && out != NULL && outlen != NULL, CKR_ARGUMENTS_BAD);
    /* RFC 3394 sec. 2: n >= 2 semiblocks; RFC 5649: at least one octet. */
    bool len_ok = pad ? inlen >= 1 : inlen >= 2 * KW_SEMIBLOCK && inlen % KW_SEMIBLOCK == 0;
    ENSURE(len_ok && inlen <= KW_MAX_IN, CKR_KEY_SIZE_RANGE);
    return run(pad, true, kek, keklen, in, inlen, out, outlen);
}

CK_RV crypto_kw_unwrap(bool pad, const uint8_t *kek, size_t keklen,
                       const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    ENSURE(kek != NULL && in != NULL && out != NULL && outlen != NULL, CKR_ARGUMENTS_BAD);
    size_t min = pad ? 2 * KW_SEMIBLOCK : 3 * KW_SEMIBLOCK;
    ENSURE(inlen >= min && inlen % KW_SEMIBLOCK == 0 && inlen <= KW_MAX_IN + 2 * KW_SEMIBLOCK,
           CKR_WRAPPED_KEY_LEN_RANGE);
    return run(pad, false, kek, keklen, in, inlen, out, outlen);
}
