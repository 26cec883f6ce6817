/* The unauthenticated AES modes, kept for old clients and only reachable
 * when policy enables MECH_LEGACY rows: ECB, CBC, CBC with PKCS#7 padding
 * (PKCS#11 3.2, AES) and CTR (CK_AES_CTR_PARAMS). */
#include <stdlib.h>
#include <string.h>

#include "mech/internal.h"

#define AES_BLOCK 16u

typedef struct block_ctx {
    struct mech_ctx base;
    crypto_block *blk;
    crypto_block_mode mode;
    uint64_t total;      /* input bytes so far */
    uint64_t ctr_blocks; /* CTR: counter values left before the counter wraps */
    bool finished;
} block_ctx;

/* The parameter of each mode, checked and reduced to an IV / initial counter
 * block. ctr_blocks: how many blocks the ulCounterBits-bit counter can still
 * count (UINT64_MAX standing for "more than any input can need"). */
typedef struct block_param {
    const uint8_t *iv;
    size_t ivlen;
    uint64_t ctr_blocks;
} block_param;

static crypto_block_mode mode_of(const mech_desc *d)
{
    return *(const crypto_block_mode *)d->family;
}

/* PKCS#11 3.2, AES-CTR: the low ulCounterBits bits of cb are the
 * counter. The counter must not wrap into the nonce part: the number of
 * blocks left is 2^bits minus the counter's start value. */
static uint64_t counter_room(const uint8_t cb[16], CK_ULONG bits)
{
    uint64_t low = 0;

    for (unsigned i = 8; i < 16; i++)
        low = low << 8 | cb[i];
    if (bits >= 128)
        return UINT64_MAX; /* the whole block counts: wrapping is harmless */
    if (bits > 64) {
        /* Any zero among the counter bits above the low 64 leaves room
         * beyond 2^64 blocks; only all ones there limits us to 2^64 - low. */
        for (CK_ULONG b = 64; b < bits; b++)
            if (!(cb[15 - b / 8] >> (b % 8) & 1))
                return UINT64_MAX;
    }
    if (bits >= 64)
        return low == 0 ? UINT64_MAX : 0 - low;
    return (((uint64_t)1) << bits) - (low & ((((uint64_t)1) << bits) - 1));
}

static CK_RV parse(const mech_desc *d, const CK_MECHANISM *m, block_param *p)
{
    p->iv = NULL;
    p->ivlen = 0;
    p->ctr_blocks = UINT64_MAX;
    switch (mode_of(d)) {
    case BLOCK_AES_ECB:
        return mech_no_param(m);
    case BLOCK_AES_CBC:
    case BLOCK_AES_CBC_PAD:
        ENSURE(m->pParameter != NULL && m->ulParameterLen == AES_BLOCK,
               CKR_MECHANISM_PARAM_INVALID);
        p->iv = m->pParameter;
        p->ivlen = AES_BLOCK;
        return CKR_OK;
    case BLOCK_AES_CTR: {
        const CK_AES_CTR_PARAMS *cp = m->pParameter;
        CK_ULONG bits;
        ENSURE(cp != NULL && m->ulParameterLen == sizeof(CK_AES_CTR_PARAMS),
               CKR_MECHANISM_PARAM_INVALID);
        memcpy(&bits, &cp->ulCounterBits, sizeof(bits));
        ENSURE(bits >= 1 && bits <= 128, CKR_MECHANISM_PARAM_INVALID);
        p->iv = cp->cb;
        p->ivlen = AES_BLOCK;
        p->ctr_blocks = counter_room(cp->cb, bits);
        return CKR_OK;
    }
    }
    return CKR_MECHANISM_INVALID;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    block_param p;

    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return parse(d, m, &p);
}

static void block_free(mech_ctx *mc)
{
    block_ctx *c = MECH_CTX_AS(block_ctx, mc);

    if (c == NULL)
        return;
    crypto_block_free(c->blk);
    free(c);
}

static CK_RV init(const mech_desc *d, const CK_MECHANISM *m, mech_op op, const mech_key *key,
                  mech_ctx **out)
{
    CK_RV rv;
    block_param p;
    block_ctx *c = NULL;

    ENSURE(op == MECH_OP_ENCRYPT || op == MECH_OP_DECRYPT, CKR_MECHANISM_INVALID);
    GUARD(parse(d, m, &p));
    GUARD(mech_check_key(d, key));
    c = calloc(1, sizeof(*c));
    ENSURE(c != NULL, CKR_HOST_MEMORY);
    c->base.ops = &mech_aes_block_ops;
    c->base.op = op;
    c->mode = mode_of(d);
    c->ctr_blocks = p.ctr_blocks;
    GUARD_OUT(crypto_block_new(&c->blk));
    GUARD_OUT(crypto_block_init(c->blk, c->mode, op == MECH_OP_ENCRYPT, key->bytes, key->len,
                                p.iv, p.ivlen));
    *out = &c->base;
    c = NULL;
out:
    block_free(c ? &c->base : NULL);
    return rv;
}

/* crypto_block_update wants room for inlen + 16 and crypto_block_final for
 * 16 (OpenSSL holds back a block when unpadding), so these are upper bounds,
 * which PKCS#11 3.2 sec. 5.2 allows for a size query. */
static size_t out_len(mech_ctx *mc, bool final, size_t inlen)
{
    if (final)
        return AES_BLOCK;
    return inlen > SIZE_MAX - AES_BLOCK ? SIZE_MAX : inlen + AES_BLOCK;
}

/* The length error for a partial block, in the direction's own code. */
static CK_RV len_range(const block_ctx *c)
{
    return c->base.op == MECH_OP_ENCRYPT ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
}

/* Would the whole input (total bytes) fit the modes' rules at the end? */
static CK_RV check_total(const block_ctx *c, uint64_t total)
{
    switch (c->mode) {
    case BLOCK_AES_ECB:
    case BLOCK_AES_CBC:
        ENSURE(total % AES_BLOCK == 0, len_range(c));
        return CKR_OK;
    case BLOCK_AES_CBC_PAD:
        /* Padded ciphertext is whole blocks, at least one. */
        ENSURE(c->base.op == MECH_OP_ENCRYPT || (total % AES_BLOCK == 0 && total > 0),
               CKR_ENCRYPTED_DATA_LEN_RANGE);
        return CKR_OK;
    case BLOCK_AES_CTR:
        return CKR_OK;
    }
    return CKR_GENERAL_ERROR;
}

static CK_RV update(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t *outlen)
{
    block_ctx *c = MECH_CTX_AS(block_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(inlen <= UINT64_MAX - c->total, len_range(c));
    if (c->mode == BLOCK_AES_CTR && c->ctr_blocks != UINT64_MAX) {
        uint64_t t = c->total + inlen;
        ENSURE(t / AES_BLOCK + (t % AES_BLOCK != 0) <= c->ctr_blocks, len_range(c));
    }
    GUARD(crypto_block_update(c->blk, in, inlen, out, outlen));
    c->total += inlen;
    return CKR_OK;
}

static CK_RV final(mech_ctx *mc, uint8_t *out, size_t *outlen)
{
    block_ctx *c = MECH_CTX_AS(block_ctx, mc);

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    c->finished = true;
    GUARD(check_total(c, c->total));
    return crypto_block_final(c->blk, out, outlen);
}

/* Single part: refuse a bad length before writing anything (PKCS#11 3.2
 *, C_Encrypt: CKR_DATA_LEN_RANGE). */
static CK_RV oneshot(mech_ctx *mc, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t *outlen)
{
    block_ctx *c = MECH_CTX_AS(block_ctx, mc);
    size_t n, m;

    *outlen = 0;
    ENSURE(!c->finished, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(inlen <= UINT64_MAX - c->total, len_range(c));
    GUARD(check_total(c, c->total + inlen));
    GUARD(update(mc, in, inlen, out, &n));
    GUARD(final(mc, out + n, &m));
    *outlen = n + m;
    return CKR_OK;
}

const mech_ops mech_aes_block_ops = {
    .check_param = check_param,
    .init = init,
    .out_len = out_len,
    .update = update,
    .final = final,
    .oneshot = oneshot,
    .free = block_free,
};
