/* ChaCha20-Poly1305 (RFC 8439) and XChaCha20-Poly1305
 * (draft-irtf-cfrg-xchacha-03) through C_Encrypt and C_Decrypt as
 * CKM_CHACHA20_POLY1305 (PKCS#11 3.2, ChaCha20-Poly1305): parameter parsing
 * with both nonce-length units, streaming encryption, and decryption that
 * releases plaintext only after the tag verifies, exactly as aes_gcm.c. */
#include <stdlib.h>
#include <string.h>

#include "mech/internal.h"
#include "util/secmem.h"

/* Poly1305 has one tag size (RFC 8439 sec. 2.5); it follows the ciphertext
 * as the GCM tag does. */
#define TAG_LEN 16u
/* RFC 8439 sec. 2.8: a 32-bit block counter starting at 1 gives at most
 * (2^32 - 1) 64-byte blocks per key and nonce (XChaCha: per subkey).
 * OpenSSL would carry the counter into the nonce instead of stopping. */
#define TEXT_MAX ((((uint64_t)1) << 38) - 64)

/* ulNonceLen in either unit, and what it selects. PKCS#11 3.2 gives the
 * length in bits (96, or 192 for XChaCha20); NSS and pkcs11-tool pass
 * bytes (12, 24). No value is in both sets, so both are accepted as
 * themselves (INTEROP.md). The standard's third length, 64 bits (8 bytes),
 * is the original ChaCha20-Poly1305 with a 64-bit nonce and 64-bit
 * counter: not the IETF construction of RFC 8439, and not something
 * OpenSSL's EVP offers, so it stays out of the table and is
 * CKR_MECHANISM_PARAM_INVALID like any other length. */
typedef struct nonce_unit {
    CK_ULONG len;          /* as the caller wrote it */
    size_t bytes;
    crypto_aead_alg alg;
} nonce_unit;

static const nonce_unit NONCES[] = {
    { 96, 12, AEAD_CHACHA20_POLY1305 },
    { 12, 12, AEAD_CHACHA20_POLY1305 },
    { 192, 24, AEAD_XCHACHA20_POLY1305 },
    { 24, 24, AEAD_XCHACHA20_POLY1305 },
};

typedef struct chacha_param {
    crypto_aead_alg alg;
    const uint8_t *nonce;
    size_t noncelen;
    const uint8_t *aad;
    size_t aadlen;
} chacha_param;

typedef struct chacha_ctx {
    struct mech_ctx base;
    crypto_aead *aead;
    uint64_t total;  /* plaintext so far (encryption) */
    bool finished;
    /* Decryption: the whole input, held until final because its last 16
     * bytes are the tag and plaintext must not leave before the tag
     * verifies. Ciphertext only, so ordinary memory. */
    uint8_t *held;
    size_t held_len, held_cap;
} chacha_ctx;

static CK_RV parse(const CK_MECHANISM *m, chacha_param *p)
{
    CK_SALSA20_CHACHA20_POLY1305_PARAMS c;
    const nonce_unit *u = NULL;

    ENSURE(m->pParameter != NULL && m->ulParameterLen == sizeof(c), CKR_MECHANISM_PARAM_INVALID);
    /* memcpy: the client's struct need not be aligned for us. */
    memcpy(&c, m->pParameter, sizeof(c));
    for (size_t i = 0; i < ARRAY_LEN(NONCES); i++)
        if (NONCES[i].len == c.ulNonceLen)
            u = &NONCES[i];
    ENSURE(u != NULL && c.pNonce != NULL, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(c.pAAD != NULL || c.ulAADLen == 0, CKR_MECHANISM_PARAM_INVALID);

    p->alg = u->alg;
    p->nonce = c.pNonce;
    p->noncelen = u->bytes;
    p->aad = c.pAAD;
    p->aadlen = c.ulAADLen;
    return CKR_OK;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    chacha_param p;

    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return parse(m, &p);
}

static bool chacha_aad(const CK_MECHANISM *m, const uint8_t **aad, size_t *len)
{
    chacha_param p;
    if (parse(m, &p) != CKR_OK)
        return false;
    *aad = p.aad;
    *len = p.aadlen;
    return true;
}

/* Everything an operation needs that is not an allocation: shared by init
 * and reinit. */
static CK_RV start(chacha_ctx *c, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                   const mech_key *key)
{
    chacha_param p;

    c->finished = true; /* until the new operation is fully set up */
    ENSURE(op == MECH_OP_ENCRYPT || op == MECH_OP_DECRYPT, CKR_MECHANISM_INVALID);
    GUARD(parse(m, &p));
    GUARD(mech_check_key(d, key));
    GUARD(crypto_aead_init(c->aead, p.alg, op == MECH_OP_ENCRYPT, key->bytes, key->len, p.nonce,
                           p.noncelen));
    if (p.aadlen > 0)
        GUARD(crypto_aead_aad(c->aead, p.aad, p.aadlen));
    c->base.op = op;
    c->total = 0;
    c->held_len = 0;
    c->finished = false;
    return CKR_OK;
}

static void chacha_free(mech_ctx *mc)
{
    chacha_ctx *c = MECH_CTX_AS(chacha_ctx, mc);

    if (c == NULL)
        return;
    crypto_aead_free(c->aead);
    free(c->held);
    free(c);
}

static CK_RV init(const mech_desc *d, const CK_MECHANISM *m, mech_op op, const mech_key *key,
                  mech_ctx **out)
{
    CK_RV rv;
    chacha_ctx *c = calloc(1, sizeof(*c));

    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_chacha_ops;
    GUARD_OUT(crypto_aead_new(&c->aead));
    GUARD_OUT(start(c, d, m, op, key));
    *out = &c->base;
    c = NULL;
out:
    chacha_free(c ? &c->base : NULL);
    return rv;
}

static CK_RV reinit(mech_ctx *mc, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                    const mech_key *key)
{
    ENSURE(mc != NULL && mc->ops == &mech_chacha_ops && d->ops == &mech_chacha_ops,
           CKR_ARGUMENTS_BAD);
    return start(MECH_CTX_AS(chacha_ctx, mc), d, m, op, key);
}

static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    chacha_ctx *c = MECH_CTX_AS(chacha_ctx, mc);
    size_t have;

    if (c->base.op == MECH_OP_ENCRYPT)
        return final ? TAG_LEN : inlen;
    if (!final)
        return 0;
    have = inlen > SIZE_MAX - c->held_len ? SIZE_MAX : c->held_len + inlen;
    return have > TAG_LEN ? have - TAG_LEN : 0;
}

/* Grow the held input for inlen more bytes (doubling, so a long stream of
 * small updates stays linear). */
static CK_RV hold(chacha_ctx *c, const uint8_t *in, size_t inlen)
{
    size_t need;

    if (inlen == 0)
        return CKR_OK;
    ENSURE(inlen <= TEXT_MAX + TAG_LEN - c->held_len, CKR_ENCRYPTED_DATA_LEN_RANGE);
    need = c->held_len + inlen;
    if (need > c->held_cap) {
        size_t cap = c->held_cap ? c->held_cap : 64;
        uint8_t *p;
        while (cap < need)
            cap *= 2;
        p = realloc(c->held, cap);
        ENSURE(p != NULL, CKR_HOST_MEMORY);
        c->held = p;
        c->held_cap = cap;
    }
    memcpy(c->held + c->held_len, in, inlen);
    c->held_len = need;
    return CKR_OK;
}

static CK_RV seal_part(chacha_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out)
{
    ENSURE(inlen <= TEXT_MAX - c->total, CKR_DATA_LEN_RANGE);
    if (inlen > 0)
        GUARD(crypto_aead_update(c->aead, in, inlen, out));
    c->total += inlen;
    return CKR_OK;
}

/* Decrypt ct||tag into out; on any failure wipe what was written, so no
 * unauthenticated plaintext reaches the caller (PKCS#11 3.2,
 * C_Decrypt: CKR_ENCRYPTED_DATA_INVALID). */
static CK_RV decrypt_all(chacha_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t *outlen)
{
    CK_RV rv;
    size_t ctlen;

    *outlen = 0;
    ENSURE(inlen >= TAG_LEN, CKR_ENCRYPTED_DATA_LEN_RANGE);
    ctlen = inlen - TAG_LEN;
    ENSURE(ctlen <= TEXT_MAX, CKR_ENCRYPTED_DATA_LEN_RANGE);
    if (ctlen > 0)
        GUARD_OUT(crypto_aead_update(c->aead, in, ctlen, out));
    GUARD_OUT(crypto_aead_final_decrypt(c->aead, in + ctlen, TAG_LEN));
    *outlen = ctlen;
out:
    if (rv != CKR_OK && ctlen > 0)
        secmem_wipe(out, ctlen);
    return rv;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t *outlen)
{
    chacha_ctx *c = MECH_CTX_AS(chacha_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    if (c->base.op == MECH_OP_DECRYPT)
        return hold(c, in, inlen);
    GUARD(seal_part(c, in, inlen, out));
    *outlen = inlen;
    return CKR_OK;
}

static CK_RV final(mech_ctx *mc, uint8_t *out, size_t *outlen)
{
    chacha_ctx *c = MECH_CTX_AS(chacha_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    if (c->base.op == MECH_OP_DECRYPT)
        return decrypt_all(c, c->held, c->held_len, out, outlen);
    GUARD(crypto_aead_final_encrypt(c->aead, out, TAG_LEN));
    *outlen = TAG_LEN;
    return CKR_OK;
}

/* The single-part path: no copy of the input on decryption. */
static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t *outlen)
{
    chacha_ctx *c = MECH_CTX_AS(chacha_ctx, mc);
    size_t n;

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    if (c->base.op == MECH_OP_DECRYPT && c->held_len == 0) {
        c->finished = true;
        return decrypt_all(c, in, inlen, out, outlen);
    }
    GUARD(update(mc, in, inlen, out, &n));
    GUARD(final(mc, out + n, outlen));
    *outlen += n;
    return CKR_OK;
}

const mech_ops mech_chacha_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .free = chacha_free,
    .reinit = reinit,
    .aad = chacha_aad,
};
