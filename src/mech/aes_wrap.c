/* AES key wrap for C_WrapKey/C_UnwrapKey: RFC 3394 (CKM_AES_KEY_WRAP) and
 * RFC 5649 (CKM_AES_KEY_WRAP_KWP, and CKM_AES_KEY_WRAP_PAD, which Custos
 * treats as RFC 5649 like 2.40-era tokens; docs/mechanisms.md). */
#include <string.h>

#include "mech/internal.h"

/* RFC 5649 sec. 3: the message length indicator is 32 bits. */
#define KWP_MAX_KEY 0xFFFFFFFFul

static const mech_kw_family *fam(const mech_desc *d)
{
    return d->family;
}

/* The parameter is optional; when present it must be the RFC's own IV
 * (PKCS#11 3.2, AES key wrap: the parameter is an optional IV). Custos offers
 * no other IV: a custom one buys nothing and breaks interoperability. */
static CK_RV parse(const mech_desc *d, const CK_MECHANISM *m)
{
    const mech_kw_family *f = fam(d);

    if (m->pParameter == NULL && m->ulParameterLen == 0)
        return CKR_OK;
    ENSURE(m->pParameter != NULL && m->ulParameterLen == f->ivlen, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(memcmp(m->pParameter, f->iv, f->ivlen) == 0, CKR_MECHANISM_PARAM_INVALID);
    return CKR_OK;
}

static CK_RV check_param(const mech_desc *d, const CK_MECHANISM *m, mech_op op)
{
    ENSURE(mech_op_allowed(d, op), CKR_MECHANISM_INVALID);
    return parse(d, m);
}

/* RFC 3394 sec. 2: n >= 2 64-bit blocks; RFC 5649: 1 .. 2^32 - 1 bytes. */
static bool wrappable(const mech_kw_family *f, size_t keylen)
{
    if (f->pad)
        return keylen >= 1 && keylen <= KWP_MAX_KEY;
    return keylen >= 16 && keylen % 8 == 0;
}

static size_t wrapped_len(const mech_desc *d, const CK_MECHANISM *m, size_t keylen)
{
    const mech_kw_family *f = fam(d);

    if (!wrappable(f, keylen))
        return 0;
    return crypto_kw_wrapped_len(f->pad, keylen);
}

/* A KEK of the wrong type or size, in the error code of the direction. */
static CK_RV check_kek(const mech_desc *d, const mech_key *kek, CK_RV size_rv, CK_RV type_rv)
{
    ENSURE(kek != NULL && kek->bytes != NULL, CKR_ARGUMENTS_BAD);
    ENSURE(mech_accepts_key(d, kek->type), type_rv);
    ENSURE(mech_key_size_ok(d, kek->len), size_rv);
    return CKR_OK;
}

static CK_RV wrap(const mech_desc *d, const CK_MECHANISM *m, const mech_key *kek,
                  const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    const mech_kw_family *f = fam(d);

    *outlen = 0;
    GUARD(parse(d, m));
    GUARD(check_kek(d, kek, CKR_WRAPPING_KEY_SIZE_RANGE, CKR_WRAPPING_KEY_TYPE_INCONSISTENT));
    ENSURE(wrappable(f, inlen), CKR_KEY_SIZE_RANGE);
    return crypto_kw_wrap(f->pad, kek->bytes, kek->len, in, inlen, out, outlen);
}

static CK_RV unwrap(const mech_desc *d, const CK_MECHANISM *m, const mech_key *kek,
                    const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    const mech_kw_family *f = fam(d);
    size_t min = f->pad ? 16 : 24;
    CK_RV rv;

    *outlen = 0;
    GUARD(parse(d, m));
    GUARD(check_kek(d, kek, CKR_UNWRAPPING_KEY_SIZE_RANGE,
                    CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT));
    /* Both RFCs produce whole 64-bit blocks, at least two (KWP) or three
     * (KW: two key blocks and the integrity block). */
    ENSURE(inlen >= min && inlen % 8 == 0, CKR_WRAPPED_KEY_LEN_RANGE);
    ENSURE(!f->pad || inlen - 8 <= KWP_MAX_KEY + 7, CKR_WRAPPED_KEY_LEN_RANGE);
    /* crypto_kw_unwrap wipes whatever a failed check left in out. */
    rv = crypto_kw_unwrap(f->pad, kek->bytes, kek->len, in, inlen, out, outlen);
    if (rv != CKR_OK)
        *outlen = 0;
    return rv;
}

const mech_ops mech_aes_wrap_ops = {
    .check_param = check_param,
    .wrapped_len = wrapped_len,
    .wrap = wrap,
    .unwrap = unwrap,
};
