/* The AEAD engine behind AES-GCM and ChaCha20-Poly1305 (PKCS#11 3.2 C_Encrypt
 * and C_Decrypt with the tag after the ciphertext): streaming encryption, and
 * decryption that holds the whole input and releases plaintext only once the
 * tag verifies. A family (aes_gcm.c, chacha.c) only says how to read its
 * parameter (mech_aead_family, behind mech_desc.family). */
#include <stdlib.h>
#include <string.h>

#include "mech/internal.h"
#include "util/secmem.h"

typedef struct aead_ctx {
    struct mech_ctx base;
    const mech_aead_family *fam;
    crypto_aead *aead;
    size_t taglen;
    uint64_t total;  /* plaintext (encryption) so far */
    bool finished;
    /* Decryption: the whole input, held until final because its last
     * taglen bytes are the tag and plaintext must not leave before the
     * tag verifies. Ciphertext only, so ordinary memory. */
    uint8_t *held;
    size_t held_len, held_cap;
} aead_ctx;

static const mech_aead_family *family_of(const mech_desc *d)
{
    return (const mech_aead_family *)d->family;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    mech_aead_param p;

    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return family_of(d)->parse(m, &p);
}

/* The AAD of a parameter, for the audit trail (mech.h). */
static bool aead_aad(const mech_desc *d, const CK_MECHANISM *m, const uint8_t **aad, size_t *len)
{
    mech_aead_param p;
    if (d == NULL || d->ops != &mech_aead_ops || family_of(d)->parse(m, &p) != CKR_OK)
        return false;
    *aad = p.aad;
    *len = p.aadlen;
    return true;
}

/* Everything an operation needs that is not an allocation: shared by init
 * and reinit. */
static CK_RV start(aead_ctx *c, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                   const mech_key *key)
{
    mech_aead_param p;

    c->finished = true; /* until the new operation is fully set up */
    ENSURE(op == MECH_OP_ENCRYPT || op == MECH_OP_DECRYPT, CKR_MECHANISM_INVALID);
    GUARD(family_of(d)->parse(m, &p));
    GUARD(mech_check_key(d, key));
    GUARD(crypto_aead_init(c->aead, p.alg, op == MECH_OP_ENCRYPT, key->bytes, key->len, p.iv,
                           p.ivlen));
    if (p.aadlen > 0)
        GUARD(crypto_aead_aad(c->aead, p.aad, p.aadlen));
    c->fam = family_of(d);
    c->base.op = op;
    c->taglen = p.taglen;
    c->total = 0;
    c->held_len = 0;
    c->finished = false;
    return CKR_OK;
}

static void aead_free(mech_ctx *mc)
{
    aead_ctx *c = MECH_CTX_AS(aead_ctx, mc);

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
    aead_ctx *c = calloc(1, sizeof(*c));

    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_aead_ops;
    GUARD_OUT(crypto_aead_new(&c->aead));
    GUARD_OUT(start(c, d, m, op, key));
    *out = &c->base;
    c = NULL;
out:
    aead_free(c ? &c->base : NULL);
    return rv;
}

static CK_RV reinit(mech_ctx *mc, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                    const mech_key *key)
{
    ENSURE(mc != NULL && mc->ops == &mech_aead_ops && d->ops == &mech_aead_ops, CKR_ARGUMENTS_BAD);
    return start(MECH_CTX_AS(aead_ctx, mc), d, m, op, key);
}

static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    aead_ctx *c = MECH_CTX_AS(aead_ctx, mc);
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
static CK_RV hold(aead_ctx *c, const uint8_t *in, size_t inlen)
{
    size_t need;

    if (inlen == 0)
        return CKR_OK;
    ENSURE(inlen <= c->fam->text_max + c->taglen - c->held_len, CKR_ENCRYPTED_DATA_LEN_RANGE);
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

static CK_RV seal_part(aead_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out)
{
    ENSURE(inlen <= c->fam->text_max - c->total, CKR_DATA_LEN_RANGE);
    if (inlen > 0)
        GUARD(crypto_aead_update(c->aead, in, inlen, out));
    c->total += inlen;
    return CKR_OK;
}

/* Decrypt ct||tag into out; on any failure wipe what was written, so no
 * unauthenticated plaintext reaches the caller (PKCS#11 3.2,
 * C_Decrypt: CKR_ENCRYPTED_DATA_INVALID). */
static CK_RV decrypt_all(aead_ctx *c, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t *outlen)
{
    CK_RV rv;
    size_t ctlen;

    *outlen = 0;
    ENSURE(inlen >= c->taglen, CKR_ENCRYPTED_DATA_LEN_RANGE);
    ctlen = inlen - c->taglen;
    ENSURE(ctlen <= c->fam->text_max, CKR_ENCRYPTED_DATA_LEN_RANGE);
    if (ctlen > 0)
        GUARD_OUT(crypto_aead_update(c->aead, in, ctlen, out));
    GUARD_OUT(crypto_aead_final_decrypt(c->aead, in + ctlen, c->taglen));
    *outlen = ctlen;
out:
    if (rv != CKR_OK && ctlen > 0)
        secmem_wipe(out, ctlen);
    return rv;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    aead_ctx *c = MECH_CTX_AS(aead_ctx, mc);

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
    aead_ctx *c = MECH_CTX_AS(aead_ctx, mc);

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
static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    aead_ctx *c = MECH_CTX_AS(aead_ctx, mc);
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

const mech_ops mech_aead_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .free = aead_free,
    .reinit = reinit,
    .aad = aead_aad,
};
