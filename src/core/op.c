/* Cryptographic operations on a session (PKCS#11 3.2 sec. 5.8-5.13): one
 * state machine for encrypt, decrypt, sign, verify and digest, driven by the
 * mechanism table. The standard's rules live here once:
 *  - one active operation of each kind; ...Init while active ->
 *    CKR_OPERATION_ACTIVE;
 *  - single-part calls only right after ...Init (after an ...Update:
 *    CKR_OPERATION_ACTIVE);
 *  - a NULL output asks for the length, a short buffer gives
 *    CKR_BUFFER_TOO_SMALL; both leave the operation active;
 *  - any other failure, and every success of a finishing call, ends it. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "core/internal.h"
#include "util/buf.h"
#include "util/secmem.h"

/* The role action of each kind (docs/roles.md). */
static const role_action op_action[MECH_OP_COUNT] = {
    [MECH_OP_ENCRYPT] = ACT_ENCRYPT,
    [MECH_OP_DECRYPT] = ACT_DECRYPT,
    [MECH_OP_SIGN] = ACT_SIGN,
    [MECH_OP_VERIFY] = ACT_VERIFY,
    [MECH_OP_DIGEST] = ACT_COUNT,
    [MECH_OP_WRAP] = ACT_WRAP,
    [MECH_OP_UNWRAP] = ACT_UNWRAP,
};

CK_RV op_role(const token *t, mech_op kind)
{
    return op_action[kind] == ACT_COUNT ? CKR_OK : role_check(t, op_action[kind]);
}

CK_RV op_caller_iv_allowed(session *s)
{
    if (!lib.cfg.caller_iv_refuse)
        return CKR_OK;
    audit_note_denied(s, "caller-supplied IV refused by policy");
    return CKR_ACTION_PROHIBITED;
}

/* The key attribute that permits each kind (sec. 4.9 usage flags). */
static const CK_ATTRIBUTE_TYPE op_usage[MECH_OP_COUNT] = {
    [MECH_OP_ENCRYPT] = CKA_ENCRYPT,
    [MECH_OP_DECRYPT] = CKA_DECRYPT,
    [MECH_OP_SIGN] = CKA_SIGN,
    [MECH_OP_VERIFY] = CKA_VERIFY,
    [MECH_OP_DIGEST] = 0,
    [MECH_OP_WRAP] = CKA_WRAP,
    [MECH_OP_UNWRAP] = CKA_UNWRAP,
};

CK_RV op_mech(CK_MECHANISM_PTR m, mech_op kind, const mech_desc **out)
{
    const mech_desc *d = mech_find(m->mechanism);
    bool wrapping = kind == MECH_OP_WRAP || kind == MECH_OP_UNWRAP;
    ENSURE(d != NULL && mech_op_allowed(d, kind), CKR_MECHANISM_INVALID);
    ENSURE(wrapping ? (kind == MECH_OP_WRAP ? d->ops->wrap : d->ops->unwrap) != NULL
                    : d->ops->init != NULL,
           CKR_MECHANISM_INVALID);
    ENSURE(!(d->flags & MECH_LEGACY) || core_config()->legacy_modes, CKR_MECHANISM_INVALID);
    if (d->ops->check_param != NULL)
        GUARD(d->ops->check_param(d, m, kind));
    *out = d;
    return CKR_OK;
}

struct key_check {
    const mech_desc *d;
    CK_ATTRIBUTE_TYPE usage;
    CK_MECHANISM_TYPE mech;
};

/* Uses that protect new data: the ones a rotated-out or expired key may no
 * longer do (docs/key-families.md). */
static bool protects(CK_ATTRIBUTE_TYPE usage)
{
    return usage == CKA_ENCRYPT || usage == CKA_SIGN || usage == CKA_WRAP;
}

/* Is this key fit for the mechanism and the use (sec. 5.8 C_EncryptInit
 * return values)? Runs under the token lock. */
static CK_RV check_key_locked(attr_list *l, void *arg)
{
    const struct key_check *k = arg;
    CK_ULONG cls, kt;
    ENSURE(attr_get_ulong(l, CKA_CLASS, &cls) && cls == CKO_SECRET_KEY, CKR_KEY_TYPE_INCONSISTENT);
    ENSURE(attr_get_ulong(l, CKA_KEY_TYPE, &kt) && mech_accepts_key(k->d, kt),
           CKR_KEY_TYPE_INCONSISTENT);
    if (k->usage != 0)
        ENSURE(attr_bool(l, k->usage, false), CKR_KEY_FUNCTION_NOT_PERMITTED);
    const attr *am = attr_find(l, CKA_ALLOWED_MECHANISMS);
    if (am != NULL && am->len > 0) {
        bool ok = false;
        for (size_t i = 0; i + sizeof(CK_MECHANISM_TYPE) <= am->len; i += sizeof(CK_MECHANISM_TYPE)) {
            CK_MECHANISM_TYPE mt;
            memcpy(&mt, am->value + i, sizeof(mt));
            ok |= mt == k->mech;
        }
        ENSURE(ok, CKR_KEY_FUNCTION_NOT_PERMITTED);
    }
    return family_check_use_locked(l, protects(k->usage));
}

/* How long the checks just passed stay true by the clock alone: the
 * session may reuse the key until then without asking again. */
static void usable_window(const attr_list *l, bool protect, int64_t *from, int64_t *until)
{
    CK_ULONG period, created, state;
    family_use_window(l, protect, from, until);
    if (!protect)
        return;
    /* A rotation falls due: the next use rotates (family_due_locked). */
    if (attr_get_ulong(l, CKA_CUSTOS_ROTATION_PERIOD, &period) && period != 0 &&
        attr_get_ulong(l, CKA_CUSTOS_STATE, &state) && state == CUSTOS_STATE_ACTIVE &&
        attr_get_ulong(l, CKA_CUSTOS_CREATED, &created) && (int64_t)(created + period) < *until)
        *until = (int64_t)(created + period);
}

/* The session's cached key, if it is still the one to use: same handle,
 * mechanism and use, nothing changed in the token since, other processes'
 * commits checked less than 50 ms ago, and the clock still inside its
 * window. No token lock on this path. */
static bool key_cached(session *s, CK_OBJECT_HANDLE h, const mech_desc *d, CK_ATTRIBUTE_TYPE usage,
                       mech_key *key, uint8_t *kbuf, aud_key *ak)
{
    token *t = s->tok;
    if (s->kc_key == NULL)
        return false;
    if (s->kc_len > 0 && s->kc_gen != atomic_load(&t->gen)) {
        /* A logout, a destroy or a change since: the bytes may be of a key
         * this session may no longer use. Do not keep them. */
        secmem_wipe(s->kc_key, s->kc_len);
        s->kc_len = 0;
        s->kc_h = CK_INVALID_HANDLE;
        return false;
    }
    /* A session object is this process's own: only the generation can
     * change it. A token object may have been changed by another process:
     * its commits must have been checked lately too. */
    if (s->kc_len == 0 || s->kc_h != h || s->kc_mech != d || s->kc_usage != usage ||
        (!(h & SESSION_OBJECT_BIT) && !object_cache_fresh(t)))
        return false;
    int64_t now = (int64_t)time(NULL);
    if (now < s->kc_from || now >= s->kc_until)
        return false;
    memcpy(kbuf, s->kc_key, s->kc_len);
    key->bytes = kbuf;
    key->len = s->kc_len;
    key->type = s->kc_kt;
    if (ak != NULL)
        *ak = s->kc_aud;
    return true;
}

CK_RV op_key(session *s, CK_OBJECT_HANDLE h, const mech_desc *d, CK_ATTRIBUTE_TYPE usage,
             CK_RV invalid_rv, mech_key *key, uint8_t *kbuf, aud_key *ak)
{
    token *t = s->tok;
    size_t len = 0;
    object *o;
    bool due = false;
    aud_key desc;
    int64_t from = INT64_MIN, until = INT64_MAX;

    if (key_cached(s, h, d, usage, key, kbuf, ak))
        return CKR_OK;
    uint64_t gen = atomic_load(&t->gen);
    CK_RV rv = object_get_mode(s, h, true, &o);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return invalid_rv;
    GUARD(rv);
    /* Everything about the key in one visit under the token lock: its
     * description for the audit, the checks, its value. */
    struct key_check k = { d, usage, d->type };
    pthread_mutex_lock(&t->lock);
    audit_describe_locked(o, &desc);
    if (ak != NULL)
        *ak = desc;
    rv = check_key_locked(&o->attrs, &k);
    if (rv == CKR_OK)
        due = protects(usage) && family_due_locked(&o->attrs);
    if (rv == CKR_OK)
        usable_window(&o->attrs, protects(usage), &from, &until);
    if (rv == CKR_OK)
        rv = object_key_copy_locked(t, o, kbuf, KEY_MAX_BYTES, &len);
    pthread_mutex_unlock(&t->lock);
    /* The first protecting use after a family's rotation period rotates
     * it; this operation still uses the key the caller named. */
    if (rv == CKR_OK && due)
        rv = family_maybe_rotate(s, o);
    key->bytes = kbuf;
    key->len = len;
    key->type = o->kt;
    if (rv == CKR_OK && !mech_key_size_ok(d, len))
        rv = CKR_KEY_SIZE_RANGE;
    if (rv == CKR_OK && !due && (s->kc_key != NULL || (s->kc_key = secmem_alloc(KEY_MAX_BYTES)) != NULL)) {
        /* Remember it for the next operation of this session. */
        memcpy(s->kc_key, kbuf, len);
        s->kc_len = len;
        s->kc_h = h;
        s->kc_mech = d;
        s->kc_usage = usage;
        s->kc_gen = gen;
        s->kc_kt = o->kt;
        s->kc_aud = desc;
        s->kc_from = from;
        s->kc_until = until;
    }
    object_unref(o);
    return rv;
}

CK_RV core_op_init(session *s, mech_op kind, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    CK_RV rv;
    op *o = &s->ops[kind];
    const mech_desc *d;
    uint8_t kb[KEY_MAX_BYTES];
    size_t klen = 0;

    ENSURE(o->state == OP_IDLE, CKR_OPERATION_ACTIVE);
    if (s->ev != NULL)
        s->ev->mech = m->mechanism;
    GUARD(op_mech(m, kind, &d));
    GUARD(op_role(s->tok, kind));
    mech_key mk = { kb, 0, CK_UNAVAILABLE_INFORMATION };
    aud_key_clear(&o->key);
    if (kind != MECH_OP_DIGEST) {
        rv = op_key(s, key, d, op_usage[kind], CKR_KEY_HANDLE_INVALID, &mk, kb, &o->key);
        klen = mk.len;
        audit_note_aad(s, &o->key, d, m);
        audit_use_op_key(s, &o->key);
        GUARD_OUT(rv);
    }
    token *t = s->tok;
    if (kind == MECH_OP_ENCRYPT && d->ops->aad != NULL) {
        /* An AEAD with an IV the caller chose (docs/mechanisms.md). */
        GUARD_OUT(op_caller_iv_allowed(s));
        uint64_t seq;
        GUARD_OUT(session_count_encryption(s, o->key.handle, &seq));
    }
    if (kind == MECH_OP_DECRYPT && t->audit != NULL &&
        audit_decrypt_alert(t->audit, t->user, o->key.handle, o->key.label)) {
        audit_note_denied(s, "decrypt rate alert");
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    const mech_key *kp = kind == MECH_OP_DIGEST ? NULL : &mk;
    if (o->spare != NULL && o->spare_ops == d->ops &&
        d->ops->reinit(o->spare, d, m, kind, kp) == CKR_OK) {
        o->ctx = o->spare;
        o->spare = NULL;
        o->spare_ops = NULL;
    } else {
        GUARD_OUT(d->ops->init(d, m, kind, kp, &o->ctx));
    }
    o->mech = d;
    o->state = OP_INIT;
    rv = CKR_OK;
out:
    secmem_wipe(kb, klen);
    return rv;
}


/* Turn "the caller's buffer" into the two-call outcome; on OUT_WRITE the
 * work goes ahead. */
static CK_RV sized(size_t need, CK_BYTE_PTR out, CK_ULONG_PTR outlen, bool *write)
{
    switch (out_prepare(need, out, outlen)) {
    case OUT_SIZE_ONLY: *write = false; return CKR_OK;
    case OUT_TOO_SMALL: *write = false; return CKR_BUFFER_TOO_SMALL;
    default: *write = true; return CKR_OK;
    }
}

static bool has_output(mech_op kind)
{
    return kind == MECH_OP_ENCRYPT || kind == MECH_OP_DECRYPT;
}

/* The record of a call that continues or completes an operation names the
 * key and mechanism its ...Init chose. */
static void note_op(session *s, const op *o)
{
    if (s->ev != NULL && o->mech != NULL) {
        audit_use_op_key(s, &o->key);
        s->ev->mech = o->mech->type;
    }
}

CK_RV core_op_oneshot(session *s, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                      CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    op *o = &s->ops[kind];
    const mech_ops *ops;
    bool write;
    CK_RV rv;
    size_t n = 0;

    ENSURE(o->state != OP_IDLE, CKR_OPERATION_NOT_INITIALIZED);
    note_op(s, o);
    if (o->state == OP_MULTI) {
        op_end(o);
        return CKR_OPERATION_ACTIVE;
    }
    ops = o->mech->ops;
    size_t need = has_output(kind) ? mech_oneshot_len(o->mech, o->ctx, inlen) : ops->out_len(o->ctx, true, 0);
    rv = sized(need, out, outlen, &write);
    s->size_query = !write;
    if (!write)
        return rv;
    if (ops->oneshot != NULL) {
        rv = ops->oneshot(o->ctx, in, inlen, out, &n);
    } else {
        size_t a = 0, b = 0;
        rv = ops->update(o->ctx, in, inlen, has_output(kind) ? out : NULL, &a);
        if (rv == CKR_OK)
            rv = ops->final(o->ctx, out + (has_output(kind) ? a : 0), &b);
        n = a + b;
    }
    if (rv == CKR_OK)
        *outlen = (CK_ULONG)n;
    op_end(o);
    return rv;
}

CK_RV core_op_update(session *s, mech_op kind, CK_BYTE_PTR in, CK_ULONG inlen,
                     CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    op *o = &s->ops[kind];
    bool write = true;
    CK_RV rv;
    size_t n = 0;

    ENSURE(o->state != OP_IDLE, CKR_OPERATION_NOT_INITIALIZED);
    note_op(s, o);
    if (has_output(kind)) {
        rv = sized(o->mech->ops->out_len(o->ctx, false, inlen), out, outlen, &write);
        s->size_query = !write;
        if (!write)
            return rv;
    }
    rv = o->mech->ops->update(o->ctx, in, inlen, has_output(kind) ? out : NULL, &n);
    if (rv != CKR_OK) {
        op_end(o);
        return rv;
    }
    o->state = OP_MULTI;
    if (has_output(kind))
        *outlen = (CK_ULONG)n;
    return CKR_OK;
}

CK_RV core_op_final(session *s, mech_op kind, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    op *o = &s->ops[kind];
    bool write;
    size_t n = 0;

    ENSURE(o->state != OP_IDLE, CKR_OPERATION_NOT_INITIALIZED);
    note_op(s, o);
    CK_RV rv = sized(o->mech->ops->out_len(o->ctx, true, 0), out, outlen, &write);
    s->size_query = !write;
    if (!write)
        return rv;
    rv = o->mech->ops->final(o->ctx, out, &n);
    if (rv == CKR_OK)
        *outlen = (CK_ULONG)n;
    op_end(o);
    return rv;
}

CK_RV core_verify(session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG siglen,
                  bool oneshot)
{
    op *o = &s->ops[MECH_OP_VERIFY];
    CK_RV rv = CKR_OK;
    size_t n = 0;

    ENSURE(o->state != OP_IDLE, CKR_OPERATION_NOT_INITIALIZED);
    note_op(s, o);
    if (oneshot && o->state == OP_MULTI) {
        op_end(o);
        return CKR_OPERATION_ACTIVE;
    }
    if (oneshot)
        rv = o->mech->ops->update(o->ctx, data, len, NULL, &n);
    if (rv == CKR_OK)
        rv = o->mech->ops->verify_final(o->ctx, sig, siglen);
    op_end(o);
    return rv;
}

struct digest_check {
    bool ok;
};

static CK_RV digestible_locked(attr_list *l, void *arg)
{
    CK_ULONG cls;
    ENSURE(attr_get_ulong(l, CKA_CLASS, &cls) && cls == CKO_SECRET_KEY, CKR_KEY_INDIGESTIBLE);
    /* Digesting a sensitive key would be a way to test guesses of its
     * value: refuse (sec. 5.12 C_DigestKey allows CKR_KEY_INDIGESTIBLE). */
    ENSURE(!attr_bool(l, CKA_SENSITIVE, true) && attr_bool(l, CKA_EXTRACTABLE, false),
           CKR_KEY_INDIGESTIBLE);
    return CKR_OK;
}

CK_RV core_digest_key(session *s, CK_OBJECT_HANDLE key)
{
    op *o = &s->ops[MECH_OP_DIGEST];
    object *obj;
    uint8_t kb[KEY_MAX_BYTES];
    size_t klen = 0, n = 0;
    CK_RV rv;

    ENSURE(o->state != OP_IDLE, CKR_OPERATION_NOT_INITIALIZED);
    rv = role_check(s->tok, ACT_DIGEST_KEY);
    if (rv == CKR_OK)
        rv = object_get(s, key, &obj);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_KEY_HANDLE_INVALID;
    if (rv != CKR_OK) {
        op_end(o);
        return rv;
    }
    rv = object_with_attrs(s->tok, obj, digestible_locked, NULL);
    if (rv == CKR_OK)
        rv = object_key_copy(s->tok, obj, kb, sizeof(kb), &klen);
    object_unref(obj);
    if (rv == CKR_OK)
        rv = o->mech->ops->update(o->ctx, kb, klen, NULL, &n);
    secmem_wipe(kb, klen);
    if (rv != CKR_OK) {
        op_end(o);
        return rv;
    }
    o->state = OP_MULTI;
    return CKR_OK;
}
