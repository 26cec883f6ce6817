/* HMAC sign/verify (PKCS#11 3.2, SHA-2 and SHA-3 HMAC): full-length
 * MACs only (the _GENERAL variants are not offered), no parameter, generic
 * secret or matching CKK_*_HMAC keys; verification in constant time. */
#include <stdlib.h>

#include "mech/internal.h"
#include "util/secmem.h"

#define HMAC_MAX 64u /* SHA-512 */

typedef struct hmac_ctx {
    struct mech_ctx base;
    crypto_md_alg alg;
    crypto_hmac *h;
    bool finished;
} hmac_ctx;

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return mech_no_param(m);
}

static void hmac_free(mech_ctx *mc)
{
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);

    if (c == NULL)
        return;
    crypto_hmac_free(c->h);
    free(c);
}

static CK_RV init(const mech_desc *d, const CK_MECHANISM *m, mech_op op, const mech_key *key,
                  mech_ctx **out)
{
    CK_RV rv;
    hmac_ctx *c = NULL;

    GUARD(check_param(d, m, op));
    GUARD(mech_check_key(d, key));
    c = calloc(1, sizeof(*c));
    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_hmac_ops;
    c->base.op = op;
    c->alg = *(const crypto_md_alg *)d->family;
    ENSURE_OUT(crypto_md_size(c->alg) <= HMAC_MAX, CKR_GENERAL_ERROR);
    GUARD_OUT(crypto_hmac_new(c->alg, key->bytes, key->len, &c->h));
    *out = &c->base;
    c = NULL;
out:
    hmac_free(c ? &c->base : NULL);
    return rv;
}

/* The next operation on a context of a finished (or abandoned) one: the
 * same digest, and the key's precomputed states kept if it is the same key. */
static CK_RV reinit(mech_ctx *mc, const mech_desc *d, const CK_MECHANISM *m, mech_op op,
                    const mech_key *key)
{
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);

    ENSURE(c != NULL && mc->ops == &mech_hmac_ops && d->ops == &mech_hmac_ops &&
               c->alg == *(const crypto_md_alg *)d->family,
           CKR_ARGUMENTS_BAD);
    GUARD(check_param(d, m, op));
    GUARD(mech_check_key(d, key));
    c->finished = true; /* until the key is in */
    GUARD(crypto_hmac_restart(c->h, key->bytes, key->len));
    c->base.op = op;
    c->finished = false;
    return CKR_OK;
}

static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);

    return final && c->base.op == MECH_OP_SIGN ? crypto_md_size(c->alg) : 0;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t *outlen)
{
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    return crypto_hmac_update(c->h, in, inlen);
}

static CK_RV final(mech_ctx *mc, uint8_t *out, size_t *outlen)
{
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished && c->base.op == MECH_OP_SIGN, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    GUARD(crypto_hmac_final(c->h, out));
    *outlen = crypto_md_size(c->alg);
    return CKR_OK;
}

static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t *outlen)
{
    size_t n;

    GUARD(update(mc, in, inlen, NULL, &n));
    return final(mc, out, outlen);
}

/* PKCS#11 3.2, C_VerifyFinal: a signature of the wrong length is
 * CKR_SIGNATURE_LEN_RANGE, a wrong one CKR_SIGNATURE_INVALID. */
static CK_RV verify_final(mech_ctx *mc, const uint8_t *sig, size_t siglen)
{
    CK_RV rv;
    hmac_ctx *c = MECH_CTX_AS(hmac_ctx, mc);
    size_t n = crypto_md_size(c->alg);
    uint8_t mac[HMAC_MAX];

    ENSURE(!c->finished && c->base.op == MECH_OP_VERIFY, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    ENSURE(siglen == n, CKR_SIGNATURE_LEN_RANGE);
    ENSURE(sig != NULL, CKR_ARGUMENTS_BAD);
    GUARD_OUT(crypto_hmac_final(c->h, mac));
    ENSURE_OUT(ct_memeq(mac, sig, n), CKR_SIGNATURE_INVALID);
out:
    secmem_wipe(mac, sizeof(mac));
    return rv;
}

const mech_ops mech_hmac_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .verify_final = verify_final,
    .free = hmac_free,
    .reinit = reinit,
};
