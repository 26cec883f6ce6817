/* AES-GCM through C_Encrypt and C_Decrypt (PKCS#11 3.2, AES-GCM):
 * parameter parsing for both CK_GCM_PARAMS layouts, streaming encryption,
 * and decryption that releases plaintext only after the tag verifies. */
#include <stdlib.h>
#include <string.h>

#include "mech/internal.h"
#include "util/secmem.h"

/* The CK_GCM_PARAMS of PKCS#11 2.40 before its errata, without ulIvBits:
 * Java's SunPKCS11 sends it first (INTEROP.md). 40 bytes on LP64, against
 * 48 for the 3.x layout, so ulParameterLen tells them apart. */
typedef struct gcm_params_short {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm_params_short;

_Static_assert(sizeof(gcm_params_short) != sizeof(CK_GCM_PARAMS),
               "the two CK_GCM_PARAMS layouts must differ in size");

/* Bytes. SP 800-38D allows longer IVs, but OpenSSL 3's GCM keeps the IV in
 * a 128-byte buffer; refusing more here keeps the answer the same
 * (CKR_MECHANISM_PARAM_INVALID) whether or not a key has been looked at. */
#define GCM_IV_MAX 128u
#define GCM_AAD_MAX 0xFFFFFFFFul  /* 2^32 - 1 bytes */
/* SP 800-38D sec. 5.2.1.1: at most 2^39 - 256 bits of plaintext. */
#define GCM_TEXT_MAX ((((uint64_t)1) << 36) - 32)

/* The parameter, whichever layout it came in. */
typedef struct gcm_param {
    const uint8_t *iv;
    size_t ivlen;
    const uint8_t *aad;
    size_t aadlen;
    size_t taglen; /* bytes */
} gcm_param;

typedef struct gcm_ctx {
    struct mech_ctx base;
    crypto_aead *aead;
    size_t taglen;
    uint64_t total;  /* plaintext (encrypt) or input (decrypt) so far */
    bool finished;
    /* Decryption: the whole input, held until final because its last
     * taglen bytes are the tag and plaintext must not leave before the
     * tag verifies. Ciphertext only, so ordinary memory. */
    uint8_t *held;
    size_t held_len, held_cap;
} gcm_ctx;

static CK_RV parse(const CK_MECHANISM *m, gcm_param *p)
{
    CK_ULONG ivlen, ivbits = 0, aadlen, tagbits;
    CK_BYTE_PTR iv, aad;

    ENSURE(m->pParameter != NULL, CKR_MECHANISM_PARAM_INVALID);
    /* memcpy: the client's struct need not be aligned for us. */
    if (m->ulParameterLen == sizeof(CK_GCM_PARAMS)) {
        CK_GCM_PARAMS g;
        memcpy(&g, m->pParameter, sizeof(g));
        iv = g.pIv, ivlen = g.ulIvLen, ivbits = g.ulIvBits;
        aad = g.pAAD, aadlen = g.ulAADLen, tagbits = g.ulTagBits;
    } else if (m->ulParameterLen == sizeof(gcm_params_short)) {
        gcm_params_short g;
        memcpy(&g, m->pParameter, sizeof(g));
        iv = g.pIv, ivlen = g.ulIvLen;
        aad = g.pAAD, aadlen = g.ulAADLen, tagbits = g.ulTagBits;
    } else {
        return CKR_MECHANISM_PARAM_INVALID;
    }

    ENSURE(ivlen >= 1 && ivlen <= GCM_IV_MAX && iv != NULL, CKR_MECHANISM_PARAM_INVALID);
    /* ulIvBits is informational (3.x errata); when given it must agree. */
    ENSURE(ivbits == 0 || ivbits == ivlen * 8, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(aadlen <= GCM_AAD_MAX && (aad != NULL || aadlen == 0), CKR_MECHANISM_PARAM_INVALID);
    /* SP 800-38D sec. 5.2.1.2 and appendix C: tags shorter than 96 bits
     * need limits on message length and invocations that a token cannot
     * enforce for its callers, so Custos refuses 32- and 64-bit tags. */
    ENSURE(tagbits >= 96 && tagbits <= 128 && tagbits % 8 == 0, CKR_MECHANISM_PARAM_INVALID);

    p->iv = iv;
    p->ivlen = ivlen;
    p->aad = aad;
    p->aadlen = aadlen;
    p->taglen = tagbits / 8;
    return CKR_OK;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    gcm_param p;

    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return parse(m, &p);
}

static bool gcm_aad(const CK_MECHANISM *m, const uint8_t **aad, size_t *len)
{
    gcm_param p;
    if (parse(m, &p) != CKR_OK)
        return false;
    *aad = p.aad;
    *len = p.aadlen;
    return true;
}

/* Everything an operation needs that is not an allocation: shared by init
 * and reinit. */
static CK_RV start(gcm_ctx *c, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                   const mech_key *key)
{
    gcm_param p;

    c->finished = true; /* until the new operation is fully set up */
    ENSURE(op == MECH_OP_ENCRYPT || op == MECH_OP_DECRYPT, CKR_MECHANISM_INVALID);
    GUARD(parse(m, &p));
    GUARD(mech_check_key(d, key));
    GUARD(crypto_aead_init(c->aead, AEAD_AES_GCM, op == MECH_OP_ENCRYPT, key->bytes, key->len,
                           p.iv, p.ivlen));
    if (p.aadlen > 0)
        GUARD(crypto_aead_aad(c->aead, p.aad, p.aadlen));
    c->base.op = op;
    c->taglen = p.taglen;
    c->total = 0;
    c->held_len = 0;
    c->finished = false;
    return CKR_OK;
}

static void gcm_free(mech_ctx *mc)
{
    gcm_ctx *c = MECH_CTX_AS(gcm_ctx, mc);

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
    gcm_ctx *c = calloc(1, sizeof(*c));

    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_aes_gcm_ops;
    GUARD_OUT(crypto_aead_new(&c->aead));
    GUARD_OUT(start(c, d, m, op, key));
    *out = &c->base;
    c = NULL;
out:
    gcm_free(c ? &c->base : NULL);
    return rv;
}

static CK_RV reinit(mech_ctx *mc, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                    const mech_key *key)
{
    ENSURE(mc != NULL && mc->ops == &mech_aes_gcm_ops && d->ops == &mech_aes_gcm_ops,
           CKR_ARGUMENTS_BAD);
    return start(MECH_CTX_AS(gcm_ctx, mc), d, m, op, key);
}

static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    gcm_ctx *c = MECH_CTX_AS(gcm_ctx, mc);
    size_t have;

    if (c->base.op == MECH_OP_ENCRYPT)
        return final ? c->taglen : inlen;
    if (!final)
        return 0;
    have = inlen > SIZE_MAX - c->held_len ? SIZE_MAX : c->held_len + inlen;
    return have > c->taglen ? have - c->taglen : 0;
}

/* Grow the held input for inlen more bytes (doubling, so a long stream of
 * small updates stays linear). */
static CK_RV hold(gcm_ctx *c, const uint8_t *in, size_t inlen)
{
    size_t need;

    if (inlen == 0)
        return CKR_OK;
    ENSURE(inlen <= GCM_TEXT_MAX + c->taglen - c->held_len, CKR_ENCRYPTED_DATA_LEN_RANGE);
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

static CK_RV seal_part(gcm_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out)
{
    ENSURE(inlen <= GCM_TEXT_MAX - c->total, CKR_DATA_LEN_RANGE);
    if (inlen > 0)
        GUARD(crypto_aead_update(c->aead, in, inlen, out));
    c->total += inlen;
    return CKR_OK;
}

/* Decrypt ct||tag into out; on any failure wipe what was written, so no
 * unauthenticated plaintext reaches the caller (PKCS#11 3.2,
 * C_Decrypt: CKR_ENCRYPTED_DATA_INVALID). */
static CK_RV decrypt_all(gcm_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    CK_RV rv;
    size_t ctlen;

    *outlen = 0;
    ENSURE(inlen >= c->taglen, CKR_ENCRYPTED_DATA_LEN_RANGE);
    ctlen = inlen - c->taglen;
    ENSURE(ctlen <= GCM_TEXT_MAX, CKR_ENCRYPTED_DATA_LEN_RANGE);
    if (ctlen > 0)
        GUARD_OUT(crypto_aead_update(c->aead, in, ctlen, out));
    GUARD_OUT(crypto_aead_final_decrypt(c->aead, in + ctlen, c->taglen));
    *outlen = ctlen;
out:
    if (rv != CKR_OK && ctlen > 0)
        secmem_wipe(out, ctlen);
    return rv;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t *outlen)
{
    gcm_ctx *c = MECH_CTX_AS(gcm_ctx, mc);

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
    gcm_ctx *c = MECH_CTX_AS(gcm_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    if (c->base.op == MECH_OP_DECRYPT)
        return decrypt_all(c, c->held, c->held_len, out, outlen);
    GUARD(crypto_aead_final_encrypt(c->aead, out, c->taglen));
    *outlen = c->taglen;
    return CKR_OK;
}

/* The single-part path: no copy of the input on decryption. */
static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t *outlen)
{
    gcm_ctx *c = MECH_CTX_AS(gcm_ctx, mc);
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

const mech_ops mech_aes_gcm_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .free = gcm_free,
    .reinit = reinit,
    .aad = gcm_aad,
};
