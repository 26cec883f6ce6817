/* Legacy AES block modes (SP 800-38A): ECB and CBC without padding, CBC with
 * PKCS#7 padding, CTR. Reachable only behind policy; same reusable-context
 * scheme as aead.c. Length errors follow PKCS#11 3.2 sec. 5.2 (C_Encrypt /
 * C_Decrypt): *_LEN_RANGE when the length alone is wrong. */
#include "crypto/internal.h"

#include <stdlib.h>

#define AES_BLOCK 16

struct crypto_block {
    EVP_CIPHER_CTX *ctx;
    const EVP_CIPHER *cipher; /* what ctx is set up for; NULL: set it up again */
    crypto_block_mode mode;
    bool encrypt;
    bool active;
    uint64_t total; /* bytes fed, to tell a bad length from bad padding */
};

static const struct mode_info {
    cipher_id family;
    size_t ivlen;
    bool pad;
    bool whole_blocks; /* input must be a multiple of the block size */
} MODES[] = {
    [BLOCK_AES_ECB] = { CI_ECB, 0, false, true },
    [BLOCK_AES_CBC] = { CI_CBC, AES_BLOCK, false, true },
    [BLOCK_AES_CBC_PAD] = { CI_CBC, AES_BLOCK, true, false },
    [BLOCK_AES_CTR] = { CI_CTR, AES_BLOCK, false, false },
};

CK_RV crypto_block_new(crypto_block **out)
{
    crypto_block *b = calloc(1, sizeof(*b));
    ENSURE(b != NULL, CKR_HOST_MEMORY);
    b->ctx = EVP_CIPHER_CTX_new();
    if (b->ctx == NULL) {
        free(b);
        return CKR_HOST_MEMORY;
    }
    *out = b;
    return CKR_OK;
}

void crypto_block_free(crypto_block *b)
{
    if (b == NULL)
        return;
    EVP_CIPHER_CTX_free(b->ctx); /* cleanses the key schedule */
    free(b);
}

CK_RV crypto_block_init(crypto_block *b, crypto_block_mode mode, bool encrypt,
                        const uint8_t *key, size_t keylen,
                        const uint8_t *iv, size_t ivlen)
{
    const crypto_lib *lib = crypto_lib_get();
    ENSURE(b != NULL && key != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(lib != NULL, CKR_GENERAL_ERROR);
    b->active = false;
    ENSURE(mode >= BLOCK_AES_ECB && mode <= BLOCK_AES_CTR, CKR_MECHANISM_INVALID);
    const struct mode_info *m = &MODES[mode];
    int i = crypto_aes_index(keylen);
    ENSURE(i >= 0, CKR_KEY_SIZE_RANGE);
    ENSURE(ivlen == m->ivlen && (iv != NULL || ivlen == 0), CKR_MECHANISM_PARAM_INVALID);
    const EVP_CIPHER *cipher = lib->cipher[m->family + i];
    /* Same cipher as last time: NULL keeps the provider context (no
     * allocation) and only loads key and IV. */
    if (EVP_CipherInit_ex2(b->ctx, cipher == b->cipher ? NULL : cipher, key,
                           ivlen > 0 ? iv : NULL, encrypt, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(b->ctx, m->pad) != 1) {
        b->cipher = NULL;
        return crypto_fail(CKR_FUNCTION_FAILED);
    }
    b->cipher = cipher;
    b->mode = mode;
    b->encrypt = encrypt;
    b->total = 0;
    b->active = true;
    return CKR_OK;
}

CK_RV crypto_block_update(crypto_block *b, const uint8_t *in, size_t inlen,
                          uint8_t *out, size_t *outlen)
{
    ENSURE(b != NULL && outlen != NULL, CKR_ARGUMENTS_BAD);
    ENSURE((in != NULL && out != NULL) || inlen == 0, CKR_ARGUMENTS_BAD);
    ENSURE(b->active, CKR_OPERATION_NOT_INITIALIZED);
    size_t done = 0;
    while (inlen > 0) {
        size_t n = inlen < CRYPTO_CHUNK ? inlen : CRYPTO_CHUNK;
        int outl = 0;
        if (EVP_CipherUpdate(b->ctx, out + done, &outl, in, (int)n) != 1) {
            b->active = false;
            return crypto_fail(CKR_FUNCTION_FAILED);
        }
        done += (size_t)outl;
        b->total += n;
        in += n;
        inlen -= n;
    }
    *outlen = done;
    return CKR_OK;
}

CK_RV crypto_block_final(crypto_block *b, uint8_t *out, size_t *outlen)
{
    ENSURE(b != NULL && out != NULL && outlen != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(b->active, CKR_OPERATION_NOT_INITIALIZED);
    const struct mode_info *m = &MODES[b->mode];
    b->active = false;
    /* Padded decryption needs at least one whole block, too. */
    bool needs_blocks = m->whole_blocks || (m->pad && !b->encrypt);
    if (needs_blocks && (b->total % AES_BLOCK != 0 || (m->pad && b->total == 0)))
        return b->encrypt ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
    int outl = 0;
    if (EVP_CipherFinal_ex(b->ctx, out, &outl) != 1)
        return crypto_fail(b->encrypt ? CKR_FUNCTION_FAILED : CKR_ENCRYPTED_DATA_INVALID);
    *outlen = (size_t)outl;
    return CKR_OK;
}
