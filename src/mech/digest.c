/* Message digests through C_Digest* (PKCS#11 3.2, SHA-2 and
 * SHA-3): no parameter, no key. SHA-1 is deliberately absent. */
#include <stdlib.h>

#include "mech/internal.h"

typedef struct digest_ctx {
    struct mech_ctx base;
    crypto_md_alg alg;
    crypto_md *md; /* created on the first update: C_Digest never needs it */
    bool finished;
} digest_ctx;

static crypto_md_alg alg_of(const mech_desc *d)
{
    return *(const crypto_md_alg *)d->family;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return mech_no_param(m);
}

static CK_RV init(const mech_desc *d, const CK_MECHANISM *m, mech_op op, const mech_key *key,
                  mech_ctx **out)
{
    digest_ctx *c;

    GUARD(check_param(d, m, op));
    c = calloc(1, sizeof(*c));
    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_digest_ops;
    c->base.op = op;
    c->alg = alg_of(d);
    *out = &c->base;
    return CKR_OK;
}

static void digest_free(mech_ctx *mc)
{
    digest_ctx *c = MECH_CTX_AS(digest_ctx, mc);

    if (c == NULL)
        return;
    crypto_md_free(c->md);
    free(c);
}

static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    return final ? crypto_md_size(MECH_CTX_AS(digest_ctx, mc)->alg) : 0;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t *outlen)
{
    digest_ctx *c = MECH_CTX_AS(digest_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    if (c->md == NULL)
        GUARD(crypto_md_new(c->alg, &c->md));
    return crypto_md_update(c->md, in, inlen);
}

static CK_RV final(mech_ctx *mc, uint8_t *out, size_t *outlen)
{
    digest_ctx *c = MECH_CTX_AS(digest_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    if (c->md == NULL)
        GUARD(crypto_md_new(c->alg, &c->md));
    GUARD(crypto_md_final(c->md, out));
    *outlen = crypto_md_size(c->alg);
    return CKR_OK;
}

static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t *outlen)
{
    digest_ctx *c = MECH_CTX_AS(digest_ctx, mc);
    size_t n;

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    if (c->md != NULL) {
        GUARD(update(mc, in, inlen, NULL, &n));
        return final(mc, out, outlen);
    }
    c->finished = true;
    GUARD(crypto_md_oneshot(c->alg, in, inlen, out));
    *outlen = crypto_md_size(c->alg);
    return CKR_OK;
}

const mech_ops mech_digest_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .free = digest_free,
};
