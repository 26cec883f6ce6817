/* Message-based encryption and decryption (PKCS#11 3.0 sec. 5.13-5.16) and
 * authenticated key wrapping (3.2 C_WrapKeyAuthenticated), for AES-GCM and
 * ChaCha20-Poly1305. Each message runs through the same mechanism rows as
 * single-part calls, with a per-message parameter built here. Nonces the
 * token generates come from the key's persistent encryption counter, so a
 * key never sees one of them twice, whichever session or process encrypts
 * (docs/key-families.md, "Nonce discipline"). */
#include <stdlib.h>
#include <string.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/be.h"
#include "util/buf.h"
#include "util/secmem.h"

#define GCM_IV_LEN 12

/* ---- the per-message parameter ------------------------------------------ */

/* What one message needs, whichever mechanism: nonce (in/out), tag (out
 * for encryption, in for decryption). */
typedef struct msg_param {
    CK_BYTE_PTR iv;
    CK_ULONG ivlen;
    CK_ULONG fixed_bits;
    CK_GENERATOR_FUNCTION gen;
    CK_BYTE_PTR tag;
    CK_ULONG taglen;
} msg_param;

static CK_RV parse_param(const mech_desc *d, const void *p, CK_ULONG len, msg_param *out)
{
    ENSURE(p != NULL, CKR_MECHANISM_PARAM_INVALID);
    memset(out, 0, sizeof(*out));
    if (d->type == CKM_AES_GCM) {
        CK_GCM_MESSAGE_PARAMS g;
        ENSURE(len == sizeof(g), CKR_MECHANISM_PARAM_INVALID);
        memcpy(&g, p, sizeof(g));
        ENSURE(g.pIv != NULL && g.ulIvLen >= 1 && g.pTag != NULL, CKR_MECHANISM_PARAM_INVALID);
        ENSURE(g.ulTagBits >= 96 && g.ulTagBits <= 128 && g.ulTagBits % 8 == 0,
               CKR_MECHANISM_PARAM_INVALID);
        ENSURE(g.ivGenerator <= CKG_GENERATE_COUNTER_XOR && g.ulIvFixedBits <= g.ulIvLen * 8,
               CKR_MECHANISM_PARAM_INVALID);
        out->iv = g.pIv;
        out->ivlen = g.ulIvLen;
        out->fixed_bits = g.ulIvFixedBits;
        out->gen = g.ivGenerator;
        out->tag = g.pTag;
        out->taglen = g.ulTagBits / 8;
        return CKR_OK;
    }
    if (d->type == CKM_CHACHA20_POLY1305) {
        CK_SALSA20_CHACHA20_POLY1305_MSG_PARAMS c;
        ENSURE(len == sizeof(c), CKR_MECHANISM_PARAM_INVALID);
        memcpy(&c, p, sizeof(c));
        ENSURE(c.pNonce != NULL && c.pTag != NULL, CKR_MECHANISM_PARAM_INVALID);
        out->iv = c.pNonce;
        out->ivlen = c.ulNonceLen;
        out->gen = CKG_NO_GENERATE;
        out->tag = c.pTag;
        out->taglen = 16;
        return CKR_OK;
    }
    return CKR_MECHANISM_INVALID;
}

/* Fill the generated part of an IV. seq is this encryption's number in the
 * key's persistent count: unique per key and below 2^32 (the SP 800-38D
 * bound the counter enforces), so counter-based IVs never repeat. The three
 * counter-based generators are kept apart so that no choice of the caller's
 * fixed part can steer one onto another's IV:
 *  - CKG_GENERATE: 00000000 || seq (64-bit big-endian), SP 800-38D 8.2.1;
 *  - CKG_GENERATE_COUNTER: the caller's fixed bytes || seq in the rest;
 *    the last 8 bytes are below 2^32 either way;
 *  - CKG_GENERATE_COUNTER_XOR: a base the token draws once per
 *    message context, XOR seq; the base's bit 63 of its last 8 bytes is set, so its
 *    IVs never equal a counter IV. The caller's pIv is overwritten (the
 *    standard lets the token write the IV it used).
 *  - CKG_GENERATE_RANDOM needs a random field of at least 96 bits
 *    (SP 800-38D 8.2.2), so a fixed part needs a longer IV. */
static CK_RV generate_iv(const msg_param *p, uint64_t seq, const uint8_t xor_base[GCM_IV_LEN])
{
    size_t fixed = (p->fixed_bits + 7) / 8;
    size_t free_bytes = p->ivlen - fixed;
    switch (p->gen) {
    case CKG_NO_GENERATE:
        return CKR_OK;
    case CKG_GENERATE:
        ENSURE(p->ivlen == GCM_IV_LEN, CKR_MECHANISM_PARAM_INVALID);
        memset(p->iv, 0, 4);
        be_put(p->iv + 4, seq, 8);
        return CKR_OK;
    case CKG_GENERATE_COUNTER:
        ENSURE(p->fixed_bits % 8 == 0 && free_bytes >= 8 && p->ivlen == GCM_IV_LEN,
               CKR_MECHANISM_PARAM_INVALID);
        /* Free bytes above the last 8 are zero. */
        memset(p->iv + fixed, 0, free_bytes - 8);
        be_put(p->iv + p->ivlen - 8, seq, 8);
        return CKR_OK;
    case CKG_GENERATE_COUNTER_XOR:
        ENSURE(p->ivlen == GCM_IV_LEN && xor_base != NULL, CKR_MECHANISM_PARAM_INVALID);
        memcpy(p->iv, xor_base, GCM_IV_LEN);
        for (int i = 0; i < 8; i++)
            p->iv[GCM_IV_LEN - 1 - i] ^= (uint8_t)(seq >> (8 * i));
        return CKR_OK;
    case CKG_GENERATE_RANDOM:
        ENSURE(p->fixed_bits % 8 == 0 && free_bytes >= 12, CKR_MECHANISM_PARAM_INVALID);
        return crypto_random(p->iv + fixed, free_bytes);
    default:
        return CKR_MECHANISM_PARAM_INVALID;
    }
}

/* The base of CKG_GENERATE_COUNTER_XOR for this message context, drawn
 * at its first use (see generate_iv). */
static CK_RV draw_xor_base(uint8_t base[GCM_IV_LEN])
{
    GUARD(crypto_random(base, GCM_IV_LEN));
    base[4] |= 0x80;
    return CKR_OK;
}

static CK_RV xor_base(msg_op *m)
{
    if (m->xor_ready)
        return CKR_OK;
    GUARD(draw_xor_base(m->xor_base));
    m->xor_ready = true;
    return CKR_OK;
}

/* The single-part mechanism parameter for one message. */
typedef union single_param {
    CK_GCM_PARAMS gcm;
    CK_SALSA20_CHACHA20_POLY1305_PARAMS chacha;
} single_param;

static void single_for(const mech_desc *d, const msg_param *p, const uint8_t *aad, size_t aadlen,
                       CK_MECHANISM *m, single_param *sp)
{
    memset(sp, 0, sizeof(*sp));
    m->mechanism = d->type;
    if (d->type == CKM_AES_GCM) {
        sp->gcm.pIv = p->iv;
        sp->gcm.ulIvLen = p->ivlen;
        sp->gcm.ulIvBits = p->ivlen * 8;
        sp->gcm.pAAD = (CK_BYTE_PTR)aad;
        sp->gcm.ulAADLen = aadlen;
        sp->gcm.ulTagBits = p->taglen * 8;
        m->pParameter = &sp->gcm;
        m->ulParameterLen = sizeof(sp->gcm);
    } else {
        sp->chacha.pNonce = p->iv;
        sp->chacha.ulNonceLen = p->ivlen;
        sp->chacha.pAAD = (CK_BYTE_PTR)aad;
        sp->chacha.ulAADLen = aadlen;
        m->pParameter = &sp->chacha;
        m->ulParameterLen = sizeof(sp->chacha);
    }
}

/* ---- the message context --------------------------------------------------- */

static msg_op *msg_of(session *s, bool encrypt) { return &s->msg[encrypt ? 0 : 1]; }

void msg_end(msg_op *m)
{
    if (m->ctx != NULL && m->mech != NULL && m->mech->ops->free != NULL)
        m->mech->ops->free(m->ctx);
    secmem_free(m->key, m->keylen);
    memset(m, 0, sizeof(*m));
}

CK_RV core_msg_init(session *s, bool encrypt, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    msg_op *m = msg_of(s, encrypt);
    mech_op kind = encrypt ? MECH_OP_ENCRYPT : MECH_OP_DECRYPT;
    uint8_t kb[KEY_MAX_BYTES];
    mech_key mk = { kb, 0, CK_UNAVAILABLE_INFORMATION };
    CK_RV rv;

    ENSURE(!m->active, CKR_OPERATION_ACTIVE);
    if (s->ev != NULL)
        s->ev->mech = mech->mechanism;
    const mech_desc *d = mech_find(mech->mechanism);
    CK_FLAGS need = encrypt ? CKF_MESSAGE_ENCRYPT : CKF_MESSAGE_DECRYPT;
    ENSURE(d != NULL && (d->info_flags & need) && d->ops->init != NULL, CKR_MECHANISM_INVALID);
    GUARD(op_role(s->tok, kind));
    memset(m, 0, sizeof(*m));
    rv = op_key(s, key, d, encrypt ? CKA_ENCRYPT : CKA_DECRYPT, CKR_KEY_HANDLE_INVALID, &mk, kb, &m->akey);
    audit_use_key(s, &m->akey);
    GUARD_OUT(rv);
    m->key = secmem_dup(kb, mk.len);
    ENSURE_OUT(m->key != NULL, CKR_HOST_MEMORY);
    m->keylen = mk.len;
    m->kt = mk.type;
    m->mech = d;
    m->active = true;
out:
    secmem_wipe(kb, mk.len);
    return rv;
}

CK_RV core_msg_final(session *s, bool encrypt)
{
    msg_op *m = msg_of(s, encrypt);
    ENSURE(m->active, CKR_OPERATION_NOT_INITIALIZED);
    msg_end(m);
    return CKR_OK;
}

/* Start one message: parameters, nonce, context. */
static CK_RV begin(session *s, msg_op *m, bool encrypt, const void *param, CK_ULONG plen,
                   const uint8_t *aad, size_t aadlen, msg_param *p)
{
    CK_MECHANISM mech;
    single_param sp;

    GUARD(parse_param(m->mech, param, plen, p));
    if (encrypt) {
        /* A nonce the caller chose is subject to the same policy as at
         * C_EncryptInit; one the token generates never repeats. */
        if (p->gen == CKG_NO_GENERATE)
            GUARD(op_caller_iv_allowed(s));
        uint64_t seq;
        if (p->gen == CKG_GENERATE_COUNTER_XOR)
            GUARD(xor_base(m));
        GUARD(session_count_encryption(s, m->akey.handle, &seq));
        GUARD(generate_iv(p, seq, m->xor_base));
    }
    /* The mechanism's start checks the single-part parameter (no separate
     * check_param: the key was chosen at C_Message*Init, so no order of
     * errors against the key's is at stake). */
    single_for(m->mech, p, aad, aadlen, &mech, &sp);
    mech_key k = { m->key, m->keylen, m->kt };
    mech_op kind = encrypt ? MECH_OP_ENCRYPT : MECH_OP_DECRYPT;
    if (m->ctx != NULL && m->mech->ops->reinit != NULL &&
        m->mech->ops->reinit(m->ctx, m->mech, &mech, kind, &k) == CKR_OK)
        return CKR_OK;
    if (m->ctx != NULL && m->mech->ops->free != NULL)
        m->mech->ops->free(m->ctx);
    m->ctx = NULL;
    return m->mech->ops->init(m->mech, &mech, kind, &k, &m->ctx);
}

static void note_message(session *s, msg_op *m, const uint8_t *aad, size_t aadlen)
{
    if (s->ev == NULL)
        return;
    audit_use_op_key(s, &m->akey);
    s->ev->mech = m->mech->type;
    /* Each message names its own resource (its AAD). */
    s->ev->has_resource_digest = audit_aad_digest(s, aad, aadlen, s->ev->resource_digest);
}

CK_RV core_encrypt_message(session *s, const void *param, CK_ULONG plen, const uint8_t *aad, size_t aadlen,
                           const uint8_t *in, size_t inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    msg_op *m = msg_of(s, true);
    msg_param p;
    size_t n = 0, tl = 0;

    ENSURE(m->active, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(!m->in_message, CKR_OPERATION_ACTIVE);
    note_message(s, m, aad, aadlen);
    /* The ciphertext is as long as the plaintext; the tag goes to pTag. */
    switch (out_prepare(inlen, out, outlen)) {
    case OUT_SIZE_ONLY: s->size_query = true; return CKR_OK;
    case OUT_TOO_SMALL: return CKR_BUFFER_TOO_SMALL;
    default: break;
    }
    GUARD(begin(s, m, true, param, plen, aad, aadlen, &p));
    CK_RV rv = m->mech->ops->update(m->ctx, in, inlen, out, &n);
    if (rv == CKR_OK)
        rv = m->mech->ops->final(m->ctx, p.tag, &tl);
    if (rv == CKR_OK)
        *outlen = (CK_ULONG)n;
    return rv;
}

CK_RV core_decrypt_message(session *s, const void *param, CK_ULONG plen, const uint8_t *aad, size_t aadlen,
                           const uint8_t *in, size_t inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    msg_op *m = msg_of(s, false);
    msg_param p;
    size_t a = 0, b = 0;

    ENSURE(m->active, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(!m->in_message, CKR_OPERATION_ACTIVE);
    note_message(s, m, aad, aadlen);
    switch (out_prepare(inlen, out, outlen)) {
    case OUT_SIZE_ONLY: s->size_query = true; return CKR_OK;
    case OUT_TOO_SMALL: return CKR_BUFFER_TOO_SMALL;
    default: break;
    }
    GUARD(begin(s, m, false, param, plen, aad, aadlen, &p));
    /* Ciphertext, then the tag: the mechanism holds both back and releases
     * plaintext only once the tag verifies. */
    CK_RV rv = m->mech->ops->update(m->ctx, in, inlen, out, &a);
    if (rv == CKR_OK)
        rv = m->mech->ops->update(m->ctx, p.tag, p.taglen, out, &a);
    if (rv == CKR_OK)
        rv = m->mech->ops->final(m->ctx, out, &b);
    if (rv == CKR_OK)
        *outlen = (CK_ULONG)b;
    return rv;
}

CK_RV core_message_begin(session *s, bool encrypt, const void *param, CK_ULONG plen, const uint8_t *aad,
                         size_t aadlen)
{
    msg_op *m = msg_of(s, encrypt);
    msg_param p;

    ENSURE(m->active, CKR_OPERATION_NOT_INITIALIZED);
    ENSURE(!m->in_message, CKR_OPERATION_ACTIVE);
    note_message(s, m, aad, aadlen);
    GUARD(begin(s, m, encrypt, param, plen, aad, aadlen, &p));
    m->in_message = true;
    m->held = 0;
    return CKR_OK;
}

CK_RV core_message_next(session *s, bool encrypt, const void *param, CK_ULONG plen, const uint8_t *in,
                        size_t inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen, CK_FLAGS flags)
{
    msg_op *m = msg_of(s, encrypt);
    msg_param p;
    size_t n = 0, f = 0;
    bool last = (flags & CKF_END_OF_MESSAGE) != 0;

    ENSURE(m->active && m->in_message, CKR_OPERATION_NOT_INITIALIZED);
    note_message(s, m, NULL, 0);
    /* Both sides write what the part gives: encryption the part's
     * ciphertext; decryption everything at the last part, once the tag
     * has verified. */
    size_t need = encrypt ? inlen : (last ? m->held + inlen : 0);
    switch (out_prepare(need, out, outlen)) {
    case OUT_SIZE_ONLY: s->size_query = true; return CKR_OK;
    case OUT_TOO_SMALL: return CKR_BUFFER_TOO_SMALL;
    default: break;
    }
    CK_RV rv = parse_param(m->mech, param, plen, &p);
    if (rv == CKR_OK)
        rv = m->mech->ops->update(m->ctx, in, inlen, out, &n);
    if (rv == CKR_OK && last) {
        if (encrypt) {
            rv = m->mech->ops->final(m->ctx, p.tag, &f);
        } else {
            size_t unused = 0;
            rv = m->mech->ops->update(m->ctx, p.tag, p.taglen, out, &unused);
            if (rv == CKR_OK)
                rv = m->mech->ops->final(m->ctx, out, &n);
        }
        m->in_message = false;
    }
    if (rv == CKR_OK) {
        m->held += encrypt ? 0 : inlen;
        *outlen = (CK_ULONG)(encrypt || last ? n : 0);
    } else {
        /* A failed message ends that message, not the context. */
        m->in_message = false;
    }
    return rv;
}

/* ---- authenticated key wrapping (PKCS#11 3.2) -------------------------------- */

/* The AAD of an authenticated wrap: the parameter's AAD, then the call's
 * associated data (both bind the wrapped key to its context). */
static CK_RV join_aad(const CK_GCM_WRAP_PARAMS *w, const uint8_t *ad, size_t adlen, uint8_t **out,
                      size_t *len)
{
    ENSURE(w->pAAD != NULL || w->ulAADLen == 0, CKR_MECHANISM_PARAM_INVALID);
    ENSURE(ad != NULL || adlen == 0, CKR_ARGUMENTS_BAD);
    *len = w->ulAADLen + adlen;
    *out = malloc(*len ? *len : 1);
    ENSURE(*out != NULL, CKR_HOST_MEMORY);
    if (w->ulAADLen)
        memcpy(*out, w->pAAD, w->ulAADLen);
    if (adlen)
        memcpy(*out + w->ulAADLen, ad, adlen);
    return CKR_OK;
}

static CK_RV wrap_params(const CK_MECHANISM *m, CK_GCM_WRAP_PARAMS *w, msg_param *p)
{
    ENSURE(m->mechanism == CKM_AES_GCM, CKR_MECHANISM_INVALID);
    ENSURE(m->pParameter != NULL && m->ulParameterLen == sizeof(*w), CKR_MECHANISM_PARAM_INVALID);
    memcpy(w, m->pParameter, sizeof(*w));
    ENSURE(w->pIv != NULL && w->ulIvLen >= 1 && w->ulIvFixedBits <= w->ulIvLen * 8 &&
               w->ivGenerator <= CKG_GENERATE_COUNTER_XOR,
           CKR_MECHANISM_PARAM_INVALID);
    ENSURE(w->ulTagBits >= 96 && w->ulTagBits <= 128 && w->ulTagBits % 8 == 0, CKR_MECHANISM_PARAM_INVALID);
    memset(p, 0, sizeof(*p));
    p->iv = w->pIv;
    p->ivlen = w->ulIvLen;
    p->fixed_bits = w->ulIvFixedBits;
    p->gen = w->ivGenerator;
    p->taglen = w->ulTagBits / 8;
    return CKR_OK;
}

CK_RV core_wrap_authenticated(session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping,
                              CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen)
{
    CK_GCM_WRAP_PARAMS w;
    msg_param p;
    uint8_t kek[KEY_MAX_BYTES], kv[KEY_MAX_BYTES];
    size_t kvlen = 0, n = 0;
    uint8_t *aad = NULL;
    size_t aadlen = 0;
    object *wo = NULL, *ko = NULL;
    mech_ctx *ctx = NULL;
    mech_key k = { kek, 0, CK_UNAVAILABLE_INFORMATION };
    aud_key ak;
    CK_RV rv;

    if (s->ev != NULL)
        s->ev->mech = mech->mechanism;
    GUARD(wrap_params(mech, &w, &p));
    const mech_desc *d = mech_find(CKM_AES_GCM);
    ENSURE(d != NULL, CKR_MECHANISM_INVALID);
    GUARD(op_role(s->tok, MECH_OP_WRAP));
    memset(&ak, 0, sizeof(ak));
    rv = op_key(s, wrapping, d, CKA_WRAP, CKR_WRAPPING_KEY_HANDLE_INVALID, &k, kek, &ak);
    audit_use_key(s, &ak);
    if (rv == CKR_KEY_TYPE_INCONSISTENT)
        rv = CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
    GUARD_OUT(rv);
    /* The object op_key just checked (hot: no store round trip). */
    GUARD_OUT(object_get_mode(s, wrapping, true, &wo));
    GUARD_OUT(core_wrappable_value(s, wo, key, kv, sizeof(kv), &kvlen, &ko));
    size_t need = kvlen + p.taglen;
    switch (out_prepare(need, out, outlen)) {
    case OUT_SIZE_ONLY: s->size_query = true; rv = CKR_OK; goto out;
    case OUT_TOO_SMALL: rv = CKR_BUFFER_TOO_SMALL; goto out;
    default: break;
    }
    if (p.gen == CKG_NO_GENERATE)
        GUARD_OUT(op_caller_iv_allowed(s));
    uint64_t seq;
    uint8_t base[GCM_IV_LEN];
    GUARD_OUT(draw_xor_base(base));
    GUARD_OUT(family_count_encryption_seq(s->tok, ak.handle, &seq));
    GUARD_OUT(generate_iv(&p, seq, base));
    GUARD_OUT(join_aad(&w, ad, adlen, &aad, &aadlen));
    CK_MECHANISM sm;
    single_param sp;
    single_for(d, &p, aad, aadlen, &sm, &sp);
    GUARD_OUT(d->ops->init(d, &sm, MECH_OP_ENCRYPT, &k, &ctx));
    GUARD_OUT(d->ops->oneshot(ctx, kv, kvlen, out, &n));
    *outlen = (CK_ULONG)n;
out:
    if (ctx != NULL)
        d->ops->free(ctx);
    secmem_wipe(kek, k.len);
    secmem_wipe(kv, kvlen);
    free(aad);
    object_unref(wo);
    object_unref(ko);
    return rv;
}

CK_RV core_unwrap_authenticated(session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping,
                                const uint8_t *wrapped, size_t wrappedlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                                const uint8_t *ad, size_t adlen, CK_OBJECT_HANDLE_PTR out)
{
    CK_GCM_WRAP_PARAMS w;
    msg_param p;
    uint8_t *aad = NULL;
    size_t aadlen = 0;
    CK_RV rv;

    if (s->ev != NULL)
        s->ev->mech = mech->mechanism;
    GUARD(wrap_params(mech, &w, &p));
    /* The IV of an authenticated wrap is always the one given. */
    GUARD(join_aad(&w, ad, adlen, &aad, &aadlen));
    CK_GCM_PARAMS g = { p.iv, p.ivlen, p.ivlen * 8, aad, aadlen, p.taglen * 8 };
    CK_MECHANISM sm = { CKM_AES_GCM, &g, sizeof(g) };
    rv = core_unwrap_with(s, &sm, unwrapping, wrapped, wrappedlen, t, n, out);
    free(aad);
    return rv;
}
